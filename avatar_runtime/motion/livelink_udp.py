"""Live Link Face UDP packets (what the iPhone app streams to Unreal, port 11111): encode/decode.

Wire layout of one datagram, every multi-byte field big-endian (network order):

    uint8    packet version (6)
    int32    device id length N, then N bytes UTF-8 (the sender's device id)
    int32    subject name length M, then M bytes UTF-8 (the Live Link subject)
    int32    frame number  \
    float32  sub-frame      | the frame time: (frame + sub-frame) at numerator/denominator fps
    int32    rate numerator |
    int32    rate denominator
    uint8    value count (61)
    61 x float32: the 52 ARKit weights in `ARKIT_NAMES` order (Unreal's EARFaceBlendShape
             order; unlike the app's CSV, no Left/Right swaps), then HeadYaw, HeadPitch,
             HeadRoll, LeftEyeYaw, LeftEyePitch, LeftEyeRoll, RightEyeYaw, RightEyePitch,
             RightEyeRoll.

The strings are Unreal's network-byte-order FString: an int32 byte count, then UTF-8 without a
terminator. The app's device id is always a 36-character UUID (8-4-4-4-12 hex digits), and some
peers read it as a fixed 36 bytes (`pylivelinkface` reads bytes 4..41 as "$" + UUID, the "$"
being the low byte of the length 36), so packets we encode carry one too (`new_device_id`).
Unreal receives into a buffer sized for 256 TCHARs per name, so an encoded subject is at most
`MAX_SUBJECT_BYTES`; decoding accepts up to `MAX_NAME_BYTES` per string.

Angles follow `avatar_runtime.motion.livelink_csv` (same source values as the app's CSV):
radians by default, signs as in `avatar_runtime.motion.pose`; `angle_unit` accepts
"normalized" (degrees / 180, Unreal's ARKit face convention) and "degrees" too. The packet
carries no head translation (decoded frames have none; encoding drops it) and no sequence
number (the receiver numbers frames).
"""

from __future__ import annotations

import math
import re
import struct
import uuid
from dataclasses import dataclass

import numpy as np

from avatar_runtime.errors import InvalidArgument
from avatar_runtime.motion.arkit import NUM_ARKIT
from avatar_runtime.motion.frame import MotionFrame
from avatar_runtime.motion.livelink_csv import ANGLE_UNITS
from avatar_runtime.motion.pose import euler_to_quat, quat_to_euler

PACKET_VERSION = 6
NUM_VALUES = 61  # 52 ARKit weights + 3 head + 3 left eye + 3 right eye angles
DEFAULT_PORT = 11111
MAX_NAME_BYTES = 1024  # per string, decoding
MAX_SUBJECT_BYTES = 255  # encoding: fits Unreal's receive buffer on every platform
DEVICE_ID_LENGTH = 36
_UUID = re.compile(r"[0-9A-Fa-f]{8}-[0-9A-Fa-f]{4}-[0-9A-Fa-f]{4}-[0-9A-Fa-f]{4}-[0-9A-Fa-f]{12}")
_TIME = struct.Struct(">ifii")
_VALUES = struct.Struct(f">B{NUM_VALUES}f")


@dataclass(frozen=True)
class LiveLinkPacket:
    """One decoded datagram; `values` is the [61] float32 vector in wire order."""

    device_id: str
    subject: str
    frame_number: int
    subframe: float
    rate: tuple[int, int]  # (numerator, denominator) frames per second
    values: np.ndarray

    @property
    def seconds(self) -> float:
        """The frame time in seconds."""
        numerator, denominator = self.rate
        return (self.frame_number + self.subframe) * denominator / numerator if numerator else 0.0


def new_device_id() -> str:
    """A fresh device id in the app's form: a random UUID, 36 characters, upper-case hex."""
    return str(uuid.uuid4()).upper()


def check_device_id(device_id: str) -> str:
    """`device_id` if it is a 36-character UUID (as the app sends); InvalidArgument otherwise."""
    if not isinstance(device_id, str) or not _UUID.fullmatch(device_id):
        raise InvalidArgument(f"a Live Link Face device id is a {DEVICE_ID_LENGTH}-character UUID "
                              f"like 3F2504E0-4F89-41D3-9A0C-0305E82C3301 (what the app sends); "
                              f"got {device_id!r}")
    return device_id


def check_subject(subject: str) -> str:
    """`subject` if it is a non-empty name of at most MAX_SUBJECT_BYTES UTF-8 bytes."""
    size = len(subject.encode("utf-8")) if isinstance(subject, str) else 0
    if not 0 < size <= MAX_SUBJECT_BYTES:
        raise InvalidArgument(f"a Live Link subject name is 1..{MAX_SUBJECT_BYTES} UTF-8 bytes; "
                              f"got {size} ({subject!r:.80})")
    return subject


def fit_subject(name: str) -> str:
    """`name` cut at a character boundary to at most MAX_SUBJECT_BYTES UTF-8 bytes."""
    raw = name.encode("utf-8")[:MAX_SUBJECT_BYTES]
    return raw.decode("utf-8", errors="ignore")


def encode_packet(values, subject: str, device_id: str, frame_number: int = 0, subframe: float = 0.0,
                  rate: tuple[int, int] = (60, 1)) -> bytes:
    """61 values (wire order) + header fields -> one datagram.

    `device_id` must be a 36-character UUID and `subject` 1..MAX_SUBJECT_BYTES bytes (see the
    module docstring: peers of the app rely on both).
    """
    vector = np.asarray(values, np.float32).ravel()
    if vector.size != NUM_VALUES:
        raise InvalidArgument(f"a Live Link Face packet carries {NUM_VALUES} values, got {vector.size}")
    return b"".join((
        struct.pack(">B", PACKET_VERSION),
        _string(check_device_id(device_id)),
        _string(check_subject(subject)),
        _TIME.pack(int(frame_number), float(subframe), int(rate[0]), int(rate[1])),
        _VALUES.pack(NUM_VALUES, *vector.tolist()),
    ))


def decode_packet(data: bytes) -> LiveLinkPacket:
    """One datagram -> LiveLinkPacket; InvalidArgument says what is wrong with it."""
    view = memoryview(data)
    if len(view) < 1 or view[0] != PACKET_VERSION:
        found = view[0] if len(view) else "nothing"
        raise InvalidArgument(f"not a Live Link Face packet: version {found}, expected {PACKET_VERSION}")
    offset = 1
    device_id, offset = _read_string(view, offset, "device id")
    subject, offset = _read_string(view, offset, "subject")
    if len(view) - offset != _TIME.size + _VALUES.size:
        raise InvalidArgument(f"Live Link Face packet for {subject!r} has {len(view) - offset} bytes "
                              f"after the names; expected {_TIME.size + _VALUES.size} "
                              f"(frame time + {NUM_VALUES} floats)")
    frame_number, subframe, numerator, denominator = _TIME.unpack_from(view, offset)
    count, *values = _VALUES.unpack_from(view, offset + _TIME.size)
    if count != NUM_VALUES:
        raise InvalidArgument(f"Live Link Face packet declares {count} values, expected {NUM_VALUES}")
    return LiveLinkPacket(device_id, subject, frame_number, subframe, (numerator, denominator),
                          np.asarray(values, np.float32))


def frame_to_values(frame: MotionFrame, angle_unit: str = "radians") -> np.ndarray:
    """MotionFrame -> the 61 wire values (eye roll 0; no eye gaze -> eye angles 0)."""
    scale = 1.0 / _angle_scale(angle_unit)
    head = quat_to_euler(frame.head_rotation) * scale
    gaze = np.zeros(4) if frame.eye_gaze is None else frame.eye_gaze.astype(np.float64) * scale
    eyes = [gaze[0], gaze[1], 0.0, gaze[2], gaze[3], 0.0]
    return np.concatenate([frame.arkit, head, eyes]).astype(np.float32)


def packet_to_frame(packet: LiveLinkPacket, sequence: int = 0, angle_unit: str = "radians") -> MotionFrame:
    """LiveLinkPacket -> MotionFrame (timecode = the packet's frame time in seconds).

    Weights are clipped into [0, 1] (a live tracker's overshoot must not end a stream);
    non-finite values become 0.
    """
    values = np.nan_to_num(packet.values.astype(np.float64), nan=0.0, posinf=0.0, neginf=0.0)
    scale = _angle_scale(angle_unit)
    head = values[NUM_ARKIT:NUM_ARKIT + 3] * scale
    left, right = values[NUM_ARKIT + 3:NUM_ARKIT + 6] * scale, values[NUM_ARKIT + 6:] * scale
    gaze = np.array([left[0], left[1], right[0], right[1]])
    seconds = packet.seconds if math.isfinite(packet.seconds) and packet.seconds >= 0 else 0.0
    return MotionFrame(np.clip(values[:NUM_ARKIT], 0.0, 1.0), euler_to_quat(head), eye_gaze=gaze,
                       sequence=sequence, timecode=seconds)


def encode_frame(frame: MotionFrame, subject: str, device_id: str, fps: int = 60,
                 angle_unit: str = "radians") -> bytes:
    """MotionFrame -> datagram; its timecode (seconds) becomes frame number + sub-frame at `fps`."""
    frames = max(frame.timecode, 0.0) * fps
    whole = math.floor(frames)
    return encode_packet(frame_to_values(frame, angle_unit), subject, device_id,
                         whole % 2**31, frames - whole, (fps, 1))


def _angle_scale(angle_unit: str) -> float:
    if angle_unit not in ANGLE_UNITS:
        raise InvalidArgument(f"angle_unit must be one of {', '.join(ANGLE_UNITS)}; got {angle_unit!r}")
    return ANGLE_UNITS[angle_unit]


def _string(text: str) -> bytes:
    raw = text.encode("utf-8")
    return struct.pack(">i", len(raw)) + raw


def _read_string(view: memoryview, offset: int, what: str) -> tuple[str, int]:
    if len(view) < offset + 4:
        raise InvalidArgument(f"Live Link Face packet ends before its {what}")
    (length,) = struct.unpack_from(">i", view, offset)
    offset += 4
    if not 0 <= length <= MAX_NAME_BYTES or len(view) < offset + length:
        raise InvalidArgument(f"Live Link Face packet has a bad {what} length {length}")
    try:
        return bytes(view[offset:offset + length]).decode("utf-8"), offset + length
    except UnicodeDecodeError:
        raise InvalidArgument(f"Live Link Face packet {what} is not UTF-8") from None
