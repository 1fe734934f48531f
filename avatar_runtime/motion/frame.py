"""`MotionFrame`: one frame of face motion (DESIGN.md section 5, "Motion frame").

A frame holds the 52 ARKit weights in Live Link Face order, the head pose, optional eye
gaze, and the client's sequence number and timecode (echoed in the reply). Angles follow
`avatar_runtime.motion.pose`: eye yaw is positive toward the subject's left (+X), eye pitch
positive looking down, both in radians.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from avatar_runtime.errors import InvalidArgument, InvalidMotion
from avatar_runtime.motion.arkit import ARKIT_INDEX, ARKIT_INDEX_CASEFOLD, ARKIT_NAMES, NUM_ARKIT
from avatar_runtime.motion.pose import IDENTITY_QUAT, normalize_quat

MAX_FPS = 1000.0
# Trackers overshoot a little (ARKit reports e.g. 1.0000001 or -0.003): such values are
# clipped. Anything further out is an error: it means wrong units or a wrong channel order.
ARKIT_TOLERANCE = 0.01
QUAT_LABELS = ("x", "y", "z", "w")
TRANSLATION_LABELS = ("x", "y", "z")
EYE_GAZE_LABELS = ("left yaw", "left pitch", "right yaw", "right pitch")
MOTION_CODE_DIM = NUM_ARKIT + 4 + 3 + 4  # see MotionFrame.code


@dataclass(eq=False)  # eq on numpy arrays is ambiguous; compare fields explicitly
class MotionFrame:
    """One frame of motion; `validate()` runs on construction (and on `dataclasses.replace`).

    arkit:            [52] float32 weights in [0, 1], order `ARKIT_NAMES`.
    head_rotation:    [4] float32 unit quaternion (x, y, z, w); identity faces the camera.
    head_translation: [3] float32 metres, world axes.
    eye_gaze:         [4] float32 (left yaw, left pitch, right yaw, right pitch) radians, or None.
    sequence:         the client's frame number (>= 0).
    timecode:         seconds, the client's clock.
    """

    arkit: np.ndarray
    head_rotation: np.ndarray = field(default_factory=lambda: IDENTITY_QUAT.copy())
    head_translation: np.ndarray = field(default_factory=lambda: np.zeros(3, np.float32))
    eye_gaze: np.ndarray | None = None
    sequence: int = 0
    timecode: float = 0.0

    def __post_init__(self) -> None:
        self.validate()

    @classmethod
    def neutral(cls, sequence: int = 0, timecode: float = 0.0) -> MotionFrame:
        """All weights 0, head facing the camera at the origin, no eye gaze."""
        return cls(np.zeros(NUM_ARKIT, np.float32), sequence=sequence, timecode=timecode)

    @classmethod
    def from_weights(cls, weights: Mapping[str, float], **kwargs: Any) -> MotionFrame:
        """Frame from {ARKit name: weight} (others 0); `kwargs` go to the constructor."""
        arkit = np.zeros(NUM_ARKIT, np.float64)
        for name, weight in weights.items():
            try:
                arkit[_arkit_index(name)] = float(weight)
            except (TypeError, ValueError):
                msg = f"weight for {name!r} must be a number, got {weight!r}"
                raise InvalidMotion(msg) from None
        return cls(arkit, **kwargs)

    def code(self) -> np.ndarray:
        """The frame as a motion code [MOTION_CODE_DIM] float32: 52 ARKit, quaternion (x, y, z, w),
        translation in decimetres (to match the other ranges), eye gaze (zeros when absent).
        The learned reconstructor's motion input and the wire's `embedding` source."""
        gaze = self.eye_gaze if self.eye_gaze is not None else np.zeros(4, np.float32)
        return np.concatenate([self.arkit, self.head_rotation, self.head_translation * 10.0,
                               gaze]).astype(np.float32)

    @classmethod
    def from_code(cls, values: Any, sequence: int = 0, timecode: float = 0.0) -> MotionFrame:
        """Inverse of `code()`; InvalidMotion for a wrong length or non-finite values. A gaze
        of four zeros reads as no gaze."""
        code = _float_vector("embedding", values, [f"code[{i}]" for i in range(MOTION_CODE_DIM)])
        gaze = code[59:63]
        return cls(code[:52], head_rotation=code[52:56], head_translation=code[56:59] / 10.0,
                   eye_gaze=gaze if np.any(gaze) else None, sequence=sequence, timecode=timecode)

    def weights(self) -> dict[str, float]:
        """{ARKit name: weight} for all 52 names, in `ARKIT_NAMES` order."""
        return {name: float(w) for name, w in zip(ARKIT_NAMES, self.arkit, strict=True)}

    def validate(self) -> None:
        """Coerce every field to its documented dtype and shape; InvalidMotion says what's wrong."""
        arkit = _float_vector("arkit", self.arkit, ARKIT_NAMES)
        self.arkit = _clip_arkit(arkit).astype(np.float32)
        rotation = _float_vector("head_rotation", self.head_rotation, QUAT_LABELS)
        self.head_rotation = _unit_quat(rotation).astype(np.float32)
        translation = _float_vector("head_translation", self.head_translation, TRANSLATION_LABELS)
        self.head_translation = translation.astype(np.float32)
        if self.eye_gaze is not None:
            gaze = _float_vector("eye_gaze", self.eye_gaze, EYE_GAZE_LABELS)
            self.eye_gaze = gaze.astype(np.float32)
        self.sequence = _sequence(self.sequence)
        self.timecode = _timecode(self.timecode)


def check_fps(fps: float) -> None:
    """InvalidArgument unless `fps` is a usable frame rate (frame numbers -> timecodes)."""
    # bool is an int subclass; True fps is a caller bug, not 1 Hz.
    if isinstance(fps, bool) or not isinstance(fps, (int, float)) or not 0 < fps <= MAX_FPS:
        raise InvalidArgument(f"fps must be a number in (0, {MAX_FPS:g}], got {fps!r}")


def _arkit_index(name: str) -> int:
    """Index of an exact ARKit name; the error suggests the spelling when only case differs."""
    if name in ARKIT_INDEX:
        return ARKIT_INDEX[name]
    folded = ARKIT_INDEX_CASEFOLD.get(str(name).casefold())
    hint = f" (did you mean {ARKIT_NAMES[folded]!r}?)" if folded is not None else ""
    raise InvalidMotion(
        f"unknown ARKit name {name!r}{hint}; names are the 52 lowerCamelCase "
        "ARKit names, e.g. 'jawOpen', 'eyeBlinkLeft'"
    )


def _describe_bad(value: float) -> str:
    if math.isnan(value):
        return "NaN"
    if math.isinf(value):
        return "inf" if value > 0 else "-inf"
    return f"{value:g}, beyond float32 range"


def _float_vector(name: str, value: Any, labels: Sequence[str]) -> np.ndarray:
    """`value` as a float64 [len(labels)] vector, finite in float32, else InvalidMotion."""
    size = len(labels)
    try:
        arr = np.asarray(value, dtype=np.float64)
    except (TypeError, ValueError):
        raise InvalidMotion(f"{name} must be {size} numbers, got a non-numeric value") from None
    if arr.ndim != 1:
        raise InvalidMotion(f"{name} must be a flat list of {size} values, got shape {arr.shape}")
    if arr.size != size:
        raise InvalidMotion(f"{name} must have {size} values, got {arr.size}")
    with np.errstate(over="ignore"):
        bad = np.flatnonzero(~np.isfinite(arr.astype(np.float32)))
    if bad.size:
        i = int(bad[0])
        raise InvalidMotion(
            f"{name}[{i}] ({labels[i]}) is {_describe_bad(arr[i])}; values must be finite"
        )
    return arr


def _clip_arkit(arkit: np.ndarray) -> np.ndarray:
    """Clip tracker overshoot into [0, 1]; reject values further than ARKIT_TOLERANCE outside."""
    out = np.flatnonzero((arkit < -ARKIT_TOLERANCE) | (arkit > 1 + ARKIT_TOLERANCE))
    if out.size:
        i = int(out[0])
        raise InvalidMotion(
            f"arkit[{i}] ({ARKIT_NAMES[i]}) is {arkit[i]:g}; allowed range is [0, 1] "
            f"(excursions of up to {ARKIT_TOLERANCE:g} are clipped)"
        )
    return np.clip(arkit, 0.0, 1.0)


def _unit_quat(quat: np.ndarray) -> np.ndarray:
    try:
        return normalize_quat(quat)
    except ValueError:
        raise InvalidMotion(
            "head_rotation must be a non-zero quaternion (x, y, z, w); "
            "use (0, 0, 0, 1) for no rotation"
        ) from None


def _sequence(value: Any) -> int:
    # bool is an int subclass, but True as a frame number is certainly a caller bug.
    if isinstance(value, (bool, np.bool_)) or not isinstance(value, (int, np.integer)) or value < 0:
        raise InvalidMotion(f"sequence must be a non-negative integer, got {value!r}")
    return int(value)


def _timecode(value: Any) -> float:
    try:
        seconds = float(value)
    except (TypeError, ValueError):
        seconds = math.nan
    if not math.isfinite(seconds):
        raise InvalidMotion(f"timecode must be a finite number of seconds, got {value!r}")
    return seconds
