"""Built-in motion clips, generated procedurally (no files to ship or find).

They give every front end something to drive an avatar with before a tracker is
connected: previews, thumbnails, turntables, smoke tests. Every clip starts and ends on
the neutral pose, so it loops cleanly, and every movement eases in and out.

- "demo" (6 s): blinks, a smile, jaw open, brow raise, a head yaw sweep (+-25 deg) then a
  pitch sweep (+-12 deg).
- "talk" (4 s): jaw and lips cycling at a syllable rate, with small head movements.
- "turntable-neutral" (4 s): neutral expression, head still (for camera turntables).
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import NamedTuple

import numpy as np

from avatar_runtime.errors import InvalidArgument
from avatar_runtime.motion.arkit import ARKIT_INDEX, NUM_ARKIT
from avatar_runtime.motion.frame import MotionFrame, check_fps
from avatar_runtime.motion.pose import euler_to_quat

Keys = list[tuple[float, float]]  # (time in s, value), times increasing
# A clip's tracks at times t [N]: ({ARKit name: weights [N]}, head yaw/pitch/roll degrees [N, 3]).
Tracks = tuple[dict[str, np.ndarray], np.ndarray]


def _smoothstep(u: np.ndarray) -> np.ndarray:
    """0 -> 1 with zero slope at both ends: the ease in/out between keys."""
    return u * u * (3.0 - 2.0 * u)


def _keyframed(t: np.ndarray, keys: Keys) -> np.ndarray:
    """Curve through `keys` at times t [N]: eased between keys, held outside them."""
    times, values = (np.asarray(v, np.float64) for v in zip(*keys, strict=True))
    i = np.clip(np.searchsorted(times, t, side="right") - 1, 0, len(times) - 2)
    u = np.clip((t - times[i]) / (times[i + 1] - times[i]), 0.0, 1.0)
    return values[i] + (values[i + 1] - values[i]) * _smoothstep(u)


def _blinks(*at: float) -> Keys:
    """Keys for blinks closing fully at each time in `at`: a fast close, a slower reopening."""
    return [key for c in at for key in ((c - 0.08, 0.0), (c, 1.0), (c + 0.14, 0.0))]


def _demo(t: np.ndarray) -> Tracks:
    blink = _keyframed(t, _blinks(0.5, 2.7, 4.9))
    smile = _keyframed(t, [(1.0, 0.0), (1.6, 0.8), (2.4, 0.8), (3.0, 0.0)])
    jaw = _keyframed(t, [(3.0, 0.0), (3.4, 0.6), (3.9, 0.0)])
    brow = _keyframed(t, [(3.8, 0.0), (4.3, 0.9), (5.0, 0.0)])
    weights = {
        "eyeBlinkLeft": blink,
        "eyeBlinkRight": blink,
        "mouthSmileLeft": smile,
        "mouthSmileRight": smile,
        "jawOpen": jaw,
        "browInnerUp": brow,
        "browOuterUpLeft": brow,
        "browOuterUpRight": brow,
    }
    yaw = _keyframed(t, [(0.0, 0.0), (1.25, 25.0), (2.75, -25.0), (3.5, 0.0)])
    pitch = _keyframed(t, [(3.5, 0.0), (4.25, 12.0), (5.0, -12.0), (5.75, 0.0)])
    return weights, np.stack([yaw, pitch, np.zeros_like(t)], axis=-1)


def _talk(t: np.ndarray) -> Tracks:
    envelope = _keyframed(t, [(0.0, 0.0), (0.4, 1.0), (3.6, 1.0), (4.0, 0.0)])
    # Syllables at ~4.5 Hz shaped by a slower phrase rhythm, and lip rounding on a third,
    # unrelated period, so the mouth does not visibly repeat.
    syllable = 0.5 - 0.5 * np.cos(2 * math.pi * 4.5 * t)
    phrase = 0.6 + 0.4 * np.sin(2 * math.pi * 0.7 * t)
    jaw = envelope * 0.45 * syllable * phrase
    rounding = np.sin(2 * math.pi * 1.3 * t)
    weights = {
        "jawOpen": jaw,
        "mouthLowerDownLeft": 0.6 * jaw,
        "mouthLowerDownRight": 0.6 * jaw,
        "mouthUpperUpLeft": 0.3 * jaw,
        "mouthUpperUpRight": 0.3 * jaw,
        "mouthFunnel": envelope * 0.3 * np.clip(rounding, 0.0, None),
        "mouthPucker": envelope * 0.25 * np.clip(-rounding, 0.0, None),
        "mouthClose": envelope * 0.1 * (1.0 - syllable),
    }
    yaw = envelope * 4.0 * np.sin(2 * math.pi * 0.35 * t)
    pitch = envelope * 2.5 * np.sin(2 * math.pi * 0.9 * t)
    return weights, np.stack([yaw, pitch, np.zeros_like(t)], axis=-1)


def _neutral(t: np.ndarray) -> Tracks:
    return {}, np.zeros((t.size, 3))


class _Clip(NamedTuple):
    duration: float  # seconds
    tracks: Callable[[np.ndarray], Tracks]


_CLIPS: dict[str, _Clip] = {
    "demo": _Clip(6.0, _demo),
    "talk": _Clip(4.0, _talk),
    "turntable-neutral": _Clip(4.0, _neutral),
}
CLIP_NAMES: tuple[str, ...] = tuple(_CLIPS)


def builtin_clip(name: str = "demo", fps: float = 30.0) -> list[MotionFrame]:
    """Clip `name` at `fps`: round(duration * fps) frames; frame i: sequence i, timecode i/fps."""
    clip = _CLIPS.get(name)
    if clip is None:
        raise InvalidArgument(f"unknown clip {name!r}; built-in clips are: {', '.join(CLIP_NAMES)}")
    check_fps(fps)
    n = max(1, round(clip.duration * fps))
    t = np.arange(n) / fps
    weights, ypr_deg = clip.tracks(t)
    arkit = np.zeros((n, NUM_ARKIT))
    for shape, curve in weights.items():
        arkit[:, ARKIT_INDEX[shape]] = curve
    quats = euler_to_quat(np.radians(ypr_deg))
    return [MotionFrame(arkit[i], quats[i], sequence=i, timecode=i / fps) for i in range(n)]
