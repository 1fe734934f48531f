"""Seeded, time-bounded fuzz of both transports against real servers on loopback.

Per transport, thousands of malformed requests, each derived from a real valid request of
one of the service's calls (all of them, as the .proto declares them):

- random bytes (and, on ZeroMQ, random msgpack values);
- truncated, bit-flipped, spliced and repeated serialized messages of every request type;
- valid envelopes with wrong-typed, out-of-range, NaN/inf, huge, negative and empty values
  in every field of every request message: singular, scaled, mirrored and sheared cameras,
  0 and huge sizes, FOV out of range, motion vectors of wrong lengths, bad enums, unknown
  avatar ids, tiny and huge chunk sizes, bad formats and sources, broken images;
- protobuf wire oddities on gRPC (wrong wire types, bad tags, invalid UTF-8, nesting,
  oversized messages, unknown methods), envelope abuse on ZeroMQ (kinds, ids, tokens, keys,
  bodies, multipart frames, trailing bytes, oversized messages);
- Drive streams with garbage after a valid header, second headers, frames before the
  header, ends without one, empty streams, smoothing fed extreme timecodes.

No reply may carry INTERNAL (or any status outside the documented ones), no call may hang,
nothing may be logged at ERROR, and afterwards the server answers Health, ListAvatars, a
real RenderFrame and a real Drive of the astronaut avatar correctly.

    BRIDGE_FUZZ_SEED=7 BRIDGE_FUZZ_CASES=20000 .venv/bin/python -m pytest -q tests/test_bridge_fuzz.py

The seed is printed with the counts and requests/s; a failure names seed, case index, what
was mutated and the bytes sent. Work stays small: renders of at most 64x64 (and at most
RENDER_BUDGET of them), a handful of real mesh exports, no avatar made from a real photo.
"""

from __future__ import annotations

import io
import logging
import math
import os
import random
import struct
import time
import zlib
from collections import Counter
from dataclasses import dataclass, field
from typing import Any

import cv2
import grpc
import msgpack
import numpy as np
import PIL.Image
import pytest
import zmq
from google.protobuf.descriptor import FieldDescriptor

from avatar_runtime.faces.image import decode_image, encode_png
from avatar_runtime.mesh.export import FORMATS
from avatar_runtime.render.camera import Camera
from bridge_support import TRANSPORTS, running_servers
from engine_bridge import codec, validation
from engine_bridge.config import BridgeLimits
from engine_bridge.convert import (SourceMotion, camera_to_proto, motion_from_proto,
                                   motion_or_source_from_proto)
from engine_bridge.generated import pb
from engine_bridge.handlers import DEFAULT_CHUNK_BYTES, MIN_CHUNK_BYTES

MiB = 1024 * 1024
SEED = int(os.environ.get("BRIDGE_FUZZ_SEED", "16016"))
CASES = int(os.environ.get("BRIDGE_FUZZ_CASES", "5000"))          # per transport
TIME_LIMIT_S = float(os.environ.get("BRIDGE_FUZZ_TIME_LIMIT_S", "150"))  # per transport
CALL_TIMEOUT_S = 20.0       # a call still unanswered after this long is a hang
MAX_RENDER_PIXELS = 64 * 64
RENDER_BUDGET = 300         # real renders per transport (each costs ~25 ms)
EXPORT_BUDGET = 3           # real mesh exports per transport (each costs ~0.3-0.8 s)
# Requests over max_message_bytes, per transport, at fixed places in the run: every call,
# and Drive streams more often (a stream the server's core refuses may race its own status).
OVERSIZED = ("Drive", "GetAvatar", "Drive", "RenderFrame", "Drive", "CreateAvatar", "Drive", "SolveMotion",
             "Drive", "ExportMesh", "Drive", "DeleteAvatar", "Drive", "ListAvatars", "Drive", "Drive")
MIN_EXPORT_CHUNK = 256 * 1024  # real exports stream at most ~30 chunks
MAX_IMAGE_PIXELS = 256 * 256   # images that decode larger are not sent (detection cost)
LIMITS = BridgeLimits(max_message_bytes=4 * MiB, header_timeout_s=2.0, idle_timeout_s=5.0,
                      stall_timeout_s=10.0)
# Every status a malformed request may get; INTERNAL and UNKNOWN are bugs, UNAVAILABLE /
# CANCELLED mean the server fell over, DEADLINE_EXCEEDED that something got stuck.
EXPECTED_CODES = {"INVALID_ARGUMENT", "NOT_FOUND", "FAILED_PRECONDITION", "RESOURCE_EXHAUSTED",
                  "UNIMPLEMENTED"}
# Every call of the service, as the .proto declares it (a call added later is fuzzed too,
# against unknown avatar ids only until `valid_request` and `affordable` know it).
_RUNTIME = pb.DESCRIPTOR.services_by_name["AvatarRuntime"]
SERVICE = f"/{_RUNTIME.full_name}/"
REQUESTS = {m.name: getattr(pb, m.input_type.name) for m in _RUNTIME.methods}
RESPONSES = {m.name: getattr(pb, m.output_type.name) for m in _RUNTIME.methods}
STREAMING_IN = {m.name for m in _RUNTIME.methods if m.client_streaming}
STREAMING_OUT = {m.name for m in _RUNTIME.methods if m.server_streaming}
METHODS = tuple(REQUESTS)
FD = FieldDescriptor
NAN, INF = float("nan"), float("inf")
F32_MAX = 3.4028234663852886e38


# -- protobuf wire encoding of arbitrary values ---------------------------------------------
# The gRPC side sends the same field-level mutations as the ZeroMQ side: a value of the
# field's type is encoded as protobuf would; any other value is encoded with the wire type
# it naturally takes (so a string in a float field is a length-delimited field where a
# fixed32 belongs, a negative number in a uint32 is a 10-byte varint, 2**70 an overlong one).
W_VARINT, W_I64, W_LEN, W_I32 = 0, 1, 2, 5
# Varint integers only: the schema has no zigzag or fixed-width ones (were one added, the
# encoder test below would say so).
_INTEGER_TYPES = {FD.TYPE_INT32, FD.TYPE_INT64, FD.TYPE_UINT32, FD.TYPE_UINT64}
_PACKABLE = _INTEGER_TYPES | {FD.TYPE_FLOAT, FD.TYPE_DOUBLE, FD.TYPE_BOOL, FD.TYPE_ENUM}


def varint(n: int) -> bytes:
    out = bytearray()
    while True:
        byte, n = n & 0x7F, n >> 7
        if not n:
            out.append(byte)
            return bytes(out)
        out.append(byte | 0x80)


def tag(number: int, wire: int) -> bytes:
    return varint((number << 3) | wire)


def _int_payload(value: int) -> bytes:
    if -2**63 <= value < 2**64:
        return varint(value & (2**64 - 1))
    return b"\xff" * 10 + b"\x01"  # no varint holds this value: an overlong one


def _is_int(v) -> bool:
    return isinstance(v, int) and not isinstance(v, bool)


def _is_number(v) -> bool:
    return isinstance(v, (int, float)) and not isinstance(v, bool)


def _f32(value: float) -> bytes:
    with np.errstate(over="ignore"):
        return np.float32(value).tobytes()


def _length(payload: bytes) -> bytes:
    return varint(len(payload)) + payload


def _native(fd: FieldDescriptor, v) -> tuple[int, bytes] | None:
    """(wire type, payload) when `v` has the field's own type, else None."""
    t = fd.type
    if t == FD.TYPE_DOUBLE and _is_number(v):
        return W_I64, struct.pack("<d", float(v))
    if t == FD.TYPE_FLOAT and _is_number(v):
        return W_I32, _f32(float(v))
    if t in _INTEGER_TYPES and _is_int(v):
        return W_VARINT, _int_payload(v)
    if t == FD.TYPE_BOOL and isinstance(v, bool):
        return W_VARINT, b"\x01" if v else b"\x00"
    if t == FD.TYPE_ENUM:
        if _is_int(v):
            return W_VARINT, _int_payload(v)
        if isinstance(v, str) and v in fd.enum_type.values_by_name:
            return W_VARINT, varint(fd.enum_type.values_by_name[v].number)
    if t == FD.TYPE_STRING and isinstance(v, str):
        return W_LEN, _length(v.encode("utf-8", "surrogatepass"))
    if t == FD.TYPE_BYTES and isinstance(v, (bytes, bytearray)):
        return W_LEN, _length(bytes(v))
    if t == FD.TYPE_MESSAGE and isinstance(v, dict):
        return W_LEN, _length(encode_message(fd.message_type, v))
    return None


def _foreign(v) -> list[tuple[int, bytes]]:
    """A value that is not of the field's type, with the wire type it naturally takes."""
    if v is None:
        return []
    if isinstance(v, bool):
        return [(W_VARINT, b"\x01" if v else b"\x00")]
    if isinstance(v, int):
        return [(W_VARINT, _int_payload(v))]
    if isinstance(v, float):
        return [(W_I64, struct.pack("<d", v))]
    if isinstance(v, str):
        return [(W_LEN, _length(v.encode("utf-8", "surrogatepass")))]
    if isinstance(v, (bytes, bytearray)):
        return [(W_LEN, _length(bytes(v)))]
    if isinstance(v, dict):
        return [(W_LEN, _length(encode_message(None, v)))]
    if isinstance(v, list):
        return [pair for item in v for pair in _foreign(item)]
    return [(W_LEN, _length(repr(v).encode()))]  # msgpack ext types and the like


def encode_field(fd: FieldDescriptor, v) -> bytes:
    if v is None:
        return b""
    if isinstance(v, list):
        natives = [_native(fd, item) for item in v]
        if (fd.label == FD.LABEL_REPEATED and fd.type in _PACKABLE and v
                and all(n is not None for n in natives)):
            return tag(fd.number, W_LEN) + _length(b"".join(p for _, p in natives))
        # A list where one value belongs (or elements of other types): one field per element.
        return b"".join(tag(fd.number, w) + p for item, n in zip(v, natives)
                        for w, p in ([n] if n is not None else _foreign(item)))
    native = _native(fd, v)
    return b"".join(tag(fd.number, w) + p for w, p in ([native] if native else _foreign(v)))


def encode_message(descriptor, data) -> bytes:
    """A msgpack-style dict (codec.to_dict's form, or any mutation of it) as protobuf bytes;
    keys that are no field become unknown fields."""
    if not isinstance(data, dict):
        return b"".join(tag(1, w) + p for w, p in _foreign(data))
    out = []
    for key, value in data.items():
        fd = descriptor.fields_by_name.get(key) if descriptor is not None and isinstance(key, str) else None
        if fd is None:
            number = 1000 + zlib.crc32(repr(key).encode()) % 100_000
            out.append(b"".join(tag(number, w) + p for w, p in _foreign(value)))
        else:
            out.append(encode_field(fd, value))
    return b"".join(out)


# -- the material mutations start from -------------------------------------------------------
def png_header(width: int, height: int) -> bytes:
    """A PNG signature + IHDR (correct CRC) declaring width x height, and no pixel data."""
    ihdr = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    chunk = struct.pack(">I", 13) + b"IHDR" + ihdr + struct.pack(">I", zlib.crc32(b"IHDR" + ihdr))
    end = struct.pack(">I", 0) + b"IEND" + struct.pack(">I", zlib.crc32(b"IEND"))
    return b"\x89PNG\r\n\x1a\n" + chunk + end


@dataclass
class Corpus:
    """What mutations start from: the astronaut's id, ids that must never be deleted, images."""

    astronaut: str
    known: frozenset
    images: list = field(default_factory=list)       # decodable, tiny, faceless
    bad_images: list = field(default_factory=list)   # truncated, lying headers, not images

    @classmethod
    def build(cls, astronaut: str, known) -> "Corpus":
        grey = np.full((8, 8, 3), 128, np.uint8)
        ramp = np.dstack([np.tile(np.linspace(0, 255, 32, dtype=np.uint8), (24, 1))] * 3)
        jpeg = cv2.imencode(".jpg", np.full((16, 16, 3), 90, np.uint8))[1].tobytes()
        bmp = cv2.imencode(".bmp", np.zeros((4, 4, 3), np.uint8))[1].tobytes()
        webp = cv2.imencode(".webp", np.full((8, 8, 3), 200, np.uint8))[1].tobytes()
        images = [encode_png(grey), encode_png(ramp), encode_png(np.zeros((1, 1, 3), np.uint8)),
                  jpeg, bmp, webp, encode_png(np.full((2, 2048, 3), 60, np.uint8))]
        png = images[0]
        bad = [b"", b"\x00", b"\x89PNG\r\n\x1a\n", png[:len(png) // 2], png[:-12], png + png,
               png_header(100_000, 1), png_header(1, 100_000), png_header(8192, 8192),
               png_header(0, 0), png_header(2**31 - 1, 2**31 - 1), b"\xff\xd8\xff\xd9",
               jpeg[: len(jpeg) // 2], b"GIF89a\x01\x00\x01\x00\x00\x00\x00;", b"BM" + b"\xff" * 60,
               b"not an image", bytes(range(256)) * 4, b"\x00" * 4096]
        return cls(astronaut, frozenset(known), images, bad)


def unknown_id(rng: random.Random, corpus: Corpus) -> str:
    while True:
        candidate = "%016x" % rng.getrandbits(64)
        if candidate not in corpus.known:
            return candidate


SIZES = (1, 2, 8, 16, 32, 48, 64)


def valid_camera(rng: random.Random) -> pb.Camera:
    camera = camera_to_proto(Camera.orbit(
        yaw_deg=rng.uniform(-60, 60), pitch_deg=rng.uniform(-25, 25),
        fov_y_deg=rng.choice([5.0, 12.0, 30.0, 90.0]), width=rng.choice(SIZES), height=rng.choice(SIZES)))
    if rng.random() < 0.25:
        del camera.c2w[:]  # the default frontal camera
    if rng.random() < 0.2:
        camera.fov_y_deg = 0.0  # the default FOV
    return camera


def valid_motion(rng: random.Random) -> pb.MotionFrame:
    motion = pb.MotionFrame(sequence=rng.randrange(2**32), timecode=round(rng.uniform(0, 1000), 3))
    if rng.random() < 0.8:
        motion.arkit.extend(rng.random() for _ in range(52))
    if rng.random() < 0.5:
        axis = np.asarray([rng.uniform(-1, 1) for _ in range(3)])
        angle = rng.uniform(-0.4, 0.4)
        axis = axis / (np.linalg.norm(axis) or 1.0)
        motion.head_rotation.extend([*(axis * math.sin(angle / 2)), math.cos(angle / 2)])
    if rng.random() < 0.5:
        motion.head_translation.extend(rng.uniform(-0.03, 0.03) for _ in range(3))
    if rng.random() < 0.3:
        motion.eye_gaze.extend(rng.uniform(-0.3, 0.3) for _ in range(4))
    return motion


def valid_landmarks(rng: random.Random) -> pb.Landmarks:
    """478 points spread like a face in the middle of a 512x512 image (not a real face)."""
    centre, size = rng.uniform(200, 312), rng.uniform(80, 250)
    xyz = []
    for _ in range(478):
        xyz += [centre + rng.uniform(-size, size) / 2, centre + rng.uniform(-size, size) / 2,
                rng.uniform(-20, 20)]
    return pb.Landmarks(xyz=xyz, width=512, height=512)


def valid_source_motion(rng: random.Random, corpus: Corpus) -> pb.MotionFrame:
    """A MotionFrame whose motion comes from an image (faceless), landmarks or a motion code."""
    motion = pb.MotionFrame(sequence=rng.randrange(2**20), timecode=rng.uniform(0, 100))
    pick = rng.random()
    if pick < 0.4:
        motion.image = rng.choice(corpus.images)
    elif pick < 0.7:
        motion.landmarks.CopyFrom(valid_landmarks(rng))
    else:
        arkit = [rng.random() for _ in range(52)]
        translation = [rng.uniform(-0.2, 0.2) for _ in range(3)]
        motion.embedding.values.extend(arkit + [0.0, 0.0, 0.0, 1.0] + translation + [0.0] * 4)
    return motion


def valid_options(rng: random.Random) -> pb.RenderOptions:
    return pb.RenderOptions(encoding=rng.choice([0, 1, 2]), depth=rng.random() < 0.3,
                            normals=rng.random() < 0.3, jpeg_quality=rng.choice([0, 1, 75, 100]))


def valid_header(rng: random.Random, corpus: Corpus) -> pb.DriveHeader:
    header = pb.DriveHeader(avatar_id=corpus.astronaut, camera=valid_camera(rng))
    if rng.random() < 0.6:
        header.options.CopyFrom(valid_options(rng))
    if rng.random() < 0.4:
        header.smoothing.CopyFrom(pb.Smoothing(enabled=rng.random() < 0.7,
                                               min_cutoff=rng.choice([0.0, 1.0, 3.0]),
                                               beta=rng.choice([0.0, 0.3, 4.0])))
    return header


def valid_request(rng: random.Random, corpus: Corpus, method: str):
    """A real, valid request of `method` (cheap to answer: small cameras, no real photos)."""
    if method == "CreateAvatar":
        return pb.CreateAvatarRequest(image=rng.choice(corpus.images), name=rng.choice(["", "fuzz"]),
                                      reconstructor=rng.choice(["", "fit", "portrait4d"]))
    if method == "GetAvatar":
        return pb.GetAvatarRequest(avatar_id=rng.choice([corpus.astronaut, unknown_id(rng, corpus)]))
    if method == "ListAvatars":
        return pb.ListAvatarsRequest()
    if method == "DeleteAvatar":
        return pb.DeleteAvatarRequest(avatar_id=unknown_id(rng, corpus))
    if method == "RenderFrame":
        avatar = corpus.astronaut if rng.random() < 0.85 else unknown_id(rng, corpus)
        request = pb.RenderFrameRequest(avatar_id=avatar, camera=valid_camera(rng))
        if rng.random() < 0.7:
            request.motion.CopyFrom(valid_motion(rng) if rng.random() < 0.75
                                    else valid_source_motion(rng, corpus))
        if rng.random() < 0.7:
            request.options.CopyFrom(valid_options(rng))
        return request
    if method == "SolveMotion":
        return pb.SolveMotionRequest(image=rng.choice(corpus.images),
                                     avatar_id=rng.choice([corpus.astronaut, "", unknown_id(rng, corpus)]),
                                     sequence=rng.randrange(2**20), timecode=rng.uniform(0, 100))
    if method == "ExportMesh":
        avatar = corpus.astronaut if rng.random() < 0.25 else unknown_id(rng, corpus)
        request = pb.ExportMeshRequest(avatar_id=avatar, chunk_bytes=rng.choice([0, 1024, 65536, MiB]),
                                       format=rng.choice(["", "glb", "obj", "ply"]),
                                       source=rng.choice(["", "mesh", "volume"]))
        if rng.random() < 0.3:
            request.motion.CopyFrom(valid_motion(rng))
        return request
    if method == "CalibrateNeutral":
        avatar = corpus.astronaut if rng.random() < 0.5 else unknown_id(rng, corpus)
        if rng.random() < 0.15:
            return pb.CalibrateNeutralRequest(avatar_id=avatar, reset=True)
        return pb.CalibrateNeutralRequest(avatar_id=avatar, neutral=valid_source_motion(rng, corpus))
    if method == "Drive":
        pick = rng.random()
        if pick < 0.5:
            return pb.DriveRequest(header=valid_header(rng, corpus))
        if pick < 0.8:
            return pb.DriveRequest(frame=valid_motion(rng))
        if pick < 0.9:
            return pb.DriveRequest(frame=valid_source_motion(rng, corpus))
        return pb.DriveRequest(end=pb.DriveEnd())
    request = REQUESTS[method]()  # a call this file does not know yet: only unknown avatars
    if "avatar_id" in request.DESCRIPTOR.fields_by_name:
        request.avatar_id = unknown_id(rng, corpus)
    return request


# -- bad values, per type and per field ------------------------------------------------------
BAD_FLOATS = [NAN, INF, -INF, -0.0, 0.0, -1.0, 0.5, 1e-45, 1e-300, 5e-324, 1e38, F32_MAX, -F32_MAX,
              3.5e38, 1e300, -1e300, 2.0**63, 1e6, -1e6]
BAD_UINTS = [0, 1, 2, 7, 63, 64, 65, 1023, 1024, 1025, 4095, 4096, 4097, 65535, 65536, 100_000,
             2**31 - 1, 2**31, 2**32 - 1, 2**32, 2**53 + 1, 2**63, 2**64 - 1, -1, -2, -2**31, -2**63]
WRONG_TYPES = [None, True, False, 0, -1, 1.5, NAN, "", "x", "0", "1e9", b"", b"\x00\xff", [], [1], [None],
               ["a", 1], [[0.0]], {}, {"a": 1}, {1: 2}, {"": None}, 2**64 - 1, -2**63,
               msgpack.ExtType(7, b"x"), msgpack.Timestamp(0, 0)]
BAD_STRINGS = ["", " ", "\x00", "\t\n", "é", "\U0001f4a5" * 300, "a" * 70_000, "../" * 20, "%s%n%x",
               "*", "?", "null", "\u202e", "ENCODING_PNG"]
ENUM_VALUES = [0, 1, 2, 3, 4, 99, -1, 2**31 - 1, -2**31, 2**31, 2**32 - 1, 2**32, 2**32 + 2, -2**63,
               "ENCODING_RAW", "ENCODING_JPEG", "ENCODING_GIF", "encoding_png", "PNG", "", " ENCODING_PNG"]


def _orbit_c2w(rng: random.Random) -> np.ndarray:
    return np.asarray(Camera.orbit(yaw_deg=rng.uniform(-40, 40), pitch_deg=rng.uniform(-20, 20)).c2w)


def bad_c2w(rng: random.Random):
    good = _orbit_c2w(rng)
    pick = rng.randrange(20)
    m = good.copy()
    if pick == 0:
        m = np.zeros((4, 4))                                   # singular
    elif pick == 1:
        m = np.eye(4)                                          # valid: camera inside the head
    elif pick == 2:
        m[:3, :3] *= rng.choice([2.0, 0.5, 1e-9, 1e9, -1.0])   # scaled / point-mirrored
    elif pick == 3:
        m[:3, 0] *= -1                                         # mirrored (det -1)
    elif pick == 4:
        m[0, 1] += rng.choice([0.1, 0.002, 0.0005])            # sheared (the last within tolerance)
    elif pick == 5:
        m[3] = rng.choice([[0, 0, 1, 1], [0, 0, 0, 2], [0, 0, 0, 0], [1e-7, 0, 0, 1]])
    elif pick == 6:
        m.flat[rng.randrange(16)] = rng.choice([NAN, INF, -INF])
    elif pick == 7:
        m[:3, 3] = rng.choice([[1e300, 0, 0], [3e38, 3e38, 3e38], [0, 0, -1e6], [0, 0, 0], [1e-300] * 3])
    elif pick == 8:
        m = m + np.asarray([[rng.gauss(0, 1e-4) for _ in range(4)] for _ in range(3)] + [[0] * 4])
    elif pick == 9:
        m = m.T                                                 # rotation fine, translation in row 3
    elif pick == 10:
        m[:3, :3] = m[:3, :3][[1, 0, 2]]                        # rows swapped: det -1
    elif pick == 11:
        return [float(x) for x in good.ravel()][: rng.choice([0, 1, 3, 9, 12, 15])]
    elif pick == 12:
        return [float(x) for x in good.ravel()] + [0.0] * rng.choice([1, 16, 48])
    elif pick == 13:
        return [rng.choice(BAD_FLOATS) for _ in range(16)]
    elif pick == 14:
        m = np.full((4, 4), rng.choice([1e-300, 5e-324, F32_MAX, 1e308]))
    elif pick == 15:
        m[:3, :3] = np.linalg.qr(np.asarray([[rng.gauss(0, 1) for _ in range(3)] for _ in range(3)]))[0]
    elif pick == 16:
        m[:3, :3] = np.diag([1.0, 1.0, 1.0 + rng.choice([1e-2, 1e-4, -1e-4])])
    elif pick == 17:
        m[:3, 3] = [0, 0, rng.choice([0.01, 0.2, 0.5, 5.0, 1e4])]   # inside, near and far
        m[:3, :3] = np.eye(3)
    return [float(x) for x in np.asarray(m, np.float64).ravel()]


def bad_vector(rng: random.Random, size: int, low: float, high: float,
               extra: tuple = ()) -> list:
    n = rng.choice([0, 1, size - 1, size, size, size, size + 1, 2 * size, 100]
                   + ([100_000] if rng.random() < 0.01 else []))
    values = [rng.uniform(low, high) for _ in range(max(n, 0))]
    if values and rng.random() < 0.7:
        values[rng.randrange(n)] = rng.choice(BAD_FLOATS + list(extra))
    return values


def field_value(rng: random.Random, corpus: Corpus, fd: FieldDescriptor):
    """A bad (or borderline) value for `fd`: specific to the field, else by type, or of a
    wrong type altogether."""
    if rng.random() < 0.25:
        return rng.choice(WRONG_TYPES)
    key = f"{fd.containing_type.name}.{fd.name}"
    ids = [corpus.astronaut, corpus.astronaut.upper(), corpus.astronaut + "0", corpus.astronaut[:-1],
           " " + corpus.astronaut, "../" + corpus.astronaut, unknown_id(rng, corpus), "", "-", "_" * 64,
           "a" * 65, "\x00" * 16, "a/b", "é" * 16]
    special = {
        "Camera.c2w": lambda: bad_c2w(rng),
        "Camera.width": lambda: rng.choice([0, 1, 64, 65, 4096, 4097, 100_000, 2**32 - 1, -1]),
        "Camera.height": lambda: rng.choice([0, 1, 64, 65, 4096, 4097, 100_000, 2**32 - 1, -1]),
        "Camera.fov_y_deg": lambda: rng.choice([0.0, 0.5, 0.999, 1.0, 120.0, 120.001, 179.9, 180.0, 360.0,
                                                -12.0, NAN, INF, -INF, 1e-30, F32_MAX]),
        "MotionFrame.arkit": lambda: bad_vector(rng, 52, 0.0, 1.0,
                                                (-0.5, 1.5, 1.0099, -0.0099, 1.011, -0.011)),
        "MotionFrame.head_rotation": lambda: rng.choice([
            [0.0] * 4, [1e-7] * 4, [1e-38] * 4, [F32_MAX] * 4, [1e38, 0, 0, 0], [-0.0] * 4,
            [0, 0, 0, -1.0], [1, 2, 3, 4], bad_vector(rng, 4, -1.0, 1.0)]),
        "MotionFrame.head_translation": lambda: rng.choice([
            [F32_MAX] * 3, [-F32_MAX, 0, F32_MAX], [0, 0, 0.6], [0, 0, -5.0], [1e5, 0, 0],
            bad_vector(rng, 3, -0.1, 0.1)]),
        "MotionFrame.eye_gaze": lambda: rng.choice([[100.0] * 4, [F32_MAX] * 4, [-math.pi] * 4,
                                                    bad_vector(rng, 4, -1.0, 1.0)]),
        "MotionFrame.sequence": lambda: rng.choice([0, 2**63, 2**64 - 1, -1, 2**64 - 1, 1.0]),
        "MotionFrame.timecode": lambda: rng.choice([NAN, INF, -INF, -1e300, 1e300, 5e-324, -0.0, 2.0**60]),
        "Landmarks.xyz": lambda: bad_vector(rng, 478 * 3, 0.0, 100.0),
        "Landmarks.width": lambda: rng.choice([0, 1, 2**32 - 1]),
        "Embedding.values": lambda: bad_vector(rng, 64, -1.0, 1.0),
        "RenderOptions.encoding": lambda: rng.choice(ENUM_VALUES),
        "RenderOptions.jpeg_quality": lambda: rng.choice([0, 1, 100, 101, 255, 2**32 - 1, -1]),
        "Smoothing.min_cutoff": lambda: rng.choice([0.0, -1.0, NAN, INF, 1e-30, 5e-324, 1000.0, 1000.5,
                                                    F32_MAX]),
        "Smoothing.beta": lambda: rng.choice([0.0, -1.0, NAN, INF, 1e-30, 1000.0, 1000.5, F32_MAX]),
        "ExportMeshRequest.chunk_bytes": lambda: rng.choice([0, 1, 2, 1023, 1024, MiB, 4 * MiB, 2**32 - 1,
                                                             -1]),
        "ExportMeshRequest.format": lambda: rng.choice(["", "glb", "obj", "ply", "GLB", "gltf", "fbx",
                                                        "glb\x00", "obj ", ".glb", "mtl", "png", "x" * 5000]),
        "ExportMeshRequest.source": lambda: rng.choice(["", "mesh", "volume", "Mesh", "VOLUME", "points",
                                                        "\x00", "mesh volume"]),
        "CreateAvatarRequest.reconstructor": lambda: rng.choice(["", "fit", "portrait4d", "FIT", "fit ",
                                                                 "portrait4d\x00", "x" * 5000]),
        "CreateAvatarRequest.name": lambda: rng.choice(BAD_STRINGS),
        "CalibrateNeutralRequest.reset": lambda: rng.choice([True, False, 1, 2]),
    }
    if key in special and rng.random() < 0.75:
        return special[key]()
    if fd.name == "avatar_id":
        return rng.choice(ids)
    if fd.type == FD.TYPE_BYTES:
        noise = rng.randbytes(rng.choice([1, 16, 300, 70_000]))
        return rng.choice(corpus.images + corpus.bad_images + [noise])
    if fd.label == FD.LABEL_REPEATED:
        return bad_vector(rng, rng.choice([4, 16, 52]), -1.0, 1.0)
    if fd.type in (FD.TYPE_FLOAT, FD.TYPE_DOUBLE):
        return rng.choice(BAD_FLOATS)
    if fd.type in _INTEGER_TYPES:
        return rng.choice(BAD_UINTS)
    if fd.type == FD.TYPE_BOOL:
        return rng.choice([True, False, 0, 1, 2])
    if fd.type == FD.TYPE_ENUM:
        return rng.choice(ENUM_VALUES)
    if fd.type == FD.TYPE_STRING:
        return rng.choice(BAD_STRINGS + ids)
    assert fd.type == FD.TYPE_MESSAGE
    return rng.choice([None, {}, {"": 1}, {"unknown_field": 1}])


_PATHS: dict[str, list[tuple]] = {}


def field_paths(descriptor) -> list[tuple]:
    """Every field reachable from `descriptor`, as tuples of FieldDescriptors (a message graph
    without cycles, so this is finite)."""
    if descriptor.full_name not in _PATHS:
        paths = []
        for fd in descriptor.fields:
            paths.append((fd,))
            if fd.type == FD.TYPE_MESSAGE and fd.label != FD.LABEL_REPEATED:
                paths.extend((fd, *sub) for sub in field_paths(fd.message_type))
        _PATHS[descriptor.full_name] = paths
    return _PATHS[descriptor.full_name]


def mutate_fields(rng: random.Random, corpus: Corpus, descriptor, data: dict) -> str:
    """Set 1-3 fields anywhere in `data` (a to_dict tree) to bad values; describe them."""
    what = []
    if not field_paths(descriptor):  # ListAvatarsRequest: only fields it does not have
        key, value = rng.choice(FIELD_NAMES), rng.choice(WRONG_TYPES)
        data[key] = value
        return f"{key}={short(value)} (no such field)"
    for _ in range(rng.choice([1, 1, 1, 2, 3])):
        path = rng.choice(field_paths(descriptor))
        node = data
        for fd in path[:-1]:
            if not isinstance(node.get(fd.name), dict):
                node[fd.name] = {}
            node = node[fd.name]
        value = field_value(rng, corpus, path[-1])
        node[path[-1].name] = value
        what.append(f"{'.'.join(fd.name for fd in path)}={short(value)}")
    return ", ".join(what)


def short(value, limit: int = 60) -> str:
    if isinstance(value, (bytes, bytearray)):
        text = f"<{len(value)} bytes {bytes(value[:12]).hex()}>"
    elif isinstance(value, (list, str)) and len(value) > 8:
        text = f"<{type(value).__name__} of {len(value)}: {value[:4]!r}...>"
    else:
        text = repr(value)
    return text if len(text) <= limit else text[:limit] + "..."


def mutate_bytes(rng: random.Random, data: bytes) -> tuple[bytes, str]:
    """Truncate, flip bits, splice, repeat: 1-3 operations on serialized bytes."""
    data = bytearray(data)
    ops = []
    for _ in range(rng.choice([1, 1, 2, 3])):
        op = rng.randrange(10)
        n = len(data)
        if op == 0 or not n:
            cut = rng.randrange(n + 1)
            data = data[:cut]
            ops.append(f"truncate@{cut}")
        elif op in (1, 2):
            flips = rng.choice([1, 1, 2, 4, 8])
            for _ in range(flips):
                data[rng.randrange(n)] ^= 1 << rng.randrange(8)
            ops.append(f"flip{flips}")
        elif op == 3:
            i = rng.randrange(n)
            data[i] = rng.choice([0x00, 0xFF, 0x80, 0x7F, 0xC1, rng.randrange(256)])
            ops.append(f"set@{i}")
        elif op == 4:
            i = rng.randrange(n + 1)
            data[i:i] = rng.randbytes(rng.choice([1, 2, 8, 64]))
            ops.append(f"insert@{i}")
        elif op == 5:
            i = rng.randrange(n)
            j = min(n, i + rng.choice([1, 2, 8, 64]))
            del data[i:j]
            ops.append(f"delete@{i}:{j}")
        elif op == 6:
            i = rng.randrange(n)
            j = min(n, i + rng.choice([1, 4, 16, 256]))
            data[j:j] = data[i:j] * rng.choice([1, 2, 10])
            ops.append(f"duplicate@{i}:{j}")
        elif op == 7:
            data = data * rng.choice([2, 3])
            ops.append("repeat")
        elif op == 8:
            data += rng.randbytes(rng.choice([1, 3, 32]))
            ops.append("append")
        else:
            i = rng.randrange(n)
            data = data[i:] + data[:i]
            ops.append(f"rotate@{i}")
    return bytes(data), "+".join(ops)


FIELD_NAMES = sorted({fd.name for cls in REQUESTS.values() for path in field_paths(cls.DESCRIPTOR)
                      for fd in path} | {"kind", "request_id", "token", "body", "header", "frame", "end"})


def random_structure(rng: random.Random, depth: int = 0):
    """A random msgpack value (maps keyed mostly by real field names)."""
    pick = rng.randrange(12 if depth < 4 else 8)
    if pick == 0:
        return None
    if pick == 1:
        return rng.random() < 0.5
    if pick == 2:
        return rng.choice([0, 1, -1, 2**31, 2**32 - 1, 2**63 - 1, 2**64 - 1, -2**63,
                           rng.randrange(-999, 999)])
    if pick == 3:
        return rng.choice(BAD_FLOATS + [rng.uniform(-10, 10)])
    if pick == 4:
        return rng.choice(BAD_STRINGS[:12] + FIELD_NAMES + [rng.choice(METHODS)])
    if pick == 5:
        return rng.randbytes(rng.choice([0, 1, 8, 64]))
    if pick == 6:
        return msgpack.ExtType(rng.randrange(128), rng.randbytes(rng.randrange(4)))
    if pick == 7:
        return rng.choice(["", "x", "\x00"])
    if pick in (8, 9):
        return [random_structure(rng, depth + 1) for _ in range(rng.choice([0, 1, 2, 4, 52]))]
    keys = [rng.choice(FIELD_NAMES) if rng.random() < 0.85 else rng.choice([1, None, b"k", 1.5, ""])
            for _ in range(rng.choice([0, 1, 2, 3]))]
    return {k: random_structure(rng, depth + 1) for k in keys}


# -- requests that would cost real work --------------------------------------------------------
@dataclass
class Budget:
    renders: int = RENDER_BUDGET
    exports: int = EXPORT_BUDGET
    skipped: int = 0


def _motion_ok(msg, sources: bool = False) -> bool:
    """Whether the motion passes the checks done before any work (weights only, or any
    source: image, landmarks, motion code)."""
    try:
        item = motion_or_source_from_proto(msg) if sources else motion_from_proto(msg)
    except Exception:  # noqa: BLE001 - refused before any work
        return False
    return not isinstance(item, SourceMotion) or item.kind != "image" or _image_ok(item.payload)


def _render_pixels(service, camera, options) -> int | None:
    """Pixels of the frame a request would render, or None when it is refused first."""
    try:
        cam, _ = validation.render_target(service, LIMITS, camera, options)
    except Exception:  # noqa: BLE001 - refused (the server answers it; a non-AvatarError is reported there)
        return None
    return cam.width * cam.height


def _image_ok(data: bytes) -> bool:
    """False for an image that decodes to more than MAX_IMAGE_PIXELS (detection would cost).
    The declared size decides when it is small; a large one is decoded to see."""
    try:
        with PIL.Image.open(io.BytesIO(data)) as image:
            if image.size[0] * image.size[1] <= MAX_IMAGE_PIXELS:
                return True
        rgb = decode_image(data)
    except Exception:  # noqa: BLE001 - the server refuses it as well
        return True
    return rgb.shape[0] * rgb.shape[1] <= MAX_IMAGE_PIXELS


def affordable(method: str, msg, frames: list, corpus: Corpus, service, budget: Budget) -> bool:
    """Whether the server may run `msg` as it would: never delete a real avatar, never render
    more than 64x64 or past the render budget, few real exports, small images only. Charges
    the budget when it says yes to real work."""
    if method == "DeleteAvatar":
        return msg.avatar_id not in corpus.known
    if method in ("CreateAvatar", "SolveMotion"):
        return _image_ok(msg.image)
    if method == "RenderFrame":
        motion = msg.motion if msg.HasField("motion") else None
        if motion is not None and motion.image and not _image_ok(motion.image):
            return False
        if msg.avatar_id not in corpus.known or not _motion_ok(motion, sources=True):
            return True
        pixels = _render_pixels(service, msg.camera if msg.HasField("camera") else None,
                                msg.options if msg.HasField("options") else None)
        if pixels is None:
            return True
        if pixels > MAX_RENDER_PIXELS or budget.renders <= 0:
            return False
        budget.renders -= 1
        return True
    if method == "ExportMesh":
        motion = msg.motion if msg.HasField("motion") else None
        if msg.avatar_id not in corpus.known or not _motion_ok(motion):
            return True
        chunk = int(msg.chunk_bytes) or DEFAULT_CHUNK_BYTES
        if (chunk < MIN_CHUNK_BYTES or (msg.source or "mesh") != "mesh"
                or (msg.format or "glb") not in FORMATS):
            return True  # refused before exporting
        if chunk < MIN_EXPORT_CHUNK or budget.exports <= 0:
            return False
        budget.exports -= 1
        return True
    if method == "CalibrateNeutral":
        if msg.avatar_id not in corpus.known:
            return True
        if msg.reset:  # would forget a calibration of a real avatar
            return msg.HasField("neutral")
        neutral = msg.neutral if msg.HasField("neutral") else None
        if neutral is None:
            return True  # refused: nothing to calibrate with
        if neutral.image:
            return _image_ok(neutral.image)  # faceless: refused before anything is stored
        return not _motion_ok(neutral, sources=True)  # landmarks that solve would be stored
    if method == "Drive":
        if msg.WhichOneof("kind") != "header":
            return True
        images = [f.frame.image for f in frames if f.WhichOneof("kind") == "frame" and f.frame.image]
        if not all(_image_ok(image) for image in images):
            return False
        try:
            camera, _, _ = validation.drive_header(service, LIMITS, msg.header)
        except Exception:  # noqa: BLE001 - refused before the session starts
            return True
        if camera.width * camera.height > MAX_RENDER_PIXELS:
            return False
        renders = sum(1 for f in frames
                      if f.WhichOneof("kind") == "frame" and _motion_ok(f.frame, sources=True))
        if renders > budget.renders:
            return False
        budget.renders -= renders
        return True
    if method in ("GetAvatar", "ListAvatars", "SolveMotion"):
        return True
    # A call this file does not know: it may change or cost something, so never a real avatar.
    return getattr(msg, "avatar_id", None) not in corpus.known


# -- cases -----------------------------------------------------------------------------------
@dataclass
class Case:
    index: int
    category: str
    method: str
    what: str
    # gRPC: the request messages (one, or a Drive stream). ZeroMQ: ("send", parts) and
    # ("session", parts) steps; a session step goes to the Drive session the case opened.
    messages: list = field(default_factory=list)
    path: str = ""
    fuzzed: int = 1  # malformed messages in the case

    def preview(self) -> str:
        shown = []
        for item in self.messages[:6]:
            parts = item[1] if isinstance(item, tuple) else [item]
            shown.append("|".join(bytes(p[:160]).hex() + ("..." if len(p) > 160 else "") for p in parts))
        more = f" (+{len(self.messages) - 6} more)" if len(self.messages) > 6 else ""
        return " ; ".join(shown) + more


def drive_scenario(rng: random.Random, corpus: Corpus, zmq_side: bool) -> tuple[str, list]:
    """A Drive stream as ("msg", DriveRequest dict) / ("raw", bytes) / ("body", any value) /
    ("direct", None: envelope garbage, ZeroMQ, sent under its own request_id) items."""
    kind = rng.choices(["abuse", "bad-header", "no-header", "empty", "smoothing"], [50, 18, 14, 6, 12])[0]
    end = ("msg", {"end": {}})
    header = ("msg", {"header": codec.to_dict(valid_header(rng, corpus))})
    if kind == "abuse":
        items = [header]
        for _ in range(rng.randint(1, 6)):
            items.append(session_junk(rng, corpus, zmq_side))
        if rng.random() < 0.5:
            items.append(("msg", {"frame": codec.to_dict(valid_motion(rng))}))
        if zmq_side or rng.random() < 0.8:  # gRPC may also just half-close
            items.append(end)
        return kind, items
    if kind == "bad-header":
        body = {"header": codec.to_dict(valid_header(rng, corpus))}
        what = mutate_fields(rng, corpus, pb.DriveHeader.DESCRIPTOR, body["header"])
        items = [("msg", body)] + [("msg", {"frame": codec.to_dict(valid_motion(rng))})
                                   for _ in range(rng.randint(0, 2))] + [end]
        return f"{kind} {what}", items
    if kind == "no-header":
        first = rng.choice([("msg", {"frame": codec.to_dict(valid_motion(rng))}), end, ("msg", {}),
                            ("msg", {"frame": {}, "end": {}}), session_junk(rng, corpus, zmq_side)])
        return kind, [first] + [session_junk(rng, corpus, zmq_side) for _ in range(rng.randint(0, 2))]
    if kind == "empty":
        return kind, [] if not zmq_side else [rng.choice([("body", None), ("body", {}), end])]
    # smoothing: One-Euro fed extreme timecodes and extreme (still valid) values
    smooth = pb.DriveRequest(header=valid_header(rng, corpus))
    smooth.header.smoothing.CopyFrom(pb.Smoothing(
        enabled=True, min_cutoff=rng.choice([0.0, 1e-30, 1e-3, 1000.0]),
        beta=rng.choice([0.0, 1e-30, 1000.0])))
    items = [("msg", codec.to_dict(smooth))]
    for _ in range(rng.randint(2, 6)):
        frame = codec.to_dict(valid_motion(rng))
        frame["timecode"] = rng.choice([0.0, 5e-324, 1e-300, 1e-9, 1e300, -1e300, 2.0**60, 0.0])
        if rng.random() < 0.5:
            frame["head_translation"] = rng.choice([[F32_MAX] * 3, [-F32_MAX] * 3, [0.0, 0.0, 0.0]])
        if rng.random() < 0.3:
            frame["eye_gaze"] = rng.choice([[], [F32_MAX] * 4, [-F32_MAX] * 4])
        if rng.random() < 0.3:
            frame["head_rotation"] = rng.choice([[1e-6, 0, 0, 0], [F32_MAX] * 4, [0, 0, 0, -1.0]])
        items.append(("msg", {"frame": frame}))
    return kind, items + [end]


def session_junk(rng: random.Random, corpus: Corpus, zmq_side: bool) -> tuple:
    """One bad thing to send inside an open Drive session."""
    pick = rng.random()
    if pick < 0.25:
        frame = codec.to_dict(valid_motion(rng))
        mutate_fields(rng, corpus, pb.MotionFrame.DESCRIPTOR, frame)
        return "msg", {"frame": frame}
    if pick < 0.38:
        request = codec.to_dict(valid_request(rng, corpus, "Drive"))
        mutate_fields(rng, corpus, pb.DriveRequest.DESCRIPTOR, request)
        return "msg", request
    if pick < 0.48:
        header = codec.to_dict(valid_header(rng, corpus))
        if rng.random() < 0.5:
            mutate_fields(rng, corpus, pb.DriveHeader.DESCRIPTOR, header)
        return "msg", {"header": header}  # a second header
    if pick < 0.55:
        return "msg", rng.choice([{}, {"frame": {}, "end": {}}, {"header": {}, "frame": {}},
                                  {"frame": None, "end": None}])
    if pick < 0.65:
        image = rng.choice(corpus.images + corpus.bad_images)
        return "msg", {"frame": {"image": image, "sequence": rng.randrange(1000)}}
    if pick < 0.70:
        collapsed = {"xyz": [1.0] * (478 * 3), "width": 64, "height": 64}
        return "msg", {"frame": rng.choice([{"landmarks": collapsed},
                                            {"embedding": {"values": [0.1] * 16}},
                                            {"landmarks": {}, "image": b"x"}])}
    if zmq_side:
        if rng.random() < 0.6:
            return "body", random_structure(rng)
        return "direct", None  # garbage under another request_id (filled in by the caller)
    if rng.random() < 0.5:
        return "raw", rng.randbytes(rng.choice([0, 1, 5, 40, 300]))
    data, _ = mutate_bytes(rng, valid_request(rng, corpus, "Drive").SerializeToString())
    return "raw", data


# gRPC ------------------------------------------------------------------------------------------
def grpc_case(rng: random.Random, corpus: Corpus, index: int) -> Case:
    category = rng.choices(["random", "bytes", "field", "wire", "drive"], [12, 25, 40, 11, 12])[0]
    method = rng.choice(METHODS)
    cls = REQUESTS[method]
    if category == "random":
        n = rng.choice([0, 1, 2, 5, 16, 64, 300, 4096] + ([70_000] if rng.random() < 0.05 else []))
        count = rng.choice([1, 1, 3]) if method == "Drive" else 1
        return Case(index, category, method, f"{count}x{n} random bytes",
                    [rng.randbytes(n) for _ in range(count)], fuzzed=count)
    if category == "bytes":
        data, what = mutate_bytes(rng, valid_request(rng, corpus, method).SerializeToString())
        messages = [data]
        if method == "Drive" and rng.random() < 0.5:
            messages.append(pb.DriveRequest(end=pb.DriveEnd()).SerializeToString())
        return Case(index, category, method, what, messages)
    if category == "field":
        data = codec.to_dict(valid_request(rng, corpus, method))
        what = mutate_fields(rng, corpus, cls.DESCRIPTOR, data)
        messages = [encode_message(cls.DESCRIPTOR, data)]
        if method == "Drive":
            messages.append(pb.DriveRequest(end=pb.DriveEnd()).SerializeToString())
        return Case(index, category, method, what, messages)
    if category == "wire":
        return wire_case(rng, corpus, index, method)
    kind, items = drive_scenario(rng, corpus, zmq_side=False)
    messages = []
    for sort, value in items:
        messages.append(value if sort == "raw" else encode_message(pb.DriveRequest.DESCRIPTOR, value))
    return Case(index, "drive", "Drive", kind, messages, fuzzed=max(1, len(messages) - 2))


def wire_case(rng: random.Random, corpus: Corpus, index: int, method: str) -> Case:
    """Protobuf wire oddities around a valid request."""
    cls = REQUESTS[method]
    base = valid_request(rng, corpus, method).SerializeToString()
    fields = list(cls.DESCRIPTOR.fields) or [None]
    fd = rng.choice(fields)
    number = fd.number if fd is not None else 1
    pick = rng.randrange(15)
    if pick == 0:
        unknown, wire = rng.randrange(16, 2**29), rng.choice([0, 1, 2, 5])
        payload = {0: varint(rng.getrandbits(40)), 1: rng.randbytes(8), 2: _length(rng.randbytes(5)),
                   5: rng.randbytes(4)}[wire]
        data, what = base + tag(unknown, wire) + payload, f"unknown field {unknown} (wire type {wire})"
    elif pick == 1:
        data, what = tag(0, W_VARINT) + b"\x01" + base, "field number 0"
    elif pick == 2:
        data, what = base + varint((2**29 + rng.randrange(2**30)) << 3) + b"\x00", "field number >= 2**29"
    elif pick == 3:
        data, what = base + tag(number, rng.choice([6, 7])) + b"\x00", "wire type 6/7"
    elif pick == 4:
        data, what = base + tag(number, 3) + rng.randbytes(3), "unterminated group"
    elif pick == 5:
        data, what = tag(rng.randrange(1, 20), 4) + base, "end group without start"
    elif pick == 6:
        data, what = base + tag(number, W_LEN) + varint(rng.choice([2**31, 2**32 + 7, 2**63])), "huge length"
    elif pick == 7:
        wire = rng.choice([w for w in (0, 1, 2, 5) if fd is None or w != _natural_wire(fd)])
        payload = {0: varint(300), 1: b"\x00" * 8, 2: _length(b"abc"), 5: b"\x00" * 4}[wire]
        data, what = base + tag(number, wire) + payload, f"{fd.name if fd else '?'} with wire type {wire}"
    elif pick == 8:
        strings = [f for f in cls.DESCRIPTOR.fields if f.type == FD.TYPE_STRING] or [fd]
        target = rng.choice(strings)
        bad = rng.choice([b"\xff\xfe", b"\xc0\x80", b"\xed\xa0\x80", b"a\x80", b"\xf4\x90\x80\x80"])
        data, what = base + tag(target.number if target else 1, W_LEN) + _length(bad), "invalid UTF-8"
    elif pick == 9:
        depth = rng.choice([50, 101, 10_000, 200_000])
        data, what = base + tag(15, 3) * depth, f"{depth} nested groups"
    elif pick == 10:
        data, what = base + tag(number, W_VARINT) + b"\xff" * rng.choice([10, 11, 40]), "overlong varint"
    elif pick == 11:
        data, what = base * rng.choice([2, 5, 100]), "repeated message (merged)"
    elif pick == 12:
        packed = [f for path in field_paths(cls.DESCRIPTOR) for f in path[-1:]
                  if f.label == FD.LABEL_REPEATED]
        if packed:
            target = rng.choice(packed)
            wrap = _wrap_path(cls.DESCRIPTOR, target)
            partial = rng.randbytes(rng.choice([1, 3, 7, 4099]))
            data = base + wrap(tag(target.number, W_LEN) + _length(partial))
            what = f"packed {target.name} with a partial element"
        else:
            data, what = base + b"\x80", "dangling continuation byte"
    elif pick == 13:
        path = rng.choice([f"/avatar.v1.AvatarRuntime/{method.lower()}", "/avatar.v1.AvatarRuntime/Teleport",
                           f"/avatar.v2.AvatarRuntime/{method}", "/grpc.health.v1.Health/Nope", "/x"])
        return Case(index, "wire", method, f"unknown method {path}", [base], path=path)
    else:
        data, what = base, "valid"
        if rng.random() < 0.5:
            data += tag(rng.randrange(16, 200), W_VARINT) + varint(rng.getrandbits(20))
            what = "valid + unknown varint field"
    messages = [data]
    if method == "Drive":
        messages.append(pb.DriveRequest(end=pb.DriveEnd()).SerializeToString())
    return Case(index, "wire", method, what, messages)


def _natural_wire(fd: FieldDescriptor) -> int:
    if fd.label == FD.LABEL_REPEATED or fd.type in (FD.TYPE_STRING, FD.TYPE_BYTES, FD.TYPE_MESSAGE):
        return W_LEN
    if fd.type in (FD.TYPE_DOUBLE, FD.TYPE_FIXED64, FD.TYPE_SFIXED64):
        return W_I64
    if fd.type in (FD.TYPE_FLOAT, FD.TYPE_FIXED32, FD.TYPE_SFIXED32):
        return W_I32
    return W_VARINT


def _wrap_path(descriptor, target: FieldDescriptor):
    """A function that nests bytes of `target`'s message inside the fields leading to it."""
    for path in field_paths(descriptor):
        if path[-1] is target:
            def wrap(inner: bytes, path=path) -> bytes:
                for fd in reversed(path[:-1]):
                    inner = tag(fd.number, W_LEN) + _length(inner)
                return inner
            return wrap
    return lambda inner: inner


def oversized_grpc(rng: random.Random, corpus: Corpus, index: int, method: str) -> Case:
    data = tag(1, W_LEN) + _length(b"\x00" * (LIMITS.max_message_bytes + rng.choice([1, 4096])))
    messages, what = [data], f"{len(data)} bytes, over max_message_bytes"
    if method == "Drive" and rng.random() < 0.5:
        header = pb.DriveRequest(header=valid_header(rng, corpus))
        header.header.camera.width = header.header.camera.height = 8
        frame = tag(2, W_LEN) + _length(tag(7, W_LEN) + _length(data))  # frame.image
        messages, what = [header.SerializeToString(), frame], f"a header, then a frame of {len(frame)} bytes"
    return Case(index, "wire", method, what, messages)


# ZeroMQ ---------------------------------------------------------------------------------------
def envelope(kind, request_id, body) -> dict:
    return {"kind": kind, "request_id": request_id, "body": body}


def pack(obj) -> bytes:
    return msgpack.packb(obj, use_bin_type=True)


def zmq_case(rng: random.Random, corpus: Corpus, index: int, ids) -> Case:
    category = rng.choices(["random", "bytes", "field", "envelope", "drive"], [12, 25, 40, 11, 12])[0]
    method = rng.choice(METHODS)
    cls = REQUESTS[method]
    rid = next(ids)
    if category == "random":
        pick = rng.random()
        if pick < 0.5:
            n = rng.choice([0, 1, 2, 5, 16, 64, 300, 4096] + ([70_000] if rng.random() < 0.05 else []))
            return Case(index, category, method, f"{n} random bytes", [("send", [rng.randbytes(n)])])
        if pick < 0.8:
            value = random_structure(rng)
            return Case(index, category, method, f"random value {short(value)}", [("send", [pack(value)])])
        body = random_structure(rng)
        return Case(index, category, method, f"random body {short(body)}",
                    [("send", [pack(envelope(method, rid, body))])])
    if category == "bytes":
        payload = pack(envelope(method, rid, codec.to_dict(valid_request(rng, corpus, method))))
        data, what = mutate_bytes(rng, payload)
        return Case(index, category, method, what, [("send", [data])])
    if category == "field":
        body = codec.to_dict(valid_request(rng, corpus, method))
        what = mutate_fields(rng, corpus, cls.DESCRIPTOR, body)
        return Case(index, category, method, what, [("send", [pack(envelope(method, rid, body))])])
    if category == "envelope":
        return envelope_case(rng, corpus, index, method, rid)
    kind, items = drive_scenario(rng, corpus, zmq_side=True)
    steps = []
    for position, (sort, value) in enumerate(items):
        if sort == "direct":
            garbage = envelope_case(rng, corpus, index, rng.choice(METHODS), next(ids))
            steps.extend(garbage.messages)
            continue
        body = value
        # Each message of a header-less stream is its own request; the others share the
        # session's request_id. (Envelope garbage inside a session travels under its own
        # request_id; under the session's it is a per-frame error, see the test below.)
        step = "session" if kind != "no-header" and position > 0 else "send"
        request_id = rid if kind != "no-header" else next(ids)
        steps.append((step, [pack(envelope("Drive", request_id, body))]))
    fuzzed = max(1, len(steps) - 2)
    return Case(index, "drive", "Drive", kind, steps, fuzzed=fuzzed)


def envelope_case(rng: random.Random, corpus: Corpus, index: int, method: str, rid) -> Case:
    """Envelope abuse around a valid request."""
    body = codec.to_dict(valid_request(rng, corpus, method))
    good = envelope(method, rid, body)
    pick = rng.randrange(16)
    parts = None
    if pick == 0:
        good["kind"] = rng.choice([None, "", method.lower(), method + " ", "Teleport", 1, b"GetAvatar",
                                   [method], {"kind": method}, "health", "HEALTH", "Drive\x00"])
        what = f"kind={short(good['kind'])}"
    elif pick == 1:
        good["request_id"] = rng.choice([None, True, False, 1.5, NAN, [], [1], {}, b"id", "", "x" * 10_000,
                                         2**64 - 1, -2**63, msgpack.ExtType(1, b"")])
        what = f"request_id={short(good['request_id'])}"
    elif pick == 2:
        good["token"] = rng.choice([None, "", "secret", 1, b"secret", [], {"token": "x"}, "x" * 10_000])
        what = f"token={short(good['token'])}"
    elif pick == 3:
        key = rng.choice(["colour", "Kind", "", 1, None, b"kind", 1.5, True, "last", "error"])
        good[key] = rng.choice([1, "x", None])
        what = f"extra key {short(key)}"
    elif pick == 4:
        good["body"] = rng.choice([None, [], "", 0, b"", True, [body], "body", msgpack.ExtType(2, b"x")])
        what = f"body={short(good['body'])}"
    elif pick == 5:
        del good[rng.choice(["kind", "request_id", "body"])]
        what = "missing key"
    elif pick == 6:
        value = rng.choice([[good], "envelope", 7, None, b"\x80", True, [], msgpack.ExtType(0, pack(good))])
        parts, what = [pack(value)], f"envelope={short(value)}"
    elif pick == 7:
        bad = rng.choice([b"\xff\xfe", b"\xc0\x80", b"\xed\xa0\x80"])
        raw = (b"\x83" + pack("kind") + b"\xa2" + bad + pack("request_id") + pack(rid)
               + pack("body") + pack({}))
        parts, what = [raw], "kind with invalid UTF-8"
    elif pick == 8:
        tail = rng.choice([b"\x00", pack(good), rng.randbytes(7)])
        parts, what = [pack(good) + tail], "trailing bytes"
    elif pick == 9:
        frames = rng.choice([[b""], [b"", b""], [pack(good), pack(good)], [b"", pack(good), b""],
                             [b"x", pack(good)], [pack(good), b""], [b"", b"", pack(good)]])
        parts, what = frames, f"{len(frames)} frames"
    elif pick == 10:
        depth = rng.choice([100, 1000, 100_000])
        raw = b"\x83" + pack("kind") + pack(method) + pack("request_id") + pack(rid) + pack("body")
        parts, what = [raw + b"\x91" * depth + b"\xc0"], f"body nested {depth} deep"
    elif pick == 11:
        raw = b"\x84" + pack("kind") + pack(method) + pack("request_id") + pack(rid) + pack("body") \
            + pack({}) + b"\x91\x01" + b"\x01"  # an array as a map key
        parts, what = [raw], "unhashable map key"
    elif pick == 12:
        raw = b"\x83" + pack("kind") + pack(method) + pack("request_id") + pack(rid) + pack("body") \
            + b"\xdf\xff\xff\xff\xff"  # a map claiming 2**32-1 entries
        parts, what = [raw], "map with a huge declared length"
    elif pick == 13:
        good["kind"] = "Health"
        good["body"] = rng.choice([body, random_structure(rng), None])
        what = "Health with a body"
    elif pick == 14:
        # duplicate keys: the last one wins when decoding
        raw = b"\x84" + pack("kind") + pack("Health") + pack("kind") + pack(method) \
            + pack("request_id") + pack(rid) + pack("body") + pack(body)
        parts, what = [raw], "duplicate kind"
    else:
        good["body"] = {**body, rng.choice(FIELD_NAMES): random_structure(rng)}
        what = "stray field in body"
    if parts is None:
        parts = [pack(good)]
    return Case(index, "envelope", method, what, [("send", parts)])


def oversized_zmq(rng: random.Random, index: int, rid, method: str) -> Case:
    blob = b"\x00" * (LIMITS.max_message_bytes + rng.choice([1, 4096, MiB]))
    field_name = next((fd.name for fd in REQUESTS[method].DESCRIPTOR.fields if fd.type == FD.TYPE_BYTES),
                      None)
    body = {field_name: blob} if field_name else {"frame": {"image": blob}} if method == "Drive" else {}
    payload = pack(envelope(method, rid, body) if body
                   else {**envelope(method, rid, {}), "token": blob.decode()})
    return Case(index, "envelope", method, f"{len(payload)} bytes, over max_message_bytes",
                [("send", [payload])])


# -- local replicas of how the servers read a request (used for the cost guard) ---------------------
def grpc_parse(case: Case) -> tuple[Any, list]:
    cls = REQUESTS[case.method]
    parsed = []
    for data in case.messages:
        try:
            parsed.append(cls.FromString(data))
        except Exception:  # noqa: BLE001
            parsed.append(None)
    return (parsed[0] if parsed else None), [p for p in parsed[1:] if p is not None]


def zmq_parse(parts: list) -> tuple[str | None, Any]:
    """(kind, request message) as the ZeroMQ server would read this message, or (None, None)."""
    if len(parts) == 2 and parts[0] == b"":
        parts = parts[1:]
    if len(parts) != 1:
        return None, None
    try:
        env = codec.unpack(parts[0])
        if not isinstance(env, dict) or set(map(str, env)) - {"kind", "request_id", "token", "body"}:
            return None, None
        kind = env.get("kind")
        if kind not in REQUESTS:
            return None, None
        return kind, codec.from_dict(REQUESTS[kind], env.get("body") or {})
    except Exception:  # noqa: BLE001
        return None, None


def zmq_reply_id(parts: list):
    """The request_id the server echoes for this message (None when it cannot read one)."""
    if len(parts) == 2 and parts[0] == b"":
        parts = parts[1:]
    if len(parts) != 1:
        return None
    try:
        env = codec.unpack(parts[0])
    except Exception:  # noqa: BLE001
        return None
    rid = env.get("request_id") if isinstance(env, dict) else None
    return rid if isinstance(rid, (int, str)) and not isinstance(rid, bool) else None


def affordable_case(case: Case, transport: str, corpus: Corpus, service, budget: Budget) -> bool:
    if transport == "grpc":
        first, rest = grpc_parse(case)
        if first is None:
            return True
        return affordable(case.method, first, rest, corpus, service, budget)
    parsed = [zmq_parse(parts) for _, parts in case.messages]
    frames = [msg for kind, msg in parsed[1:] if kind == "Drive" and msg is not None]
    for position, (kind, msg) in enumerate(parsed):
        if kind is None or msg is None:
            continue
        if not affordable(kind, msg, frames if position == 0 else [], corpus, service, budget):
            return False
    return True


# -- running cases -------------------------------------------------------------------------------
@dataclass
class Tally:
    transport: str
    cases: Counter = field(default_factory=Counter)       # per category
    methods: Counter = field(default_factory=Counter)
    codes: Counter = field(default_factory=Counter)       # final status per call
    frame_errors: Counter = field(default_factory=Counter)
    messages: int = 0
    fuzzed: int = 0
    late: int = 0
    findings: list = field(default_factory=list)
    seconds: Counter = field(default_factory=Counter)    # time spent per category/method
    slowest: list = field(default_factory=list)          # (seconds, case) of the slowest cases

    def finding(self, case: Case | None, problem: str) -> None:
        if len(self.findings) < 200:
            where = (f"case {case.index} [{case.category} {case.method}: {case.what}]"
                     if case is not None else "after the last case")
            sent = f"\n      sent: {case.preview()}" if case is not None else ""
            self.findings.append(f"{where}: {problem}{sent}")

    def check_code(self, case: Case | None, code: str, message: str, frame: bool = False) -> None:
        (self.frame_errors if frame else self.codes)[code] += 1
        if code not in EXPECTED_CODES:
            self.finding(case, f"{'FrameError ' if frame else ''}{code}: {message[:300]}")


class GrpcFuzzer:
    def __init__(self, address: str, tally: Tally):
        self.tally = tally
        self.channel = grpc.insecure_channel(address.split("://", 1)[1], options=[
            ("grpc.max_receive_message_length", 16 * MiB), ("grpc.max_send_message_length", 16 * MiB)])
        self._calls: dict[str, Any] = {}

    def close(self) -> None:
        self.channel.close()

    def _call(self, path: str, method: str):
        key = (path, method)
        if key not in self._calls:
            kind = ("stream" if method in STREAMING_IN else "unary") + "_" + \
                ("stream" if method in STREAMING_OUT else "unary")
            self._calls[key] = getattr(self.channel, kind)(path)
        return self._calls[key]

    def run(self, case: Case) -> None:
        tally = self.tally
        tally.messages += max(1, len(case.messages))
        call = self._call(case.path or SERVICE + case.method, case.method)
        responses = []
        try:
            request = iter(case.messages) if case.method in STREAMING_IN else case.messages[0]
            if case.method in STREAMING_OUT:
                for data in call(request, timeout=CALL_TIMEOUT_S):
                    responses.append(data)
            else:
                responses.append(call(request, timeout=CALL_TIMEOUT_S))
            code, details = "OK", ""
        except grpc.RpcError as error:
            code, details = error.code().name, error.details() or ""
        if code == "DEADLINE_EXCEEDED" and details == "Deadline Exceeded":
            tally.finding(case, f"no answer within {CALL_TIMEOUT_S:g} s (client deadline)")
        elif code == "UNIMPLEMENTED" and case.path:
            tally.codes[code] += 1  # an unknown method
        elif code != "OK":
            tally.check_code(case, code, details)
        else:
            tally.codes[code] += 1
        self._check_responses(case, responses, code, details)

    def _check_responses(self, case: Case, responses: list, code: str, details: str) -> None:
        cls = RESPONSES[case.method]
        kinds = []
        for data in responses:
            try:
                message = cls.FromString(data)
            except Exception as exc:  # noqa: BLE001
                self.tally.finding(case, f"unparsable {cls.DESCRIPTOR.name} reply: {exc}")
                continue
            if case.method == "Drive":
                kinds.append(message.WhichOneof("kind"))
                if message.HasField("error"):
                    self.tally.check_code(case, message.error.code, message.error.message, frame=True)
        if case.method != "Drive":
            return
        if code == "OK" and (not kinds or kinds[0] != "header" or kinds[-1] != "status"):
            self.tally.finding(case, f"Drive ended OK with replies {kinds}")
        # Once started, a session ends with its status: bad frames are per-frame errors, and
        # the fatal causes (caps, idle, shutdown) do not arise here; only a message over the
        # size cap is refused by gRPC itself.
        if kinds and code in EXPECTED_CODES - {"RESOURCE_EXHAUSTED"}:  # (others are reported above)
            self.tally.finding(case, f"a started Drive session was ended with {code} ({details[:150]}) "
                                     f"after {kinds}")


class ZmqFuzzer:
    def __init__(self, endpoint: str, tally: Tally):
        self.endpoint = endpoint
        self.tally = tally
        self.sock = None
        self._open()

    def _open(self) -> None:
        if self.sock is not None:
            self.sock.close(linger=0)
        self.sock = zmq.Context.instance().socket(zmq.DEALER)
        self.sock.setsockopt(zmq.LINGER, 0)
        self.sock.setsockopt(zmq.RCVHWM, 0)
        self.sock.setsockopt(zmq.SNDHWM, 0)
        self.sock.connect(self.endpoint)

    def close(self) -> None:
        self.sock.close(linger=0)

    def _recv(self, case: Case | None, timeout_s: float) -> dict | None:
        if not self.sock.poll(int(timeout_s * 1000)):
            return None
        frames = self.sock.recv_multipart()
        try:
            reply = msgpack.unpackb(frames[-1], raw=False, strict_map_key=False)
        except Exception as exc:  # noqa: BLE001
            self.tally.finding(case, f"unparsable reply {frames[-1][:100]!r}: {exc}")
            return {}
        self._check(case, reply)
        return reply

    def _check(self, case: Case | None, reply) -> None:
        tally = self.tally
        if not isinstance(reply, dict) or not isinstance(reply.get("last"), bool) \
                or ("error" in reply) == ("body" in reply) or set(reply) - {"kind", "request_id", "body",
                                                                           "error", "last"}:
            tally.finding(case, f"malformed reply {short(reply, 200)}")
            return
        if "error" in reply:
            error = reply["error"]
            if not (isinstance(error, dict) and isinstance(error.get("code"), str)
                    and isinstance(error.get("message"), str)):
                tally.finding(case, f"malformed error {short(error, 200)}")
                return
            if reply["last"] is not True:
                tally.finding(case, f"error reply not marked last: {short(reply, 200)}")
            tally.check_code(case, error["code"], error["message"])
            return
        body = reply["body"]
        if reply.get("kind") == "Drive" and isinstance(body, dict) and isinstance(body.get("error"), dict):
            error = body["error"]
            tally.check_code(case, str(error.get("code")), str(error.get("message")), frame=True)
        elif reply["last"]:
            tally.codes["OK"] += 1

    def _end(self, request_id) -> None:
        self.sock.send(pack(envelope("Drive", request_id, {"end": {}})))
        self.tally.messages += 1

    def drain(self, case: Case | None = None, quiet_s: float = 0.0) -> None:
        """Check replies that arrive after their case was done (counted as late)."""
        while True:
            reply = self._recv(case, quiet_s)
            if reply is None:
                return
            self.tally.late += 1
            if isinstance(reply, dict) and _is_drive_started(reply):
                self._end(reply.get("request_id"))

    def run(self, case: Case) -> None:
        """Send the case; wait until every message that must be answered has its final reply.

        Every message gets exactly one `last: true` reply under the request_id the server
        reads from it, except messages sent into the Drive session the case opened (their
        session's final reply stands for them). A Drive session opened by accident is ended.
        """
        self.drain(case)
        expected: Counter = Counter()
        steps = list(case.messages)
        session_open = False
        if steps and any(step == "session" for step, _ in steps):
            step, parts = steps.pop(0)  # the header: wait for its first reply
            rid = zmq_reply_id(parts)
            self.sock.send_multipart(parts)
            self.tally.messages += 1
            expected[rid] += 1
            first = self._await(case, expected, until_first_of=rid)
            if first is None:
                return
            session_open = _is_drive_started(first)
            if not session_open:
                steps = [(s, p) for s, p in steps if s != "session"]  # nothing to send them to
        for step, parts in steps:
            self.sock.send_multipart(parts)
            self.tally.messages += 1
            if not (step == "session" and session_open):
                expected[zmq_reply_id(parts)] += 1
        finals: dict = {}
        self._await(case, expected, finals=finals)
        if session_open:
            # Once started, a session ends with its status: bad frames are per-frame errors
            # (unless the case itself ended the session early: what follows is then refused
            # under the session's request_id).
            sent = [zmq_parse(parts)[1] for step, parts in steps if step == "session"]
            ended_early = any(msg is not None and msg.WhichOneof("kind") == "end" for msg in sent[:-1])
            final = finals.get(rid) or {}
            error = final.get("error") or {}
            if not ended_early and error.get("code") in EXPECTED_CODES - {"RESOURCE_EXHAUSTED"}:
                self.tally.finding(case, f"a started Drive session was ended with {error.get('code')} "
                                         f"({str(error.get('message'))[:150]})")

    def _await(self, case: Case, expected: Counter, until_first_of=object(),
               finals: dict | None = None) -> dict | None:
        """Read until every expected final reply came (`finals`: the first one per request_id)."""
        deadline = time.monotonic() + CALL_TIMEOUT_S
        while +expected:
            reply = self._recv(case, max(0.0, deadline - time.monotonic()))
            if reply is None:
                waiting = {k: v for k, v in expected.items() if v}
                self.tally.finding(case, f"no final reply within {CALL_TIMEOUT_S:g} s for request ids "
                                         f"{waiting}")
                self._open()
                return None
            if not isinstance(reply, dict):
                continue
            rid = reply.get("request_id")
            try:
                known = expected[rid] > 0
            except TypeError:
                known = False
            if not known:
                self.tally.late += 1
                if _is_drive_started(reply):
                    self._end(rid)
                continue
            if reply.get("last") is True:
                expected[rid] -= 1
                if finals is not None:
                    finals.setdefault(rid, reply)
            if rid == until_first_of:
                return reply
            if _is_drive_started(reply):
                self._end(rid)  # a session the case did not mean to open
        return {}


def _is_drive_started(reply: dict) -> bool:
    body = reply.get("body")
    return reply.get("kind") == "Drive" and isinstance(body, dict) and "header" in body \
        and reply.get("last") is False


# -- the tests --------------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def servers(service):
    with running_servers(service, LIMITS) as running:
        yield running


@pytest.fixture(scope="module")
def corpus(service, astronaut_id) -> Corpus:
    # A solve with the avatar waits for its measured response (~5-20 s after creation):
    # wait once here so no call of the fuzz run waits for it.
    service.calibration.get(astronaut_id)
    return Corpus.build(astronaut_id, [a["id"] for a in service.list()])


def test_wire_encoder_agrees_with_protobuf(corpus):
    """The gRPC side's encoder writes valid requests exactly as protobuf reads them (so its
    field mutations land in the fields they name)."""
    rng = random.Random(SEED)
    for method in METHODS * 40:
        request = valid_request(rng, corpus, method)
        data = encode_message(request.DESCRIPTOR, codec.to_dict(request))
        assert type(request).FromString(data) == request, method


def generate(rng, transport: str, corpus: Corpus, service, budget: Budget, index: int, ids) -> Case:
    """The next case that is affordable to run (deterministic for a seed)."""
    step = max(1, CASES // len(OVERSIZED))
    if index % step == step // 2 and index // step < len(OVERSIZED):
        method = OVERSIZED[index // step]
        return (oversized_grpc(rng, corpus, index, method) if transport == "grpc"
                else oversized_zmq(rng, index, next(ids), method))
    for _ in range(50):
        case = grpc_case(rng, corpus, index) if transport == "grpc" else zmq_case(rng, corpus, index, ids)
        if affordable_case(case, transport, corpus, service, budget):
            return case
        budget.skipped += 1
    raise AssertionError("could not generate an affordable case in 50 tries")


@pytest.mark.parametrize("transport", TRANSPORTS)
def test_fuzz_never_internal_and_the_server_keeps_answering(servers, corpus, service, transport,
                                                            caplog, capsys):
    caplog.set_level(logging.WARNING)
    rng = random.Random(f"{SEED}:{transport}")
    ids = iter(range(1_000_000, 10**12))
    budget = Budget()
    tally = Tally(transport)
    fuzzer = GrpcFuzzer(servers.grpc_address, tally) if transport == "grpc" \
        else ZmqFuzzer(servers.zmq_address, tally)
    started = time.monotonic()
    done = 0
    try:
        for index in range(CASES):
            if time.monotonic() - started > TIME_LIMIT_S:
                break
            case = generate(rng, transport, corpus, service, budget, index, ids)
            tally.cases[case.category] += 1
            tally.methods[case.method] += 1
            tally.fuzzed += case.fuzzed
            t0 = time.perf_counter()
            fuzzer.run(case)
            took = time.perf_counter() - t0
            tally.seconds[f"{case.category}/{case.method}"] += took
            tally.slowest = sorted([*tally.slowest, (took, index, f"{case.category} {case.method}: "
                                    f"{case.what[:80]}")], reverse=True)[:3]
            done += 1
        if transport == "zmq":
            fuzzer.drain(None, quiet_s=0.5)
    finally:
        fuzzer.close()
    elapsed = time.monotonic() - started
    with capsys.disabled():
        print(f"\n[bridge fuzz] {transport}: seed {SEED} (BRIDGE_FUZZ_SEED), {done} cases "
              f"({tally.fuzzed} malformed messages, {tally.messages} sent) in {elapsed:.1f} s = "
              f"{done / elapsed:.0f} cases/s, {tally.messages / elapsed:.0f} messages/s; "
              f"{RENDER_BUDGET - budget.renders} renders, {EXPORT_BUDGET - budget.exports} exports, "
              f"{budget.skipped} costly cases redrawn, {tally.late} late replies\n"
              f"  categories {dict(tally.cases)}\n  methods {dict(tally.methods)}\n"
              f"  seconds per kind {[(k, round(v, 1)) for k, v in tally.seconds.most_common(6)]}\n"
              f"  slowest cases {[(round(t, 2), i, what) for t, i, what in tally.slowest]}\n"
              f"  final codes {dict(tally.codes)}\n  Drive FrameErrors {dict(tally.frame_errors)}")

    problems = still_answering(servers, transport, corpus) + tally.findings
    if done < CASES:
        problems.append(f"only {done} of {CASES} cases ran within {TIME_LIMIT_S:g} s")
    errors = [r for r in caplog.records if r.levelno >= logging.ERROR]
    if errors:
        causes = Counter(f"{r.name}: {r.getMessage()[:100]}" + (
            f": {type(r.exc_info[1]).__name__}: {str(r.exc_info[1]).strip()[-160:]}" if r.exc_info else "")
            for r in errors)
        problems.append(f"{len(errors)} ERROR log records:\n    "
                        + "\n    ".join(f"{n}x {cause}" for cause, n in causes.most_common(10)))
    assert not problems, (f"{len(problems)} problems (BRIDGE_FUZZ_SEED={SEED}, {transport}):\n  "
                          + "\n  ".join(problems[:20]))


def still_answering(servers, transport: str, corpus: Corpus) -> list[str]:
    """What is wrong with the server after the fuzz: Health, ListAvatars (nothing made or
    lost), a real RenderFrame and Drive of the astronaut, no Drive session left open."""
    problems = []
    checks = {
        "Health": lambda c: c.health() == "SERVING",
        "ListAvatars": lambda c: {a["id"] for a in c.list_avatars()} == set(corpus.known),
        "RenderFrame": lambda c: _rendered(c.render(corpus.astronaut, camera=pb.Camera(width=64, height=64))),
        "Drive": lambda c: [f.sequence for f in c.drive(
            corpus.astronaut, [pb.MotionFrame(sequence=s, arkit=[0.5] * 52) for s in (1, 2, 3)],
            pb.Camera(width=32, height=32))] == [1, 2, 3],
    }
    with servers.client(transport) as client:
        for name, check in checks.items():
            try:
                if not check(client):
                    problems.append(f"after the fuzz, {name} answers wrongly")
            except Exception as exc:  # noqa: BLE001
                problems.append(f"after the fuzz, {name} fails: {exc!r}"[:300])
    deadline = time.monotonic() + LIMITS.idle_timeout_s + 5
    while servers.handlers.sessions.active and time.monotonic() < deadline:
        time.sleep(0.05)
    if servers.handlers.sessions.active:
        problems.append(f"{servers.handlers.sessions.active} Drive sessions left open after the fuzz")
    return problems


def _rendered(frame) -> bool:
    return frame.rgba.shape == (64, 64, 4) and frame.rgba[..., 3].max() == 255


@pytest.mark.parametrize("transport", TRANSPORTS)
def test_collapsed_landmarks_are_refused_not_internal(servers, corpus, transport):
    """Found by the fuzz: landmarks (nearly) on one point made OpenCV's pose solver assert."""
    from engine_bridge.client import BridgeError

    face = valid_landmarks(random.Random(SEED))
    tiny = [value if i % 3 == 2 else 256 + (value - 256) * 0.05 for i, value in enumerate(face.xyz)]
    with servers.client(transport) as client:
        for xyz in ([100.0] * (478 * 3), tiny):
            motion = pb.MotionFrame(landmarks=pb.Landmarks(xyz=xyz, width=512, height=512))
            with pytest.raises(BridgeError) as info:
                client.render(corpus.astronaut, motion=motion, camera=pb.Camera(width=16, height=16))
            assert info.value.code == "INVALID_ARGUMENT" and "too close together" in info.value.message
        rendered = client.render(corpus.astronaut, motion=pb.MotionFrame(landmarks=face),
                                 camera=pb.Camera(width=16, height=16))
        assert rendered.rgba.shape == (16, 16, 4)


@pytest.mark.parametrize("intruder", ["unknown envelope key", "frame after end"])
def test_zmq_drive_session_replies_end_with_one_last(servers, corpus, intruder):
    sock = zmq.Context.instance().socket(zmq.DEALER)
    sock.setsockopt(zmq.LINGER, 0)
    sock.connect(servers.zmq_address)
    rid = 4242 if intruder == "frame after end" else 4243
    header = {"header": {"avatar_id": corpus.astronaut, "camera": {"width": 16, "height": 16}}}
    sock.send(pack(envelope("Drive", rid, header)))
    if intruder == "unknown envelope key":
        sock.send(pack({**envelope("Drive", rid, {"frame": {"sequence": 1}}), "colour": 1}))
        sock.send(pack(envelope("Drive", rid, {"frame": {"sequence": 2}})))
        sock.send(pack(envelope("Drive", rid, {"end": {}})))
    else:
        sock.send(pack(envelope("Drive", rid, {"frame": {"sequence": 1}})))
        sock.send(pack(envelope("Drive", rid, {"end": {}})))
        sock.send(pack(envelope("Drive", rid, {"frame": {"sequence": 2}})))
    got = []
    while sock.poll(1500):
        got.append(msgpack.unpackb(sock.recv_multipart()[-1], raw=False))
    sock.close()
    lasts = [r for r in got if r.get("last")]
    assert len(lasts) == 1 and got[-1] is lasts[0] and "status" in got[-1].get("body", {}), got
