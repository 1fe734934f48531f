"""Live Link Face UDP: the packet codec, packets in -> drive frames, drive frames -> packets out.

All traffic is on 127.0.0.1. Values must survive to float32 precision: ARKit weights exactly,
angles through the runtime's quaternion to ~1e-6 rad.
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

from avatar_runtime.errors import InvalidArgument
from avatar_runtime.motion.frame import MotionFrame
from avatar_runtime.motion.livelink_udp import (NUM_VALUES, decode_packet, encode_frame, encode_packet,
                                                packet_to_frame)
from avatar_runtime.motion.pose import euler_to_quat, quat_to_euler
from avatar_runtime.render.camera import Camera
from engine_bridge.client import connect
from engine_bridge.livelink import LiveLinkReceiver, LiveLinkSender, parse_udp

from bridge_support import running_servers

CAMERA = Camera.orbit(width=64, height=64)
ANGLE_ATOL = 2e-6  # float32 angles through a float32 quaternion


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
    data = encode_packet(values, "Avatar", "device-1", frame_number=1234, subframe=0.25, rate=(30000, 1001))
    assert data[0] == 6 and data[1:5] == struct.pack(">i", 8) and data[5:13] == b"device-1"
    assert len(data) == 1 + 4 + 8 + 4 + 6 + 16 + 1 + 61 * 4
    packet = decode_packet(data)
    assert (packet.device_id, packet.subject, packet.frame_number) == ("device-1", "Avatar", 1234)
    assert packet.subframe == 0.25 and packet.rate == (30000, 1001)
    assert packet.seconds == pytest.approx(1234.25 * 1001 / 30000)
    np.testing.assert_array_equal(packet.values, values)
    assert packet.values.dtype == np.float32


def test_motion_frame_round_trip():
    values = _values(np.random.default_rng(1), eye_roll=False)
    frame = packet_to_frame(decode_packet(encode_packet(values, "s", frame_number=90)), sequence=4)
    _assert_matches(frame, values)
    assert frame.sequence == 4 and frame.timecode == pytest.approx(1.5)
    again = decode_packet(encode_frame(frame, "s"))
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
    data = encode_packet(np.zeros(NUM_VALUES), "s")
    with pytest.raises(InvalidArgument, match=message):
        decode_packet(mutate(data))


def test_out_of_range_weights_are_clipped_not_fatal():
    values = np.zeros(NUM_VALUES, np.float32)
    values[0], values[1], values[2] = 1.2, -0.3, np.nan
    frame = packet_to_frame(decode_packet(encode_packet(values, "s")))
    assert frame.arkit[:3].tolist() == [1.0, 0.0, 0.0]


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
                    out.sendto(encode_packet(values, "iPhone", frame_number=120 + i, rate=(60, 1)),
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
    rng = np.random.default_rng(3)
    sock, port = _udp_socket()
    sender = LiveLinkSender(f"udp://127.0.0.1:{port}")
    sent = []
    for i in range(6):
        values = _values(rng, eye_roll=False)
        sent.append((values, MotionFrame(values[:52], euler_to_quat(values[52:55]),
                                         eye_gaze=values[[55, 56, 58, 59]], sequence=i, timecode=i / 30)))
    try:
        with running_servers(service) as servers:
            servers.handlers.add_frame_tap(sender.send)
            with servers.client("zmq") as client:
                assert len(list(client.drive(astronaut_id, [f for _, f in sent], CAMERA, window=1))) == 6
        for values, frame in sent:
            packet = decode_packet(sock.recv(65535))
            assert packet.subject == astronaut_id and packet.device_id == "avatar-runtime"
            assert packet.seconds == pytest.approx(frame.timecode, abs=1e-6)
            np.testing.assert_array_equal(packet.values[:52], values[:52])
            np.testing.assert_allclose(packet.values[52:], values[52:], atol=ANGLE_ATOL)
    finally:
        sender.close()
        sock.close()


def test_serve_flags_end_to_end(tmp_path, astronaut_png):
    """`serve --livelink-in ... --livelink-avatar ID --livelink-out ...` as a real process."""
    avatar_id = hashlib.sha256(b"fit\0" + astronaut_png).hexdigest()[:16]  # the service's id rule
    listener, out_port = _udp_socket()
    args = [sys.executable, "-m", "engine_bridge.cli", "serve", "--grpc", "none",
            "--zmq", "tcp://127.0.0.1:0", "--data-dir", str(tmp_path), "--grace", "1",
            "--livelink-out", f"udp://127.0.0.1:{out_port}", "--livelink-subject", "Avatar",
            "--livelink-in", "udp://127.0.0.1:0", "--livelink-avatar", avatar_id]
    proc = subprocess.Popen(args, cwd=Path(__file__).resolve().parents[1], stdout=subprocess.PIPE,
                            stderr=subprocess.DEVNULL, text=True)
    try:
        bound = dict(part.split("=", 1) for part in proc.stdout.readline().split())
        assert bound["livelink_out"] == f"udp://127.0.0.1:{out_port}"
        in_port = parse_udp(bound["livelink_in"])[1]
        with connect(bound["zmq"]) as client:
            assert client.create_avatar(astronaut_png)["id"] == avatar_id
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
                phone.sendto(encode_packet(values, "iPhone", frame_number=30), ("127.0.0.1", in_port))
            frame = frames.get(timeout=30)
            assert frame.sequence == 0 and frame.rgba.shape == (64, 64, 4)
            echoed = decode_packet(listener.recv(65535))
            assert echoed.subject == "Avatar"
            np.testing.assert_array_equal(echoed.values[:52], values[:52])
            np.testing.assert_allclose(echoed.values[52:], values[52:], atol=ANGLE_ATOL)
            done.set()
    finally:
        proc.terminate()
        proc.wait(30)
        listener.close()
