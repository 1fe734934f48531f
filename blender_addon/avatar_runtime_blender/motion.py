"""Motion samples (52 ARKit weights + head rotation), Live Link Face CSV takes, baking resample.

No bpy here. Rotations are quaternions (x, y, z, w) in the runtime's world (+Y up, the head
faces +Z); `convert.head_pose_rotation` takes them into Blender.
"""

from __future__ import annotations

import bisect
import csv
import math
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

# The 52 ARKit blendshapes in Live Link Face order (the runtime's MotionFrame.arkit order).
ARKIT_NAMES: tuple[str, ...] = (
    "eyeBlinkLeft", "eyeLookDownLeft", "eyeLookInLeft", "eyeLookOutLeft", "eyeLookUpLeft",
    "eyeSquintLeft", "eyeWideLeft",
    "eyeBlinkRight", "eyeLookDownRight", "eyeLookInRight", "eyeLookOutRight", "eyeLookUpRight",
    "eyeSquintRight", "eyeWideRight",
    "jawForward", "jawLeft", "jawRight", "jawOpen",
    "mouthClose", "mouthFunnel", "mouthPucker", "mouthLeft", "mouthRight",
    "mouthSmileLeft", "mouthSmileRight", "mouthFrownLeft", "mouthFrownRight",
    "mouthDimpleLeft", "mouthDimpleRight", "mouthStretchLeft", "mouthStretchRight",
    "mouthRollLower", "mouthRollUpper", "mouthShrugLower", "mouthShrugUpper",
    "mouthPressLeft", "mouthPressRight", "mouthLowerDownLeft", "mouthLowerDownRight",
    "mouthUpperUpLeft", "mouthUpperUpRight",
    "browDownLeft", "browDownRight", "browInnerUp", "browOuterUpLeft", "browOuterUpRight",
    "cheekPuff", "cheekSquintLeft", "cheekSquintRight",
    "noseSneerLeft", "noseSneerRight", "tongueOut",
)
NUM_ARKIT = len(ARKIT_NAMES)
IDENTITY = (0.0, 0.0, 0.0, 1.0)


class MotionFileError(ValueError):
    """A motion file that cannot be read; the message names the line and what was wrong."""


@dataclass(frozen=True)
class MotionSample:
    """One frame of facial motion at `timecode` seconds."""

    sequence: int
    timecode: float
    arkit: tuple[float, ...]  # [52] weights in [0, 1], ARKIT_NAMES order
    head_rotation: tuple[float, float, float, float] = IDENTITY  # (x, y, z, w)

    @staticmethod
    def from_body(body: dict) -> "MotionSample":
        """A MotionFrame map from the runtime -> sample (empty lists mean neutral)."""
        arkit = tuple(float(v) for v in body.get("arkit") or ())
        if not arkit:
            arkit = (0.0,) * NUM_ARKIT
        if len(arkit) != NUM_ARKIT:
            raise ValueError(f"MotionFrame has {len(arkit)} ARKit weights, expected {NUM_ARKIT}")
        rotation = tuple(float(v) for v in body.get("head_rotation") or IDENTITY)
        if len(rotation) != 4:
            raise ValueError(f"MotionFrame head_rotation has {len(rotation)} values, expected 4")
        return MotionSample(int(body.get("sequence", 0)), float(body.get("timecode", 0.0)),
                            arkit, rotation)  # type: ignore[arg-type]


# -- quaternions ---------------------------------------------------------------------------
def _quat_mul(a: Sequence[float], b: Sequence[float]) -> tuple[float, float, float, float]:
    ax, ay, az, aw = a
    bx, by, bz, bw = b
    return (aw * bx + ax * bw + ay * bz - az * by,
            aw * by - ax * bz + ay * bw + az * bx,
            aw * bz + ax * by - ay * bx + az * bw,
            aw * bw - ax * bx - ay * by - az * bz)


def euler_to_quat(yaw: float, pitch: float, roll: float) -> tuple[float, float, float, float]:
    """Head angles (radians) -> quaternion (x, y, z, w): R = Ry(yaw) @ Rx(pitch) @ Rz(roll).

    The runtime's convention (and Live Link Face's, for a non-mirrored take): yaw positive
    turns the face toward the subject's left (+X), pitch positive looks down, roll positive
    tips the head toward the subject's right shoulder.
    """
    qy = (0.0, math.sin(yaw / 2), 0.0, math.cos(yaw / 2))
    qx = (math.sin(pitch / 2), 0.0, 0.0, math.cos(pitch / 2))
    qz = (0.0, 0.0, math.sin(roll / 2), math.cos(roll / 2))
    return _quat_mul(_quat_mul(qy, qx), qz)


def _nlerp(a: Sequence[float], b: Sequence[float], t: float) -> tuple[float, float, float, float]:
    if sum(x * y for x, y in zip(a, b)) < 0:
        b = [-v for v in b]
    q = [x + (y - x) * t for x, y in zip(a, b)]
    norm = math.sqrt(sum(v * v for v in q)) or 1.0
    return tuple(v / norm for v in q)  # type: ignore[return-value]


# -- Live Link Face CSV ------------------------------------------------------------------
_TIMECODE = re.compile(r"^(\d+):(\d{1,2}):(\d{1,2})[:;](\d+(?:\.\d*)?)$")
_HEAD_COLUMNS = ("headyaw", "headpitch", "headroll")
_SECONDS_PER_DAY = 86400.0


def read_livelink_csv(path: str | Path, fps: float = 60.0) -> list[MotionSample]:
    """Samples from a Live Link Face take (.csv), timecodes in seconds from the first frame.

    Layout: a header `Timecode,BlendShapeCount,EyeBlinkLeft,...,TongueOut,HeadYaw,HeadPitch,
    HeadRoll,...` then one row per frame. Columns are matched by name, case-insensitively,
    in any order (the app writes JawRight before JawLeft); unknown columns are ignored. The
    head angles are optional (radians; missing = facing the camera). Timecodes are
    HH:MM:SS:FF[.sub] with FF counting frames at `fps`, the recording's rate.
    """
    try:
        text = Path(path).read_text(encoding="utf-8-sig")
    except (OSError, UnicodeDecodeError) as exc:
        raise MotionFileError(f"cannot read {path}: {exc}") from None
    rows = [(n, [c.strip() for c in row]) for n, row in enumerate(csv.reader(text.splitlines()), 1)
            if any(c.strip() for c in row)]
    if len(rows) < 2:
        raise MotionFileError(f"{path}: expected a header line and at least one frame")
    header_line, header = rows[0]
    columns = {name.casefold(): i for i, name in enumerate(header) if name}
    wanted = ["timecode", *(n.casefold() for n in ARKIT_NAMES)]
    missing = [header_name for header_name, key in zip(["Timecode", *ARKIT_NAMES], wanted)
               if key not in columns]
    if missing:
        raise MotionFileError(f"{path} line {header_line}: missing column(s) {', '.join(missing)}; "
                              "a Live Link Face CSV has Timecode and the 52 ARKit curves")
    shape_cols = [columns[n.casefold()] for n in ARKIT_NAMES]
    head_cols = [columns[n] for n in _HEAD_COLUMNS if n in columns]
    if head_cols and len(head_cols) != 3:
        raise MotionFileError(f"{path} line {header_line}: give HeadYaw, HeadPitch and HeadRoll, or none")
    samples = []
    for sequence, (line, row) in enumerate(rows[1:]):
        if len(row) < len(header):
            raise MotionFileError(f"{path} line {line}: {len(row)} fields, the header has {len(header)}")
        try:
            timecode = _parse_timecode(row[columns["timecode"]], fps)
            arkit = tuple(_finite(row[c]) for c in shape_cols)
            angles = [_finite(row[c]) for c in head_cols] or [0.0, 0.0, 0.0]
        except ValueError as exc:
            raise MotionFileError(f"{path} line {line}: {exc}") from None
        samples.append(MotionSample(sequence, timecode, arkit, euler_to_quat(*angles)))
    start = samples[0].timecode
    return [MotionSample(s.sequence, (s.timecode - start) % _SECONDS_PER_DAY, s.arkit, s.head_rotation)
            for s in samples]


def _finite(text: str) -> float:
    value = float(text)
    if not math.isfinite(value):
        raise ValueError(f"{text!r} is not a finite number")
    return value


def _parse_timecode(text: str, fps: float) -> float:
    """'HH:MM:SS:FF[.sub]' at `fps` -> seconds since midnight."""
    match = _TIMECODE.match(text)
    if match is None:
        raise ValueError(f"{text!r} is not a timecode HH:MM:SS:FF[.subframe]")
    hours, minutes, seconds = (int(g) for g in match.groups()[:3])
    return hours * 3600.0 + minutes * 60.0 + seconds + float(match.group(4)) / fps


# -- baking ------------------------------------------------------------------------------
@dataclass(frozen=True)
class Resampled:
    """`resample`'s result: one sample per keyed frame, and the frames left as they were."""

    keyed: list[tuple[int, MotionSample]]  # (frame offset from the footage start, sample)
    held: list[int]  # keyed frame offsets inside a run of faceless footage (the last pose, held)
    unkeyed_before: int  # frames before the first sample (faceless footage start): not keyed
    unkeyed_after: int  # frames after the last sample up to the footage end: not keyed


def resample(samples: Sequence[MotionSample], fps: float, origin: float | None = None,
             missing: Sequence[float] = (), end: float | None = None) -> Resampled:
    """Samples (any rate, by timecode) -> one sample per frame at `fps`, on the footage's clock.

    Frame offset k is the time `origin + k / fps` (`origin`: the footage's first frame; by default
    the first sample's timecode), so a sample keeps its place on the timeline even when the
    footage starts without a face. Frames from the first to the last sample are keyed: between
    two samples weights are interpolated linearly and rotations by nlerp, except across footage
    frames that had no face (`missing`: their timecodes), where the earlier sample is held.
    Frames before the first sample (and after the last, up to `end`) are counted, not keyed.
    """
    if fps <= 0:
        raise ValueError("fps must be positive")
    ordered = sorted(samples, key=lambda s: s.timecode)
    if not ordered:
        return Resampled([], [], 0, 0)
    origin = ordered[0].timecode if origin is None else origin
    gaps = sorted(missing)
    first = int(math.ceil((ordered[0].timecode - origin) * fps - 1e-6))
    last = int(math.floor((ordered[-1].timecode - origin) * fps + 1e-6))
    out, held, k = [], [], 0
    for frame in range(first, last + 1):
        t = origin + frame / fps
        while k + 1 < len(ordered) and ordered[k + 1].timecode <= t + 1e-9:
            k += 1
        a = ordered[k]
        b = ordered[min(k + 1, len(ordered) - 1)]
        span = b.timecode - a.timecode
        if span > 0 and _any_between(gaps, a.timecode, b.timecode):
            w = 0.0
            if t > a.timecode + 1e-9:
                held.append(frame)
        else:
            w = 0.0 if span <= 0 else min(max((t - a.timecode) / span, 0.0), 1.0)
        arkit = tuple(x + (y - x) * w for x, y in zip(a.arkit, b.arkit))
        out.append((frame, MotionSample(frame, t, arkit, _nlerp(a.head_rotation, b.head_rotation, w))))
    after = 0 if end is None else max(0, int(math.floor((end - origin) * fps + 1e-6)) - last)
    return Resampled(out, held, max(0, first), after)


def _any_between(sorted_times: Sequence[float], low: float, high: float) -> bool:
    """Whether a time lies strictly between `low` and `high`."""
    i = bisect.bisect_right(sorted_times, low + 1e-9)
    return i < len(sorted_times) and sorted_times[i] < high - 1e-9
