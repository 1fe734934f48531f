"""How the face detector reads one avatar: its landmarks' travel with each ARKit weight,
and where it puts the neutral face's landmarks from each viewing direction.

The motion solver explains detected landmarks as the model's neutral points plus, per
ARKit channel, a landmark travel. A geometric travel (where the skin moves) disagrees
with the detector: MediaPipe under-reads a half blink, shifts the brows when the jaw
drops, and responds to each face a little differently. So the travel is *measured*:
the avatar is rendered with each channel at a few weights and the detector's reading is
recorded. Between the measured weights the response is piecewise linear, and the solver
linearises it around its current estimate (`linearise`), a Gauss-Newton step.

The neutral reading depends on the view too: as the head turns, the face-oval landmarks
slide to the silhouette and the far eye corner hides. So the neutral face is also
detected from a grid of directions, each reading back-projected onto the surface, and
the solver uses the reading interpolated at its current head pose (`view_bias`).
"""

from __future__ import annotations

import threading
from dataclasses import dataclass
from functools import cached_property
from typing import Callable

import numpy as np

from ..errors import NoFaceFound
from ..faces.detector import FaceAnalyzer
from ..head.landmarks import LandmarkEmbedding
from ..head.model import HeadModel
from ..render.camera import Camera
from ..render.picking import backproject
from .arkit import NUM_ARKIT

CALIBRATION_LEVELS = (0.5, 1.0)
VIEW_AZIMUTHS_DEG = (-30.0, -15.0, 0.0, 15.0, 30.0)
VIEW_ELEVATIONS_DEG = (-15.0, 0.0, 15.0)
GREY = np.array([128, 128, 128], np.uint8)


@dataclass(frozen=True)
class ExpressionResponse:
    """Landmark travel `travel[i]` [52, L, 3] (metres, head frame) at weight `levels[i]`."""

    levels: np.ndarray  # [N] increasing, in (0, 1]
    travel: np.ndarray  # [N, 52, L, 3]
    # Neutral landmark offsets from the model's points (head frame, metres), seen from
    # azimuth x elevation directions (radians): [E, A, L, 3]; None = not measured.
    view_bias: np.ndarray | None = None
    azimuths: np.ndarray | None = None
    elevations: np.ndarray | None = None

    @staticmethod
    def linear(per_unit: np.ndarray) -> "ExpressionResponse":
        """A response proportional to the weight: `per_unit` [52, L, 3] travel at weight 1."""
        return ExpressionResponse(np.array([1.0]), np.asarray(per_unit)[None])

    def secant(self) -> "ExpressionResponse":
        """The straight line through the top level: a coarse model without local minima
        to start a solve from (a half-step response can trap a full blink at a quarter)."""
        return self._secant

    @cached_property
    def _secant(self) -> "ExpressionResponse":
        return ExpressionResponse.linear(self.travel[-1] / self.levels[-1])

    @cached_property
    def _segments(self) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """(weights [N+1] from 0, slope [N, 52, L, 3], intercept [N, 52, L, 3]) of each
        segment between knots: built once, read by every Gauss-Newton step."""
        knots = np.concatenate([[0.0], self.levels])
        values = np.concatenate([np.zeros_like(self.travel[:1]), self.travel])
        slope = (values[1:] - values[:-1]) / np.diff(knots)[:, None, None, None]
        return knots, slope, values[:-1] - slope * knots[:-1, None, None, None]

    def bias_from(self, direction: np.ndarray) -> np.ndarray | None:
        """[L, 3] the neutral reading's offset seen from `direction` (head frame, from the
        face toward the camera), bilinear between the measured views, clamped at the edges."""
        if self.view_bias is None:
            return None
        x, y, z = direction
        azimuth, elevation = np.arctan2(x, z), np.arctan2(y, np.hypot(x, z))
        (a0, a1), ta = _bracket(self.azimuths, azimuth)
        (e0, e1), te = _bracket(self.elevations, elevation)
        b = self.view_bias
        return ((1 - te) * ((1 - ta) * b[e0, a0] + ta * b[e0, a1])
                + te * ((1 - ta) * b[e1, a0] + ta * b[e1, a1]))

    def linearise(self, weights: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """(slope [52, L, 3], offset [L, 3]) so that near `weights` [52] the summed travel
        is offset + sum_k weights[k] * slope[k]; exact on the segment each weight is in."""
        knots, slopes, intercepts = self._segments
        # Segment per channel; a weight on a knot takes the segment above (below for the last).
        segment = np.clip(np.searchsorted(knots, weights, side="right") - 1, 0, len(knots) - 2)
        channels = np.arange(len(weights))
        # The first segment starts at (0, no travel): its channels add nothing to the offset.
        above = segment > 0
        offset = intercepts[segment[above], channels[above]].sum(0)
        return slopes[segment, channels], offset


def measure_response(head: HeadModel, embedding: LandmarkEmbedding, analyzer: FaceAnalyzer,
                     identity: np.ndarray, render: Callable[[np.ndarray, Camera], np.ndarray],
                     fallback: ExpressionResponse, levels=CALIBRATION_LEVELS,
                     cancelled: threading.Event | None = None) -> ExpressionResponse | None:
    """Render the avatar (`render(vertices, camera)` -> RGB over grey) frontally with each
    channel at each level and detect: 1 + 52 * len(levels) detections (~5 s at 512^2).

    Image-plane travel is converted to metres at the head's distance; depth travel, which
    a frontal view cannot see, stays the model's. A channel the detector loses (no face
    found) keeps `fallback`'s travel. Returns None if `cancelled` is set meanwhile.
    """
    neutral_shape = head.shape(identity)
    centre = embedding.points(head, neutral_shape).mean(0)
    # The runtime's default view, framed as renders usually are: the detector's reading
    # shifts by about a pixel with the framing, as much as a small brow raise moves.
    camera = Camera.orbit()
    metres_per_px = np.linalg.norm(camera.position - centre) / camera.focal_px
    to_metres = metres_per_px * np.array([1.0, -1.0])  # image y points down, the head's up
    geometric = embedding.basis(head, head.expression_basis)

    def detect(vertices: np.ndarray) -> np.ndarray | None:
        try:
            return analyzer.landmarks(render(vertices, camera)).landmarks[:, :2]
        except NoFaceFound:
            return None

    neutral = detect(neutral_shape)
    if neutral is None:
        return fallback
    travel = np.empty((len(levels), NUM_ARKIT) + geometric.shape[1:], np.float32)
    for i, level in enumerate(levels):
        for k in range(NUM_ARKIT):
            if cancelled is not None and cancelled.is_set():
                return None
            weights = np.zeros(NUM_ARKIT, np.float32)
            weights[k] = level
            seen = detect(head.shape(identity, weights))
            if seen is None:
                travel[i, k] = _fallback_at(fallback, k, level)
                continue
            travel[i, k, :, :2] = (seen - neutral) * to_metres
            travel[i, k, :, 2] = geometric[k, :, 2] * level
    views = measure_view_bias(head, embedding, analyzer, neutral_shape, render)
    return ExpressionResponse(np.asarray(levels, np.float64), travel, *views)


def measure_view_bias(head: HeadModel, embedding: LandmarkEmbedding, analyzer: FaceAnalyzer,
                      neutral_shape: np.ndarray, render: Callable[[np.ndarray, Camera], np.ndarray],
                      azimuths_deg=VIEW_AZIMUTHS_DEG, elevations_deg=VIEW_ELEVATIONS_DEG):
    """(bias [E, A, L, 3], azimuths [A], elevations [E]): the neutral face detected from
    each direction and back-projected onto it, minus the model's landmark points. A view
    the detector fails on, or a landmark that lands off the surface, takes the frontal
    reading (measured first)."""
    model = embedding.points(head, neutral_shape)
    bias = np.zeros((len(elevations_deg), len(azimuths_deg)) + model.shape, np.float32)
    order = sorted(np.ndindex(bias.shape[:2]),
                   key=lambda ea: abs(elevations_deg[ea[0]]) + abs(azimuths_deg[ea[1]]))
    frontal = None
    for e, a in order:  # frontal first: it is every other view's fallback
        camera = Camera.orbit(azimuths_deg[a], elevations_deg[e])
        try:
            seen = analyzer.landmarks(render(neutral_shape, camera)).landmarks[:, :2]
            hits = backproject(neutral_shape, head.faces, camera, seen) - model
        except NoFaceFound:
            hits = np.full_like(model, np.nan)
        if frontal is None:
            frontal = np.nan_to_num(hits)
        bias[e, a] = np.where(np.isfinite(hits), hits, frontal)
    return bias, np.radians(azimuths_deg), np.radians(elevations_deg)


def _bracket(knots: np.ndarray, value: float) -> tuple[tuple[int, int], float]:
    """Neighbouring knot indices around `value` and its fraction between them (clamped)."""
    i = int(np.clip(np.searchsorted(knots, value) - 1, 0, len(knots) - 2))
    return (i, i + 1), float(np.clip((value - knots[i]) / (knots[i + 1] - knots[i]), 0.0, 1.0))


def _fallback_at(response: ExpressionResponse, channel: int, level: float) -> np.ndarray:
    weights = np.zeros(NUM_ARKIT)
    weights[channel] = level
    slope, offset = response.linearise(weights)
    return offset + slope[channel] * level
