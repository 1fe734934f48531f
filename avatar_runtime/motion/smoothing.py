"""Jitter removal for motion streams: the One-Euro filter, per channel.

The One-Euro filter (Casiez, Roussel, Vogel, CHI 2012) is a low-pass filter whose cutoff
rises with the signal's speed: slow movements are smoothed hard (no jitter at rest), fast
ones pass with little lag. `min_cutoff` (Hz) sets the smoothing at rest, `beta` how fast
the cutoff opens with speed, `d_cutoff` (Hz) smooths the speed estimate itself.
"""

from __future__ import annotations

import dataclasses
import math

import numpy as np
from numpy.typing import ArrayLike

from avatar_runtime.errors import InvalidArgument
from avatar_runtime.motion.frame import MotionFrame
from avatar_runtime.motion.pose import normalize_quat

# Step assumed when timestamps do not increase before any real step was seen: Live Link
# Face's default rate. After that the last real step is reused.
DEFAULT_DT = 1.0 / 60.0
MIN_DT = 1e-6  # seconds: 1 MHz, far above any frame rate (MAX_FPS is 1 kHz)


def _smoothing_factor(cutoff: np.ndarray | float, dt: float) -> np.ndarray | float:
    """Exponential smoothing weight of a first-order low-pass at `cutoff` Hz for a step `dt` s."""
    r = 2.0 * math.pi * cutoff * dt
    return r / (r + 1.0)


def _check_params(min_cutoff: float, beta: float, d_cutoff: float) -> None:
    for name, value in (("min_cutoff", min_cutoff), ("d_cutoff", d_cutoff)):
        if not (math.isfinite(value) and value > 0):
            raise InvalidArgument(f"{name} must be a finite frequency > 0 Hz, got {value!r}")
    if not (math.isfinite(beta) and beta >= 0):
        raise InvalidArgument(f"beta must be a finite number >= 0, got {beta!r}")


class OneEuroFilter:
    """One-Euro filter over any number of independent channels.

    Call with a sample `x` (any shape, the same on every call) and its timestamp `t` in
    seconds; returns the filtered sample (float64, same shape). The first sample after
    construction or `reset()` passes through unchanged. A timestamp that does not increase
    (duplicate or out-of-order packet, a looping clip), or one under MIN_DT ahead, is treated
    as one ordinary step (the last real step, else DEFAULT_DT) rather than a zero, tiny or
    negative one, which would divide by (almost) zero or reverse the filter.
    """

    def __init__(self, min_cutoff: float = 1.0, beta: float = 0.0, d_cutoff: float = 1.0):
        _check_params(min_cutoff, beta, d_cutoff)
        self.min_cutoff, self.beta, self.d_cutoff = float(min_cutoff), float(beta), float(d_cutoff)
        self.reset()

    def reset(self) -> None:
        """Forget the history; the next sample passes through unchanged."""
        self._x: np.ndarray | None = None  # last filtered value
        self._dx: np.ndarray | None = None  # last filtered derivative
        self._t = 0.0
        self._dt = DEFAULT_DT

    def __call__(self, x: ArrayLike, t: float) -> np.ndarray:
        x = np.array(x, dtype=np.float64)  # a copy: callers may reuse their buffer
        if self._x is None:
            self._x, self._dx, self._t = x, np.zeros_like(x), float(t)
            return x.copy()
        if x.shape != self._x.shape:
            raise ValueError(
                f"sample shape changed from {self._x.shape} to {x.shape}; call reset() first"
            )
        dt = self._step(float(t))
        self._dx = self._dx + _smoothing_factor(self.d_cutoff, dt) * ((x - self._x) / dt - self._dx)
        cutoff = self.min_cutoff + self.beta * np.abs(self._dx)
        self._x = self._x + _smoothing_factor(cutoff, dt) * (x - self._x)
        return self._x.copy()

    def _step(self, t: float) -> float:
        """Time since the previous sample; non-increasing timestamps, and steps too short to be
        real frames (which overflow (x - x_prev) / dt), count as a usual step."""
        dt = t - self._t
        self._t = t
        if dt >= MIN_DT:
            self._dt = dt
        return self._dt


class MotionSmoother:
    """One-Euro smoothing of every channel of a MotionFrame stream, keyed on `frame.timecode`.

    ARKit weights, head translation and eye gaze are filtered per channel. The head
    quaternion is filtered per component after flipping it into the hemisphere of the
    previous output (q and -q are the same rotation; averaging them would pass through
    zero), then renormalised. Returns new frames; sequence and timecode are preserved.
    """

    def __init__(self, min_cutoff: float = 1.0, beta: float = 0.0, d_cutoff: float = 1.0):
        params = dict(min_cutoff=min_cutoff, beta=beta, d_cutoff=d_cutoff)  # checked by the filters
        self._arkit = OneEuroFilter(**params)
        self._rotation = OneEuroFilter(**params)
        self._translation = OneEuroFilter(**params)
        self._gaze = OneEuroFilter(**params)
        self._last_rotation: np.ndarray | None = None

    def reset(self) -> None:
        """Forget the history (e.g. a new take); the next frame passes through unchanged."""
        for f in (self._arkit, self._rotation, self._translation, self._gaze):
            f.reset()
        self._last_rotation = None

    def __call__(self, frame: MotionFrame) -> MotionFrame:
        t = frame.timecode
        return dataclasses.replace(
            frame,
            arkit=self._arkit(frame.arkit, t),
            head_rotation=self._smooth_rotation(frame.head_rotation, t),
            head_translation=self._translation(frame.head_translation, t),
            eye_gaze=self._smooth_gaze(frame.eye_gaze, t),
        )

    def _smooth_rotation(self, quat: np.ndarray, t: float) -> np.ndarray:
        q = np.asarray(quat, np.float64)
        if self._last_rotation is not None and np.dot(q, self._last_rotation) < 0:
            q = -q
        self._last_rotation = normalize_quat(self._rotation(q, t))
        return self._last_rotation

    def _smooth_gaze(self, gaze: np.ndarray | None, t: float) -> np.ndarray | None:
        if gaze is None:
            # Gaze dropped out (e.g. eyes lost by the tracker): start afresh when it returns
            # rather than blending from a stale direction.
            self._gaze.reset()
            return None
        return self._gaze(gaze, t)
