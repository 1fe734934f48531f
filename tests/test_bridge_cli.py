"""`avatar-runtime serve` as a real process: addresses on line 1, kill -9 + restart keeps the
avatars, graceful SIGTERM lets in-flight calls finish, non-loopback needs a token."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import numpy as np
import pytest
from skimage import data

from avatar_runtime.faces.image import encode_png
from avatar_runtime.render.camera import Camera
from engine_bridge.client import BridgeError, connect

REPO = Path(__file__).resolve().parent.parent
CAMERA = Camera.orbit(width=64, height=64)


def serve(data_dir: Path, *extra: str) -> tuple[subprocess.Popen, dict]:
    """Start the server; returns (process, {"grpc": addr, "zmq": endpoint}) from line 1."""
    args = [sys.executable, "-m", "engine_bridge.cli", "serve", "--grpc", "127.0.0.1:0",
            "--zmq", "tcp://127.0.0.1:0", "--data-dir", str(data_dir), "--grace", "20", *extra]
    proc = subprocess.Popen(args, cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
    line = proc.stdout.readline().strip()  # blocks until bound (or the process died)
    assert line, f"serve printed nothing (exit {proc.poll()})"
    return proc, dict(part.split("=", 1) for part in line.split())


def stop(proc: subprocess.Popen, sig: int = signal.SIGTERM) -> int:
    if proc.poll() is None:
        os.kill(proc.pid, sig)
    return proc.wait(30)


def test_kill9_restart_keeps_avatars_and_sigterm_is_graceful(tmp_path, astronaut_png):
    proc, addresses = serve(tmp_path)
    try:
        assert addresses["zmq"].startswith("tcp://127.0.0.1:") and not addresses["zmq"].endswith(":0")
        with connect(f"grpc://{addresses['grpc']}") as grpc_client, connect(addresses["zmq"]) as zmq_client:
            first = grpc_client.create_avatar(astronaut_png)
            mirrored = np.ascontiguousarray(data.astronaut()[:, ::-1])
            second = zmq_client.create_avatar(encode_png(mirrored))
            ids = {first["id"], second["id"]}
            assert len(ids) == 2
    finally:
        stop(proc, signal.SIGKILL)

    proc, addresses = serve(tmp_path)
    try:
        with connect(f"grpc://{addresses['grpc']}") as client:
            assert {a["id"] for a in client.list_avatars()} == ids
            assert client.render_frame(first["id"], None, CAMERA).shape == (64, 64, 4)
            # Graceful shutdown: a drive in flight when SIGTERM arrives still completes.
            stream = client.drive(first["id"], (_slow(i) for i in range(30)), CAMERA, window=1)
            assert next(stream).sequence == 0
            threading.Timer(0.1, lambda: os.kill(proc.pid, signal.SIGTERM)).start()
            rest = [f.sequence for f in stream]
            assert rest == list(range(1, 30)) and stream.status["frames_rendered"] == 30
        assert proc.wait(30) == 0
    finally:
        stop(proc, signal.SIGKILL)


def _slow(i: int):
    from avatar_runtime.motion.frame import MotionFrame

    time.sleep(0.02)
    return MotionFrame.neutral(sequence=i)


def test_non_loopback_needs_a_token(tmp_path):
    result = subprocess.run([sys.executable, "-m", "engine_bridge.cli", "serve", "--grpc", "0.0.0.0:0",
                             "--zmq", "none", "--data-dir", str(tmp_path)],
                            cwd=REPO, capture_output=True, text=True, timeout=60)
    assert result.returncode == 2 and "--token" in result.stderr and result.stdout == ""
    result = subprocess.run([sys.executable, "-m", "engine_bridge.cli", "serve", "--grpc", "none",
                             "--zmq", "tcp://*:0", "--data-dir", str(tmp_path)],
                            cwd=REPO, capture_output=True, text=True, timeout=60)
    assert result.returncode == 2 and "token" in result.stderr


def test_token_guards_a_non_loopback_server(tmp_path):
    proc, addresses = serve(tmp_path, "--grpc", "0.0.0.0:0", "--zmq", "tcp://0.0.0.0:0",
                            "--token", "open-sesame")
    try:
        port = addresses["grpc"].rsplit(":", 1)[1]
        zmq_port = addresses["zmq"].rsplit(":", 1)[1]
        for address in (f"grpc://127.0.0.1:{port}", f"tcp://127.0.0.1:{zmq_port}"):
            with connect(address) as anonymous:
                with pytest.raises(BridgeError) as info:
                    anonymous.list_avatars()
                assert info.value.code == "UNAUTHENTICATED"
            with connect(address, token="open-sesame") as client:
                assert client.list_avatars() == []
    finally:
        assert stop(proc) == 0
