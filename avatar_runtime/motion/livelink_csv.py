"""Live Link Face CSV recordings (the iPhone app's take export): read and write.

Format, as the app writes it (one header line, then one line per captured frame):

    Timecode,BlendShapeCount,EyeBlinkLeft,...,TongueOut,HeadYaw,HeadPitch,HeadRoll,
    LeftEyeYaw,LeftEyePitch,LeftEyeRoll,RightEyeYaw,RightEyePitch,RightEyeRoll
    14:23:05:12.345,61,0.0123,...

- Curve columns are the ARKit names with an upper-case first letter. Recordings list
  JawRight before JawLeft and MouthRight before MouthLeft (unlike `ARKIT_NAMES`), and
  some app versions spell the count column "BlendshapeCount". So columns are matched by
  name, case-insensitively, in any order; unknown extra columns are ignored.
- `Timecode` is time of day HH:MM:SS:FF.fraction, FF counting frames at the recording
  rate and the fraction a sub-frame (";" before FF, drop-frame style, is accepted too).
  Loaded timecodes are seconds since the first frame (a take crossing midnight is unwrapped).
- `BlendShapeCount` is the number of curve columns (61 = 52 shapes + 9 head/eye angles);
  when present it must match the header.
- Required: Timecode and the 52 shape columns. Optional: the head angles (all three or
  none; none = head facing the camera) and the eye angles (yaw and pitch for both eyes or
  none; none = no eye gaze; eye roll is read and ignored, written as 0).

Assumptions (not documented by the app's vendor; checked against public importers):
- Angles are radians by default. Epic's ARKit face support in Unreal maps degrees/180
  into [-1, 1]; such files load with `angle_unit="normalized"`; "degrees" is accepted too.
- Angle signs are those of `avatar_runtime.motion.pose`: HeadYaw positive turns the face
  toward the subject's left, HeadPitch positive looks down, HeadRoll positive tilts toward
  the subject's right shoulder; eye yaw/pitch likewise. This is what Unreal's conversion of
  the ARKit face anchor gives for a non-mirrored capture; a mirrored capture has yaw and
  roll negated.
- The CSV carries no head translation: loaded frames have translation 0, and writing drops it.
"""

from __future__ import annotations

import csv
import io
import math
import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from avatar_runtime.errors import InvalidArgument, InvalidMotion
from avatar_runtime.motion.arkit import ARKIT_INDEX, ARKIT_NAMES
from avatar_runtime.motion.frame import MotionFrame, check_fps
from avatar_runtime.motion.pose import euler_to_quat, quat_to_euler

TIMECODE_COLUMN = "Timecode"
COUNT_COLUMN = "BlendShapeCount"
HEAD_COLUMNS = ("HeadYaw", "HeadPitch", "HeadRoll")
EYE_COLUMNS = (
    "LeftEyeYaw",
    "LeftEyePitch",
    "LeftEyeRoll",
    "RightEyeYaw",
    "RightEyePitch",
    "RightEyeRoll",
)
# The eye columns that make up MotionFrame.eye_gaze, in its order.
GAZE_COLUMNS = ("LeftEyeYaw", "LeftEyePitch", "RightEyeYaw", "RightEyePitch")

# The app's shape column order: ARKIT_NAMES with the jaw and mouth Left/Right pairs swapped.
_APP_SWAPS = {
    "jawLeft": "jawRight",
    "jawRight": "jawLeft",
    "mouthLeft": "mouthRight",
    "mouthRight": "mouthLeft",
}
_APP_ORDER = np.array(
    [ARKIT_INDEX[_APP_SWAPS.get(n, n)] for n in ARKIT_NAMES]
)  # arkit[_APP_ORDER] = columns


def _column_name(arkit_name: str) -> str:
    """'jawOpen' -> 'JawOpen', the CSV spelling."""
    return arkit_name[0].upper() + arkit_name[1:]


SHAPE_COLUMNS = tuple(_column_name(ARKIT_NAMES[i]) for i in _APP_ORDER)
CSV_COLUMNS = (TIMECODE_COLUMN, COUNT_COLUMN, *SHAPE_COLUMNS, *HEAD_COLUMNS, *EYE_COLUMNS)

# Multiply a file's angle by this to get radians.
ANGLE_UNITS = {"radians": 1.0, "degrees": math.pi / 180.0, "normalized": math.pi}
_SECONDS_PER_DAY = 86400.0
_TIMECODE = re.compile(r"^(\d+):(\d{1,2}):(\d{1,2})[:;](\d+(?:\.\d*)?)$")


@dataclass(frozen=True)
class _Layout:
    """Where each quantity lives in a row: 0-based column indices, from the header."""

    header: tuple[str, ...]
    curve_count: int  # named columns other than Timecode and BlendShapeCount
    timecode: int
    count: int | None
    shapes: tuple[int, ...]  # [52], in ARKIT_NAMES order
    head: tuple[int, ...] | None  # yaw, pitch, roll
    gaze: tuple[int, ...] | None  # GAZE_COLUMNS

    def cell(self, col: int, line: int) -> str:
        """Message prefix locating one cell: line, 1-based column and its header name."""
        return f"line {line}, column {col + 1} ({self.header[col]})"


def load_livelink_csv(
    source: str | Path, fps: float = 60.0, angle_unit: str = "radians"
) -> list[MotionFrame]:
    """Frames from a Live Link Face CSV: a path, or the CSV text itself (any str with a newline).

    `fps` is the recording's frame rate, which the Timecode frame field counts in.
    Frames get sequence 0..N-1 and timecode in seconds since the first frame.
    Raises InvalidMotion naming the line and column of the first problem.
    """
    check_fps(fps)
    to_radians = _angle_scale(angle_unit)
    rows = _read_rows(source)
    if not rows:
        raise InvalidMotion(
            "Live Link Face CSV is empty: expected a header line starting with Timecode"
        )
    header_line, header = rows[0]
    layout = _parse_header(header, header_line)
    if len(rows) == 1:
        raise InvalidMotion("Live Link Face CSV has a header but no frames")
    frames = [_parse_row(layout, line, row, fps, to_radians) for line, row in rows[1:]]
    return _rebase_timecodes(frames)


def format_livelink_csv(
    frames: Iterable[MotionFrame], fps: float = 60.0, angle_unit: str = "radians"
) -> str:
    """CSV text in the app's layout (`CSV_COLUMNS`), one line per frame, in the given order.

    The eye columns are written only when some frame has eye gaze (frames without get 0).
    Frame timecodes (seconds, >= 0) are written as time of day at `fps`, to 1/1000 frame.
    """
    check_fps(fps)
    from_radians = 1.0 / _angle_scale(angle_unit)
    frames = list(frames)
    with_eyes = any(f.eye_gaze is not None for f in frames)
    columns = CSV_COLUMNS if with_eyes else CSV_COLUMNS[: -len(EYE_COLUMNS)]
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\n")
    writer.writerow(columns)
    for frame in frames:
        writer.writerow(_format_row(frame, fps, from_radians, with_eyes, len(columns) - 2))
    return out.getvalue()


def write_livelink_csv(
    frames: Iterable[MotionFrame], path: str | Path, fps: float = 60.0, angle_unit: str = "radians"
) -> None:
    """Write `format_livelink_csv(frames, fps, angle_unit)` to `path` (UTF-8)."""
    Path(path).write_text(format_livelink_csv(frames, fps, angle_unit), encoding="utf-8")


# --- reading ---------------------------------------------------------------------------


def _angle_scale(angle_unit: str) -> float:
    if angle_unit not in ANGLE_UNITS:
        raise InvalidArgument(
            f"angle_unit must be one of {', '.join(ANGLE_UNITS)}; got {angle_unit!r}"
        )
    return ANGLE_UNITS[angle_unit]


def _read_text(source: str | Path) -> str:
    if isinstance(source, str) and "\n" in source:
        return source
    try:
        return Path(source).read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as e:
        raise InvalidArgument(f"cannot read Live Link Face CSV {str(source)!r}: {e}") from None


def _read_rows(source: str | Path) -> list[tuple[int, list[str]]]:
    """Non-blank rows as (1-based line number, stripped cells)."""
    # Files saved by spreadsheet tools on Windows start with a byte-order mark.
    reader = csv.reader(io.StringIO(_read_text(source).lstrip("\ufeff")))
    rows = []
    for row in reader:
        cells = [c.strip() for c in row]
        if any(cells):
            rows.append((reader.line_num, cells))
    return rows


def _find_columns(index: dict[str, int], names: Sequence[str]) -> list[int | None]:
    return [index.get(n.casefold()) for n in names]


def _all_or_none(index: dict[str, int], names: Sequence[str], line: int) -> tuple[int, ...] | None:
    """Column indices of an optional group: all of `names` present, or None if none is."""
    found = _find_columns(index, names)
    if all(c is None for c in found):
        return None
    missing = [n for n, c in zip(names, found, strict=True) if c is None]
    if missing:
        raise InvalidMotion(
            f"line {line}: header has some of {', '.join(names)} but not "
            f"{', '.join(missing)}; give all of them or none"
        )
    return tuple(found)


def _parse_header(header: list[str], line: int) -> _Layout:
    index: dict[str, int] = {}
    for col, name in enumerate(header):
        key = name.casefold()
        if not key:  # a trailing comma: an unnamed, ignored column
            continue
        if key in index:
            raise InvalidMotion(
                f"line {line}: column {name!r} appears twice "
                f"(columns {index[key] + 1} and {col + 1})"
            )
        index[key] = col
    required = (TIMECODE_COLUMN, *map(_column_name, ARKIT_NAMES))
    found = _find_columns(index, required)
    missing = [n for n, c in zip(required, found, strict=True) if c is None]
    if missing:
        raise InvalidMotion(
            f"line {line}: missing required column(s) {', '.join(missing)}; a Live Link "
            f"Face CSV has {TIMECODE_COLUMN}, {COUNT_COLUMN} and the 52 ARKit curves"
        )
    return _Layout(
        header=tuple(header),
        curve_count=len(index) - 1 - (COUNT_COLUMN.casefold() in index),
        timecode=index[TIMECODE_COLUMN.casefold()],
        count=index.get(COUNT_COLUMN.casefold()),
        shapes=tuple(index[n.casefold()] for n in ARKIT_NAMES),
        head=_all_or_none(index, HEAD_COLUMNS, line),
        gaze=_all_or_none(index, GAZE_COLUMNS, line),
    )


def _parse_number(layout: _Layout, row: list[str], col: int, line: int) -> float:
    try:
        value = float(row[col])
    except ValueError:
        value = math.nan
    if not math.isfinite(value):  # float() accepts 'nan' and 'inf'; neither is a measurement
        raise InvalidMotion(f"{layout.cell(col, line)}: {row[col]!r} is not a finite number")
    return value


def _check_count(layout: _Layout, row: list[str], line: int) -> None:
    if layout.count is None:
        return
    text = row[layout.count]
    if not text.isdigit():
        raise InvalidMotion(f"{layout.cell(layout.count, line)}: {text!r} is not an integer")
    if int(text) != layout.curve_count:
        raise InvalidMotion(
            f"{layout.cell(layout.count, line)}: {text} does not match the "
            f"{layout.curve_count} curve columns in the header"
        )


def _parse_timecode(text: str, fps: float, where: str) -> float:
    """'HH:MM:SS:FF.fraction' at `fps` -> seconds since midnight."""
    match = _TIMECODE.match(text)
    if match is None:
        raise InvalidMotion(f"{where}: {text!r} is not a timecode HH:MM:SS:FF[.subframe]")
    hours, minutes, seconds = (int(g) for g in match.groups()[:3])
    frames = float(match.group(4))
    if minutes >= 60 or seconds >= 60:
        raise InvalidMotion(f"{where}: {text!r} has minutes or seconds beyond 59")
    if int(frames) >= math.ceil(fps):
        raise InvalidMotion(
            f"{where}: frame field {int(frames)} in {text!r} is not below the frame "
            f"rate {fps:g} fps; pass the recording's fps"
        )
    return hours * 3600.0 + minutes * 60.0 + seconds + frames / fps


def _parse_row(
    layout: _Layout, line: int, row: list[str], fps: float, to_radians: float
) -> MotionFrame:
    if len(row) != len(layout.header):
        raise InvalidMotion(
            f"line {line} has {len(row)} fields, the header has {len(layout.header)}"
        )
    _check_count(layout, row, line)
    timecode = _parse_timecode(row[layout.timecode], fps, layout.cell(layout.timecode, line))

    def numbers(cols: Sequence[int]) -> np.ndarray:
        return np.array([_parse_number(layout, row, c, line) for c in cols])

    shapes = numbers(layout.shapes)
    head = numbers(layout.head) * to_radians if layout.head else np.zeros(3)
    gaze = numbers(layout.gaze) * to_radians if layout.gaze else None
    try:
        return MotionFrame(shapes, euler_to_quat(head), eye_gaze=gaze, timecode=timecode)
    except InvalidMotion as e:
        raise InvalidMotion(f"line {line}: {e.message}") from None


def _rebase_timecodes(frames: list[MotionFrame]) -> list[MotionFrame]:
    """Number frames 0..N-1 and make timecodes seconds since the first frame (mod one day)."""
    start = frames[0].timecode
    for i, frame in enumerate(frames):
        frame.sequence = i
        frame.timecode = (frame.timecode - start) % _SECONDS_PER_DAY
    return frames


# --- writing ---------------------------------------------------------------------------


def _format_timecode(seconds: float, fps: float) -> str:
    """Seconds -> 'HH:MM:SS:FF.fff' (FF.fff = frames at `fps`, to 1/1000 frame)."""
    whole = math.floor(seconds)
    milliframes = round((seconds - whole) * fps * 1000)
    if milliframes >= round(fps * 1000):  # rounded up into the next second
        whole, milliframes = whole + 1, 0
    hours, rest = divmod(whole, 3600)
    minutes, secs = divmod(rest, 60)
    frames, fraction = divmod(milliframes, 1000)
    return f"{hours % 24:02d}:{minutes:02d}:{secs:02d}:{frames:02d}.{fraction:03d}"


def _format_row(
    frame: MotionFrame, fps: float, from_radians: float, with_eyes: bool, count: int
) -> list[str]:
    if frame.timecode < 0:
        raise InvalidMotion(
            f"frame {frame.sequence}: timecode {frame.timecode:g} s is negative; "
            "Live Link Face timecodes are a time of day"
        )
    shapes = list(frame.arkit[_APP_ORDER])
    angles = list(quat_to_euler(frame.head_rotation) * from_radians)
    if with_eyes:
        gaze = (
            np.zeros(4)
            if frame.eye_gaze is None
            else frame.eye_gaze.astype(np.float64) * from_radians
        )
        angles += [gaze[0], gaze[1], 0.0, gaze[2], gaze[3], 0.0]  # eye roll is not tracked
    # 9 significant digits round-trip float32 exactly.
    return [
        _format_timecode(frame.timecode, fps),
        str(count),
        *(f"{v:.9g}" for v in (*shapes, *angles)),
    ]
