"""Live Link Face UDP: the packet codec, packets in -> drive frames, drive frames -> packets out.

All traffic is on 127.0.0.1. Values must survive to float32 precision: ARKit weights exactly,
angles through the runtime's quaternion to ~1e-6 rad.

Our packets are read by two decoders that share no code with ours: the `pylivelinkface` package
(PyPI; it reads the device id as a fixed 37 bytes, "$" + UUID) and `_unreal_decode` below, written
from the layout of Unreal's Live Link Face receiver (AppleARKitLiveLinkSource.cpp, packet version
6, read with FNboSerializeFromBuffer: network byte order, FString = int32 byte count + UTF-8,
FQualifiedFrameTime = int32 frame + float sub-frame + int32 numerator + int32 denominator).
"""

from __future__ import annotations

import hashlib
import queue
import socket
import struct
import subprocess
import sys
import threading
import time
from pathlib import Path

import numpy as np
import pytest

from hypothesis import given, settings
from hypothesis import strategies as st
from pylivelinkface import FaceBlendShape, PyLiveLinkFace

from avatar_runtime.errors import InvalidArgument
from avatar_runtime.motion.frame import MotionFrame
from avatar_runtime.motion.livelink_udp import (MAX_SUBJECT_BYTES, NUM_VALUES, decode_packet, encode_frame,
                                                encode_packet, new_device_id, packet_to_frame)
from avatar_runtime.motion.pose import euler_to_quat, quat_to_euler
from avatar_runtime.render.camera import Camera
from engine_bridge.cli import build_parser
from engine_bridge.client import connect
from engine_bridge.livelink import DEVICE_ID_FILE, LiveLinkReceiver, LiveLinkSender, parse_udp, runtime_device_id

from bridge_support import running_servers

CAMERA = Camera.orbit(width=64, height=64)
ANGLE_ATOL = 2e-6  # float32 angles through a float32 quaternion
DEVICE = "3F2504E0-4F89-41D3-9A0C-0305E82C3301"

# Unreal's receive buffer and minimum (AppleARKitLiveLinkSource.cpp): version + frame time + count
# + 61 floats, plus 256 TCHARs (2 bytes) per name at most, one TCHAR per name at least.
_UE_FIXED = 1 + 16 + 1 + 61 * 4
UE_MAX_PACKET = _UE_FIXED + 2 * 256 * 2
UE_MIN_PACKET = _UE_FIXED + 2 * 2


class _NboReader:
    """FNboSerializeFromBuffer's reading rules: big-endian, a sticky overflow flag, strings whose
    length must be 0..bytes left."""

    def __init__(self, data: bytes):
        self.data, self.offset, self.overflow = data, 0, False

    def take(self, fmt: str):
        size = struct.calcsize(fmt)
        if self.overflow or self.offset + size > len(self.data):
            self.overflow = True
            return None
        (value,) = struct.unpack_from(fmt, self.data, self.offset)
        self.offset += size
        return value

    def fstring(self) -> str | None:
        length = self.take(">i")
        if self.overflow or not 0 <= length <= len(self.data) - self.offset:
            self.overflow = True
            return None
        text = self.data[self.offset:self.offset + length].decode("utf-8")
        self.offset += length
        return text


def _unreal_decode(data: bytes) -> dict | None:
    """What Unreal's Live Link Face listener takes from one datagram, or None where it drops it."""
    if not UE_MIN_PACKET < len(data) <= UE_MAX_PACKET:  # RecvFrom into a MAX-sized buffer
        return None
    reader = _NboReader(data)
    if reader.take(">B") != 6 or reader.overflow:
        return None
    packet = {"device_id": reader.fstring(), "subject": reader.fstring(),
              "frame": reader.take(">i"), "subframe": reader.take(">f"),
              "rate": (reader.take(">i"), reader.take(">i"))}
    if reader.overflow or reader.take(">B") != 61:
        return None
    packet["values"] = np.array([reader.take(">f") for _ in range(61)], np.float32)
    return None if reader.overflow else packet


def _app_packet(values, subject: str, device_id: str, frame: int, subframe: float, rate) -> bytes:
    """A datagram as the app's publisher writes it (FNboSerializeToBuffer, field by field)."""
    out = [struct.pack(">B", 6)]
    for text in (device_id, subject):
        raw = text.encode("utf-8")
        out += [struct.pack(">i", len(raw)), raw]
    out += [struct.pack(">i", frame), struct.pack(">f", subframe), struct.pack(">i", rate[0]),
            struct.pack(">i", rate[1]), struct.pack(">B", 61)]
    out += [struct.pack(">f", float(v)) for v in values]
    return b"".join(out)


def _assert_peers_decode(data: bytes, values, subject: str, device_id: str, frame: int, rate) -> None:
    """Both independent decoders read `data` exactly: ids, names, frame time, all 61 values."""
    unreal = _unreal_decode(data)
    assert unreal is not None, f"Unreal's listener would drop this {len(data)}-byte packet"
    assert (unreal["device_id"], unreal["subject"], unreal["frame"], unreal["rate"]) == \
        (device_id, subject, frame, tuple(rate))
    np.testing.assert_array_equal(unreal["values"], np.asarray(values, np.float32))
    found, face = PyLiveLinkFace.decode(data)
    assert found
    assert face.uuid == "$" + device_id and face.name == subject
    assert (face._frames, face.fps, face._denominator) == (frame, rate[0], rate[1])
    shapes = np.array([face.get_blendshape(shape) for shape in FaceBlendShape], np.float32)
    assert shapes.shape == (61,)
    np.testing.assert_array_equal(shapes, np.asarray(values, np.float32))


def _values(rng: np.random.Generator, eye_roll: bool = True) -> np.ndarray:
    """61 wire values: weights in [0, 1], head and eye angles within +-0.5 rad."""
    values = np.concatenate([rng.uniform(0, 1, 52), rng.uniform(-0.5, 0.5, 9)]).astype(np.float32)
    if not eye_roll:
        values[[57, 60]] = 0.0
    return values


def _udp_socket() -> tuple[socket.socket, int]:
    sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    sock.bind(("127.0.0.1", 0))
    sock.settimeout(30)
    return sock, sock.getsockname()[1]


def _assert_matches(motion: MotionFrame, values: np.ndarray) -> None:
    """A runtime MotionFrame carries the 61 wire values (eye roll is not modelled)."""
    np.testing.assert_array_equal(motion.arkit, values[:52])
    np.testing.assert_allclose(quat_to_euler(motion.head_rotation), values[52:55], atol=ANGLE_ATOL)
    np.testing.assert_array_equal(motion.eye_gaze, values[[55, 56, 58, 59]])


# -- codec ----------------------------------------------------------------------------------
def test_packet_round_trip_is_exact_in_float32():
    values = _values(np.random.default_rng(0))
    data = encode_packet(values, "Avatar", DEVICE, frame_number=1234, subframe=0.25, rate=(30000, 1001))
    assert data[0] == 6 and data[1:5] == struct.pack(">i", 36) and data[5:41] == DEVICE.encode()
    assert len(data) == 1 + 4 + 36 + 4 + 6 + 16 + 1 + 61 * 4
    packet = decode_packet(data)
    assert (packet.device_id, packet.subject, packet.frame_number) == (DEVICE, "Avatar", 1234)
    assert packet.subframe == 0.25 and packet.rate == (30000, 1001)
    assert packet.seconds == pytest.approx(1234.25 * 1001 / 30000)
    np.testing.assert_array_equal(packet.values, values)
    assert packet.values.dtype == np.float32


def test_motion_frame_round_trip():
    values = _values(np.random.default_rng(1), eye_roll=False)
    frame = packet_to_frame(decode_packet(encode_packet(values, "s", DEVICE, frame_number=90)), sequence=4)
    _assert_matches(frame, values)
    assert frame.sequence == 4 and frame.timecode == pytest.approx(1.5)
    again = decode_packet(encode_frame(frame, "s", DEVICE))
    np.testing.assert_array_equal(again.values[:52], values[:52])
    np.testing.assert_allclose(again.values[52:], values[52:], atol=ANGLE_ATOL)
    assert again.seconds == pytest.approx(1.5)


@pytest.mark.parametrize("mutate, message", [
    (lambda d: d[:1], "ends before"),
    (lambda d: b"\x05" + d[1:], "version 5"),
    (lambda d: d[:-4], "bytes after the names"),
    (lambda d: d + b"\0", "bytes after the names"),
    (lambda d: d[:1] + struct.pack(">i", 10**6) + d[5:], "bad device id length"),
    (lambda d: d[:-245] + b"\x3c" + d[-244:], "declares 60 values"),
])
def test_malformed_packets_are_rejected(mutate, message):
    data = encode_packet(np.zeros(NUM_VALUES), "s", DEVICE)
    with pytest.raises(InvalidArgument, match=message):
        decode_packet(mutate(data))


def test_out_of_range_weights_are_clipped_not_fatal():
    values = np.zeros(NUM_VALUES, np.float32)
    values[0], values[1], values[2] = 1.2, -0.3, np.nan
    frame = packet_to_frame(decode_packet(encode_packet(values, "s", DEVICE)))
    assert frame.arkit[:3].tolist() == [1.0, 0.0, 0.0]


# -- what peers of the app read ---------------------------------------------------------------
@settings(max_examples=200, deadline=None)
@given(seed=st.integers(0, 2**32 - 1),
       subject=st.text(st.characters(blacklist_categories=("Cs",)), min_size=1, max_size=40)
       .filter(lambda t: len(t.encode()) <= MAX_SUBJECT_BYTES),
       frame=st.integers(0, 2**31 - 1), fps=st.sampled_from([24, 25, 30, 50, 60]))
def test_independent_decoders_read_our_packets_exactly(seed, subject, frame, fps):
    values = _values(np.random.default_rng(seed))
    device_id = new_device_id()
    data = encode_packet(values, subject, device_id, frame_number=frame, subframe=0.5, rate=(fps, 1))
    _assert_peers_decode(data, values, subject, device_id, frame, (fps, 1))


def test_a_subject_at_the_limit_still_fits_unreals_buffer():
    subject = "\u00e9" * (MAX_SUBJECT_BYTES // 2)  # two UTF-8 bytes each
    values = _values(np.random.default_rng(5))
    data = encode_packet(values, subject, DEVICE)
    assert len(data) <= UE_MAX_PACKET
    _assert_peers_decode(data, values, subject, DEVICE, 0, (60, 1))
    with pytest.raises(InvalidArgument, match="1..255 UTF-8 bytes"):
        encode_packet(values, subject + "\u00e9", DEVICE)  # 256 bytes
    with pytest.raises(InvalidArgument, match="1..255 UTF-8 bytes"):
        encode_packet(values, "", DEVICE)


@pytest.mark.parametrize("device_id", ["avatar-runtime", DEVICE[:-1], DEVICE + "0", DEVICE.replace("-", "")])
def test_device_ids_that_are_not_uuids_are_refused(device_id):
    with pytest.raises(InvalidArgument, match="36-character UUID"):
        encode_packet(np.zeros(NUM_VALUES), "s", device_id)


def test_app_packets_round_trip_byte_for_byte():
    """Packets laid out as the app writes them decode to their fields and re-encode identically."""
    rng = np.random.default_rng(6)
    for i, rate in enumerate([(60, 1), (30, 1), (30000, 1001), (24, 1)]):
        values = _values(rng)
        app = _app_packet(values, "iPhone", DEVICE, 216000 + i, 0.375, rate)
        packet = decode_packet(app)
        assert (packet.device_id, packet.subject, packet.frame_number, packet.subframe, packet.rate) == \
            (DEVICE, "iPhone", 216000 + i, 0.375, rate)
        np.testing.assert_array_equal(packet.values, values)
        again = encode_packet(packet.values, packet.subject, packet.device_id, packet.frame_number,
                              packet.subframe, packet.rate)
        assert again == app


def test_pylivelinkface_sender_packets_round_trip():
    """The peer package's own encoder (the app's layout when its id is a UUID) -> ours -> same bytes."""
    rng = np.random.default_rng(7)
    face = PyLiveLinkFace(name="Phone", uuid=DEVICE, fps=60)
    values = _values(rng)
    for shape, value in zip(FaceBlendShape, values.tolist()):
        face.set_blendshape(shape, value, no_filter=True)
    data = face.encode()
    packet = decode_packet(data)
    assert (packet.device_id, packet.subject, packet.rate) == (DEVICE, "Phone", (60, 1))
    np.testing.assert_array_equal(packet.values, values)
    assert encode_packet(packet.values, packet.subject, packet.device_id, packet.frame_number,
                         packet.subframe, packet.rate) == data


# -- the runtime's device id ------------------------------------------------------------------
def test_runtime_device_id_is_made_once_per_data_dir(tmp_path):
    first = runtime_device_id(tmp_path / "a")
    assert len(first) == 36 and first == first.upper()
    assert (tmp_path / "a" / DEVICE_ID_FILE).read_text().strip() == first
    assert runtime_device_id(tmp_path / "a") == first  # a restart keeps it
    assert runtime_device_id(tmp_path / "b") != first
    (tmp_path / "a" / DEVICE_ID_FILE).write_text("not a uuid\n")
    replaced = runtime_device_id(tmp_path / "a")
    assert replaced != first and runtime_device_id(tmp_path / "a") == replaced


def test_serve_refuses_a_device_id_that_is_not_a_uuid(capsys):
    parser = build_parser()
    args = parser.parse_args(["serve", "--livelink-device-id", DEVICE.lower()])
    assert args.livelink_device_id == DEVICE.lower()
    with pytest.raises(SystemExit):
        parser.parse_args(["serve", "--livelink-device-id", "avatar-runtime"])
    assert "36-character UUID" in capsys.readouterr().err


def test_parse_udp():
    assert parse_udp("udp://127.0.0.1:9000") == ("127.0.0.1", 9000)
    assert parse_udp("127.0.0.1") == ("127.0.0.1", 11111)
    with pytest.raises(InvalidArgument):
        parse_udp("tcp://127.0.0.1:1")


# -- through a running runtime ----------------------------------------------------------------
def _consume(stream, frames: queue.Queue) -> None:
    for frame in stream:
        frames.put(frame)


def test_udp_packets_drive_a_session(service, astronaut_id):
    rng = np.random.default_rng(2)
    with running_servers(service) as servers:
        handlers = servers.handlers
        rendered: queue.Queue = queue.Queue()
        handlers.add_frame_tap(lambda avatar, motion: rendered.put((avatar, motion)))
        receiver = LiveLinkReceiver("udp://127.0.0.1:0",
                                    lambda subject, motion: handlers.feed_motion(astronaut_id, motion))
        receiver.start()
        done = threading.Event()

        def no_frames():  # the client sends nothing: the motion comes from Live Link
            done.wait(60)
            yield from ()

        out, (_, port) = socket.socket(socket.AF_INET, socket.SOCK_DGRAM), parse_udp(receiver.address)
        try:
            with servers.client("zmq") as client:
                stream = client.drive(astronaut_id, no_frames(), CAMERA, window=None)
                frames: queue.Queue = queue.Queue()
                consumer = threading.Thread(target=_consume, args=(stream, frames), daemon=True)
                consumer.start()
                deadline = time.monotonic() + 30
                while stream.started is None:
                    assert time.monotonic() < deadline, "the drive session did not start"
                    time.sleep(0.01)
                for i in range(6):
                    values = _values(rng, eye_roll=False)
                    out.sendto(encode_packet(values, "iPhone", DEVICE, frame_number=120 + i, rate=(60, 1)),
                               ("127.0.0.1", port))
                    avatar, motion = rendered.get(timeout=30)  # wait: one packet per render
                    assert avatar == astronaut_id
                    _assert_matches(motion, values)
                    frame = frames.get(timeout=30)
                    assert frame.sequence == i and frame.timecode == pytest.approx((120 + i) / 60)
                    assert frame.rgba.shape == (64, 64, 4) and frame.rgba[..., 3].any()
                done.set()
                consumer.join(30)
                assert stream.status["frames_received"] == 6 and stream.status["frames_rendered"] == 6
        finally:
            done.set()
            out.close()
            receiver.stop()
    assert receiver.received == 6


def test_drive_frames_are_sent_as_packets(service, astronaut_id):
    """Every packet a drive session sends decodes exactly, in ours and in both peers' decoders."""
    rng = np.random.default_rng(3)
    sock, port = _udp_socket()
    sender = LiveLinkSender(f"udp://127.0.0.1:{port}", DEVICE,
                            name_of=lambda avatar_id: service.get(avatar_id)["name"])
    sent = []
    for i in range(60):
        values = _values(rng, eye_roll=False)
        sent.append((values, MotionFrame(values[:52], euler_to_quat(values[52:55]),
                                         eye_gaze=values[[55, 56, 58, 59]], sequence=i, timecode=i / 30)))
    try:
        with running_servers(service) as servers:
            servers.handlers.add_frame_tap(sender.send)
            with servers.client("zmq") as client:
                assert len(list(client.drive(astronaut_id, [f for _, f in sent], CAMERA, window=1))) == 60
        for values, frame in sent:
            data = sock.recv(65535)
            packet = decode_packet(data)
            assert packet.subject == "astronaut" and packet.device_id == DEVICE
            assert packet.seconds == pytest.approx(frame.timecode, abs=1e-6)
            np.testing.assert_array_equal(packet.values[:52], values[:52])
            np.testing.assert_allclose(packet.values[52:], values[52:], atol=ANGLE_ATOL)
            _assert_peers_decode(data, packet.values, "astronaut", DEVICE, packet.frame_number, (60, 1))
    finally:
        sender.close()
        sock.close()


def test_serve_flags_end_to_end(tmp_path, astronaut_png):
    """`serve --livelink-in ... --livelink-avatar ID --livelink-out ...` as a real process: the
    subject is the avatar's name, the device id the one kept in the data dir."""
    avatar_id = hashlib.sha256(b"fit\0" + astronaut_png).hexdigest()[:16]  # the service's id rule
    listener, out_port = _udp_socket()
    args = [sys.executable, "-m", "engine_bridge.cli", "serve", "--grpc", "none",
            "--zmq", "tcp://127.0.0.1:0", "--data-dir", str(tmp_path), "--grace", "1",
            "--livelink-out", f"udp://127.0.0.1:{out_port}",
            "--livelink-in", "udp://127.0.0.1:0", "--livelink-avatar", avatar_id]
    proc = subprocess.Popen(args, cwd=Path(__file__).resolve().parents[1], stdout=subprocess.PIPE,
                            stderr=subprocess.DEVNULL, text=True)
    try:
        bound = dict(part.split("=", 1) for part in proc.stdout.readline().split())
        assert bound["livelink_out"] == f"udp://127.0.0.1:{out_port}"
        in_port = parse_udp(bound["livelink_in"])[1]
        with connect(bound["zmq"]) as client:
            summary = client.create_avatar(astronaut_png)
            assert summary["id"] == avatar_id and summary["name"] not in ("", avatar_id)
            done = threading.Event()

            def no_frames():
                done.wait(60)
                yield from ()

            stream = client.drive(avatar_id, no_frames(), CAMERA, window=None)
            frames: queue.Queue = queue.Queue()
            threading.Thread(target=_consume, args=(stream, frames), daemon=True).start()
            deadline = time.monotonic() + 30
            while stream.started is None:
                assert time.monotonic() < deadline
                time.sleep(0.01)
            values = _values(np.random.default_rng(4), eye_roll=False)
            with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as phone:
                phone.sendto(encode_packet(values, "iPhone", DEVICE, frame_number=30), ("127.0.0.1", in_port))
            frame = frames.get(timeout=30)
            assert frame.sequence == 0 and frame.rgba.shape == (64, 64, 4)
            data = listener.recv(65535)
            echoed = decode_packet(data)
            device_id = (tmp_path / DEVICE_ID_FILE).read_text().strip()
            assert echoed.subject == summary["name"] and echoed.device_id == device_id
            _assert_peers_decode(data, echoed.values, summary["name"], device_id, echoed.frame_number, (60, 1))
            np.testing.assert_array_equal(echoed.values[:52], values[:52])
            np.testing.assert_allclose(echoed.values[52:], values[52:], atol=ANGLE_ATOL)
            done.set()
    finally:
        proc.terminate()
        proc.wait(30)
        listener.close()
