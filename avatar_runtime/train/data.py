"""A fixed synthetic multi-view set and the batches of the two training stages.

Stage 1 (static): source and target show the same expression; the target is another view.
Stage 2 (cross-view self-reenactment): source frame (expression a, view p) + driving
frame (expression b, seen at view p), supervised by expression b at view q. With a
`RealFrames` provider (pseudo multi-view videos, `pseudo_multiview.py`), stage-2 examples
come from its videos, and the real frame replaces the synthesised source view p with
probability 10% and the synthesised target view q with probability 80% (the real target
is the driving frame itself, at its own camera).
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Protocol

import numpy as np
import torch

from avatar_runtime.motion.frame import MotionFrame
from avatar_runtime.reconstruct.portrait4d.motion import motion_vector
from avatar_runtime.render.camera import Camera
from avatar_runtime.train.synthetic import SyntheticHeads, View

log = logging.getLogger(__name__)


@dataclass
class Example:
    """One training example (numpy): source rgb [S, S, 3], motions [M], target view."""

    source: np.ndarray
    source_motion: np.ndarray
    driving_motion: np.ndarray
    target: View
    target_low: View
    source_real: bool = False
    """The source is a real frame (not a render)."""
    target_real: bool = False
    """The target is a real frame at its own camera (not a render)."""


@dataclass
class Batch:
    """Stacked examples: source [B, 3, S, S], motions [B, M], cameras [B], targets
    rgb [B, 3, S, S], rgb_low [B, 3, h, h], alpha_low [B, h, h], depth_low [B, h, h]."""

    source: torch.Tensor
    source_motion: torch.Tensor
    driving_motion: torch.Tensor
    cameras: list[Camera]
    rgb: torch.Tensor
    rgb_low: torch.Tensor
    alpha_low: torch.Tensor
    depth_low: torch.Tensor

    def to(self, device: str | torch.device) -> "Batch":
        move = lambda t: t.to(device)  # noqa: E731
        return Batch(move(self.source), move(self.source_motion), move(self.driving_motion),
                     self.cameras, move(self.rgb), move(self.rgb_low), move(self.alpha_low),
                     move(self.depth_low))


class RealFrames(Protocol):
    """Real videos with pseudo multi-view views (e.g. `pseudo_multiview.PseudoMultiView`).

    `example` draws a video, a source frame s, a driving frame d and two views p != q of
    its (synthesised) multi-view rig, and returns: source = frame s at view p, or the real
    frame s if `real_source`; target = frame d at view q, or the real frame d at its own
    camera if `real_target`; source / driving motion = frames s / d's motion.
    """

    def example(self, rng: np.random.Generator, real_source: bool, real_target: bool) -> Example: ...


class SyntheticSet:
    """subjects x expressions x views, rendered once at `image_size` and `low_size`."""

    def __init__(self, gen: SyntheticHeads, subjects: int, expressions: int, views: int,
                 low_size: int, seed: int = 0):
        rng = np.random.default_rng(seed)
        self.gen, self.low_size = gen, low_size
        self.subjects = [gen.subject(rng) for _ in range(subjects)]
        self.expressions = [[gen.expression(rng) for _ in range(expressions)] for _ in range(subjects)]
        self.cameras = [[gen.camera(rng) for _ in range(views)] for _ in range(subjects)]
        self._views: dict[tuple, tuple[View, View]] = {}

    def view(self, s: int, e: int, camera: Camera) -> tuple[View, View]:
        """(full, low) renders of subject s with expression e, cached by camera."""
        key = (s, e, camera.c2w.tobytes())
        if key not in self._views:
            subject, expr = self.subjects[s], self.expressions[s][e]
            self._views[key] = (self.gen.render(subject, expr, camera),
                                self.gen.render(subject, expr, camera.with_size(self.low_size, self.low_size)))
        return self._views[key]

    def example(self, s: int, e_src: int, e_drv: int, cam_src: Camera, cam_tgt: Camera) -> Example:
        source = self.view(s, e_src, cam_src)[0]
        full, low = self.view(s, e_drv, cam_tgt)
        motion = lambda e: motion_vector(MotionFrame(self.expressions[s][e]))  # noqa: E731
        return Example(source.rgb, motion(e_src), motion(e_drv), full, low)

    def sample(self, rng: np.random.Generator, stage: int) -> Example:
        s = int(rng.integers(len(self.subjects)))
        p, q = rng.choice(len(self.cameras[s]), 2, replace=False)
        e_src = int(rng.integers(len(self.expressions[s])))
        e_drv = e_src if stage == 1 else int(rng.integers(len(self.expressions[s])))
        return self.example(s, e_src, e_drv, self.cameras[s][p], self.cameras[s][q])


class StageSampler:
    """Draws stage-1 or stage-2 examples, with real-frame substitution in stage 2.

    Stage 2 with `real`: a fraction `video_prob` of the examples comes from the real videos
    (the rest from the synthetic set); in those, the real frame replaces the source with
    probability `real_source_prob` and the target with `real_target_prob`, independently.
    """

    def __init__(self, data: SyntheticSet, stage: int, real: RealFrames | None = None,
                 real_source_prob: float = 0.1, real_target_prob: float = 0.8,
                 video_prob: float = 1.0):
        for name, value in (("real_source_prob", real_source_prob),
                            ("real_target_prob", real_target_prob), ("video_prob", video_prob)):
            if not 0.0 <= value <= 1.0:
                raise ValueError(f"{name} must be in [0, 1], got {value}")
        self.data, self.stage, self.real = data, stage, real
        self.probs = (real_source_prob, real_target_prob)
        self.video_prob = video_prob
        if stage == 2 and real is None:
            log.warning("stage 2 without real frames: source/target substitution "
                        "(%.0f%% / %.0f%%) is off; training on synthetic frames only",
                        100 * self.probs[0], 100 * self.probs[1])
        if stage == 1 and real is not None:
            log.warning("stage 1 is static and synthetic: the real videos are not used")

    def example(self, rng: np.random.Generator) -> Example:
        if self.stage == 2 and self.real is not None and rng.random() < self.video_prob:
            real_source = bool(rng.random() < self.probs[0])
            real_target = bool(rng.random() < self.probs[1])
            return self.real.example(rng, real_source, real_target)
        return self.data.sample(rng, self.stage)

    def batch(self, rng: np.random.Generator, size: int) -> Batch:
        return collate([self.example(rng) for _ in range(size)])


def collate(examples: list[Example]) -> Batch:
    img = lambda a: torch.from_numpy(np.stack(a)).permute(0, 3, 1, 2).float()  # noqa: E731
    vec = lambda a: torch.from_numpy(np.stack(a)).float()  # noqa: E731
    return Batch(img([e.source for e in examples]), vec([e.source_motion for e in examples]),
                 vec([e.driving_motion for e in examples]), [e.target.camera for e in examples],
                 img([e.target.rgb for e in examples]), img([e.target_low.rgb for e in examples]),
                 vec([e.target_low.alpha for e in examples]), vec([e.target_low.depth for e in examples]))


def held_out(data: SyntheticSet, n: int, seed: int = 1234) -> list[Example]:
    """n examples whose target cameras were never used in training (same subjects)."""
    rng = np.random.default_rng(seed)
    out = []
    for i in range(n):
        s = i % len(data.subjects)
        e = int(rng.integers(len(data.expressions[s])))
        out.append(data.example(s, e, e, data.cameras[s][0], data.gen.camera(rng)))
    return out
