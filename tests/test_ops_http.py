"""The operator HTTP port of a real `avatar-runtime serve`: liveness during warm-up, readiness
after it, Prometheus metrics that count what the transports served, one JSON log line per
call with a request id, and the token on /metrics."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
from pathlib import Path

import pytest
from prometheus_client.parser import text_string_to_metric_families

from avatar_runtime.render.camera import Camera
from engine_bridge.client import BridgeError, connect
from engine_bridge.generated import pb

REPO = Path(__file__).resolve().parent.parent
CAMERA = Camera.orbit(width=48, height=48)


def get(url: str, token: str | None = None) -> tuple[int, str]:
    request = urllib.request.Request(url, headers={"Authorization": f"Bearer {token}"} if token else {})
    try:
        with urllib.request.urlopen(request, timeout=5) as response:
            return response.status, response.read().decode()
    except urllib.error.HTTPError as error:
        return error.code, error.read().decode()


def samples(text: str) -> dict[tuple, float]:
    out = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            out[(sample.name, tuple(sorted(sample.labels.items())))] = sample.value
    return out


@pytest.fixture(scope="module")
def runtime(tmp_path_factory):
    data_dir = tmp_path_factory.mktemp("ops")
    args = [sys.executable, "-m", "engine_bridge.cli", "serve", "--grpc", "127.0.0.1:0", "--zmq",
            "tcp://127.0.0.1:0", "--http", "127.0.0.1:0", "--grace", "5", "--data-dir", str(data_dir)]
    log_path = data_dir / "stderr.log"
    with open(log_path, "w") as stderr:
        proc = subprocess.Popen(args, cwd=REPO, stdout=subprocess.PIPE, stderr=stderr, text=True)
    line = proc.stdout.readline().strip()
    assert line, f"serve printed nothing (exit {proc.poll()}): {log_path.read_text()[-2000:]}"
    yield proc, dict(part.split("=", 1) for part in line.split()), log_path
    if proc.poll() is None:
        proc.kill()
    proc.wait(10)


def test_health_readiness_metrics_and_request_log(runtime, astronaut_png):
    proc, addresses, log_path = runtime
    http = f"http://{addresses['http']}"
    assert get(f"{http}/healthz") == (200, "ok\n")
    status, body = get(f"{http}/readyz")
    assert status == 200 and json.loads(body)["ready"] is True
    assert get(f"{http}/nope")[0] == 404

    with connect(f"grpc://{addresses['grpc']}") as grpc_client, connect(addresses["zmq"]) as zmq_client:
        avatar = grpc_client.create_avatar(astronaut_png, name="ops")
        for client in (grpc_client, zmq_client):
            client.render(avatar["id"], camera=CAMERA)
            with pytest.raises(BridgeError):
                client.get_avatar("0123456789abcdef")
            frames = [pb.MotionFrame(sequence=i) for i in range(5)] + [pb.MotionFrame(arkit=[2.0] * 52)]
            assert len(list(client.drive(avatar["id"], frames, CAMERA, window=1))) == 5

    status, text = get(f"{http}/metrics")
    assert status == 200
    values = samples(text)
    for transport in ("grpc", "zmq"):
        ok = ("avatar_runtime_requests_total", (("code", "OK"), ("method", "RenderFrame"),
                                                ("transport", transport)))
        missing = ("avatar_runtime_requests_total", (("code", "NOT_FOUND"), ("method", "GetAvatar"),
                                                     ("transport", transport)))
        assert values[ok] == 1 and values[missing] == 1
    assert values[("avatar_runtime_frames_rendered_total", (("call", "drive"),))] == 10
    assert values[("avatar_runtime_frames_rendered_total", (("call", "render"),))] == 2
    assert values[("avatar_runtime_frame_errors_total", (("code", "INVALID_ARGUMENT"),))] == 2
    assert values[("avatar_runtime_avatars", ())] == 1
    assert values[("avatar_runtime_drive_sessions", ())] == 0
    assert values[("avatar_runtime_create_seconds_count", ())] == 1
    assert values[("avatar_runtime_render_seconds_count", ())] == 12

    # One JSON line per call, each with its own request id.
    lines = [json.loads(line.split("avatar_runtime.requests: ", 1)[1])
             for line in log_path.read_text().splitlines() if "avatar_runtime.requests: " in line]
    drives = [entry for entry in lines if entry["method"] == "Drive"]
    assert len(drives) == 2 and all(d["frames_rendered"] == 5 and d["code"] == "OK" for d in drives)
    assert {d["transport"] for d in drives} == {"grpc", "zmq"}
    assert len({entry["request_id"] for entry in lines}) == len(lines) == 7  # 4 grpc + 3 zmq calls
    assert all(entry["code"] in ("OK", "NOT_FOUND") for entry in lines)

    # Shutdown with a drive in flight: readiness says 503 while the grace period runs.
    release = threading.Event()

    def held_open():
        yield pb.MotionFrame(sequence=0)
        release.wait(20)

    with connect(addresses["zmq"]) as client:
        stream = client.drive(avatar["id"], held_open(), CAMERA, window=None)
        next(stream)
        os.kill(proc.pid, signal.SIGTERM)
        deadline = time.monotonic() + 10
        seen = 200
        while time.monotonic() < deadline and seen == 200:
            seen = get(f"{http}/readyz")[0]
            time.sleep(0.05)
        assert seen == 503
        assert get(f"{http}/healthz")[0] == 200  # alive, not ready
        release.set()
        stream.close()
    assert proc.wait(30) == 0


def test_metrics_need_the_token_and_off_loopback_needs_one(tmp_path):
    args = [sys.executable, "-m", "engine_bridge.cli", "serve", "--grpc", "none", "--zmq", "none",
            "--http", "127.0.0.1:0", "--token", "s3cret", "--data-dir", str(tmp_path)]
    proc = subprocess.Popen(args, cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
    try:
        http = "http://" + dict(p.split("=", 1) for p in proc.stdout.readline().split())["http"]
        assert get(f"{http}/healthz")[0] == 200 and get(f"{http}/readyz")[0] == 200
        assert get(f"{http}/metrics")[0] == 401
        assert get(f"{http}/metrics", token="wrong")[0] == 401
        status, text = get(f"{http}/metrics", token="s3cret")
        assert status == 200 and "avatar_runtime_requests" in text
    finally:
        proc.kill()
        proc.wait(10)
    no_token = [a for a in args if a not in ("--token", "s3cret")]
    no_token[no_token.index("127.0.0.1:0")] = "0.0.0.0:0"
    off_loopback = subprocess.run(no_token, cwd=REPO, capture_output=True, text=True, timeout=60)
    assert off_loopback.returncode == 2 and "token" in off_loopback.stderr
