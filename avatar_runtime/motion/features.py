"""Identity-normalised face features and the ARKit channels read from them.

The landmark fit explains every point at once, so a detector habit on one face (lids
that never close, brows that slide with the jaw) leaks into other channels and other
identities. A few channels are read more robustly from ratios that do not depend on
who the face is: lid aperture over eye width, lip gap, chin drop, mouth-corner travel and brow height
over the distance between the eyes, iris offset over eye width. Each is taken in the
head's own frame (the fit's rotation removed) and compared with the same features of
the face at rest (its *neutral*: a calibration frame, else the avatar's own render at
rest as the detector reads it, see `rendered_rest`).

Heights are measured from the nose bridge, which no expression moves: measured from the
eye corners instead, brow heights also followed squints and smiles (on real video their
agreement with an independent blendshape model fell from r 0.78 to 0.56). The lip gap is
split into the upper lip's height under the nose tip and the lower lip's above the chin:
a smile that bares the teeth lifts the upper lip, a jaw drop moves neither distance much.

How far each channel moves each feature at weight 1 is the head model's own geometry
(the template's landmark points with that channel at 1): no face was tuned for. The
weights are then the bounded least-squares answer of `change = weights @ span`, which
untangles channels that share features (a jaw drop lowers the mouth corners; a look
down lowers the lids).
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache

import numpy as np

from ..head.landmarks import LandmarkEmbedding, load_landmark_embedding
from ..head.model import EYE_LEFT, HeadModel, load_head_model
from .arkit import ARKIT_INDEX, NUM_ARKIT
from .box_qp import solve_box_qp

# MediaPipe face-mesh indices; "left" is the subject's left (+X in the head frame).
EYE = {"L": dict(outer=263, inner=362, lids=((386, 374), (385, 380), (387, 373)), iris=473),
       "R": dict(outer=33, inner=133, lids=((159, 145), (158, 153), (160, 144)), iris=468)}
BROW_INNER = {"L": (336, 285, 296), "R": (107, 55, 66)}
BROW_OUTER = {"L": (300, 276, 293), "R": (70, 46, 63)}
MOUTH_CORNER = {"L": 291, "R": 61}
UPPER_LIP, LOWER_LIP, CHIN, NOSE_BRIDGE, NOSE_TIP = 13, 14, 152, 168, 1
FEATURES = ("apertureL", "apertureR", "lipGap", "cornerL", "cornerR", "browInnerL", "browInnerR",
            "browOuterL", "browOuterR", "irisXL", "irisYL", "irisXR", "irisYR", "chin",
            "upperLip", "lowerLip")
NUM_FEATURES = len(FEATURES)
CHANNELS = ("eyeBlinkLeft", "eyeBlinkRight", "eyeWideLeft", "eyeWideRight", "jawOpen",
            "mouthSmileLeft", "mouthSmileRight", "browInnerUp", "browDownLeft", "browDownRight",
            "browOuterUpLeft", "browOuterUpRight", "eyeLookInLeft", "eyeLookOutLeft", "eyeLookUpLeft",
            "eyeLookDownLeft", "eyeLookInRight", "eyeLookOutRight", "eyeLookUpRight", "eyeLookDownRight")
CHANNEL_INDEX = np.array([ARKIT_INDEX[c] for c in CHANNELS])
# Other channels that move these features a lot: solved alongside so that their effect
# is not read as one of ours, then dropped (the landmark fit answers for them).
HELPERS = ("mouthLowerDownLeft", "mouthLowerDownRight", "mouthUpperUpLeft", "mouthUpperUpRight",
           "mouthFunnel", "mouthPucker", "mouthFrownLeft", "mouthFrownRight", "mouthStretchLeft",
           "mouthStretchRight", "eyeSquintLeft", "eyeSquintRight", "cheekSquintLeft", "cheekSquintRight")
HELPER_INDEX = np.array([ARKIT_INDEX[c] for c in HELPERS])
RIDGE = 0.02  # prefers small weights where two channels explain a change equally well


def head_frame(landmarks: np.ndarray, rotation: np.ndarray) -> np.ndarray:
    """MediaPipe landmarks [478, 3] (pixels: x right, y down, z toward the camera < 0) ->
    [478, 3] in the head's frame (x the subject's left, y up, z out of the face), any
    scale: the fit's head-to-camera `rotation` [3, 3] (OpenGL camera axes) undone."""
    p = np.asarray(landmarks, np.float64)[:, :3] * np.array([1.0, -1.0, -1.0])
    p = p - p[:468].mean(0)
    return p @ np.asarray(rotation, np.float64)


def features(points: np.ndarray) -> np.ndarray:
    """[478, 3] head-frame points (see `head_frame`) -> [NUM_FEATURES] scale-free features."""
    p = points
    eye_centre = {s: (p[e["outer"]] + p[e["inner"]]) / 2 for s, e in EYE.items()}
    scale = np.linalg.norm(eye_centre["L"] - eye_centre["R"])
    out = {}
    for s, e in EYE.items():
        width = np.linalg.norm(p[e["outer"]] - p[e["inner"]])
        out[f"aperture{s}"] = np.mean([p[a, 1] - p[b, 1] for a, b in e["lids"]]) / width
        iris = (p[e["iris"]] - eye_centre[s]) / width
        out[f"irisX{s}"], out[f"irisY{s}"] = iris[0], iris[1]
        out[f"browInner{s}"] = (p[list(BROW_INNER[s]), 1].mean() - p[NOSE_BRIDGE, 1]) / scale
        out[f"browOuter{s}"] = (p[list(BROW_OUTER[s]), 1].mean() - p[NOSE_BRIDGE, 1]) / scale
        corner = p[MOUTH_CORNER[s]] - p[UPPER_LIP]
        out[f"corner{s}"] = (corner[1] + 0.5 * abs(corner[0])) / scale
    out["lipGap"] = (p[UPPER_LIP, 1] - p[LOWER_LIP, 1]) / scale
    # The jaw also drops with the lips closed, and lips part without it.
    out["chin"] = (p[NOSE_BRIDGE, 1] - p[CHIN, 1]) / scale
    out["upperLip"] = (p[NOSE_TIP, 1] - p[UPPER_LIP, 1]) / scale
    out["lowerLip"] = (p[LOWER_LIP, 1] - p[CHIN, 1]) / scale
    return np.array([out[name] for name in FEATURES])


@dataclass(frozen=True)
class FeatureModel:
    """span [C + H, F]: feature change per unit weight of each channel (ours, then helpers)."""

    span: np.ndarray
    template: np.ndarray     # [F] the template's features at rest
    eyeball_ratio: float     # eyeball radius over eye width (iris offset -> gaze angle)

    def solve(self, observed: np.ndarray, neutral: np.ndarray) -> np.ndarray:
        """[F] features now and at rest -> [len(CHANNELS)] weights in [0, 1]."""
        n = len(self.span)
        # The normal equations of || span' w - change ||^2 + RIDGE ||w||^2.
        hessian = self.span @ self.span.T + RIDGE * np.eye(n)
        weights = solve_box_qp(hessian, self.span @ (observed - neutral), np.zeros(n), np.ones(n))
        return weights[:len(CHANNELS)]

    def gaze(self, observed: np.ndarray, neutral: np.ndarray) -> np.ndarray:
        """[4] (left yaw, left pitch, right yaw, right pitch) radians from the irises:
        yaw toward the subject's left, pitch looking down (MotionFrame's convention)."""
        d = observed - neutral
        i = {name: FEATURES.index(name) for name in ("irisXL", "irisYL", "irisXR", "irisYR")}

        def angle(offset):
            return float(np.arcsin(np.clip(offset / self.eyeball_ratio, -1.0, 1.0)))

        return np.array([angle(d[i["irisXL"]]), -angle(d[i["irisYL"]]),
                         angle(d[i["irisXR"]]), -angle(d[i["irisYR"]])], np.float32)


@lru_cache(maxsize=1)
def feature_model(head: HeadModel | None = None, embedding: LandmarkEmbedding | None = None) -> FeatureModel:
    """The template head's own feature travel per channel (built once, ~10 ms)."""
    head = head or load_head_model()
    embedding = embedding or load_landmark_embedding()
    rest = features(embedding.points(head, head.template).astype(np.float64))
    rows = []
    for k in np.concatenate([CHANNEL_INDEX, HELPER_INDEX]):
        weights = np.zeros(NUM_ARKIT, np.float32)
        weights[k] = 1.0
        rows.append(features(embedding.points(head, head.shape(None, weights)).astype(np.float64)) - rest)
    eye = head.template[head.part_labels == EYE_LEFT]
    radius = np.linalg.norm(eye - eye.mean(0), axis=1).max()
    points = embedding.points(head, head.template)
    width = np.linalg.norm(points[EYE["L"]["outer"]] - points[EYE["L"]["inner"]])
    return FeatureModel(np.array(rows), rest, float(radius / width))


def rendered_rest(identity: np.ndarray | None, bias: np.ndarray | None,
                  head: HeadModel | None = None, embedding: LandmarkEmbedding | None = None) -> np.ndarray:
    """[F] an avatar's features at rest as the detector reads its render: the model's
    landmarks of `identity` [K] at rest plus the avatar's `landmark_bias` [478, 3] (the
    detector's reading of that render minus the model's points; None: the model's own).

    The photo the avatar came from is no rest: it smiles or raises its brows, and taking
    the fitted expression out of it again is only as good as that fit."""
    head = head or load_head_model()
    embedding = embedding or load_landmark_embedding()
    points = embedding.points(head, head.shape(identity)).astype(np.float64)
    if bias is not None:
        points = points + np.asarray(bias, np.float64)
    return features(points)
