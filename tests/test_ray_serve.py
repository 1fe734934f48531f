"""The runtime as Ray Serve replicas behind its own gRPC and ZeroMQ front ends, on a real
local Ray cluster (2 CPUs, started and stopped here): the shared store, drives across the
deployment (in order, latest-wins), a replica killed mid-drive, errors and their codes, and
`avatar-runtime serve --ray` as a process."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path

import numpy as np
import pytest

pytest.importorskip("ray.serve")

import ray  # noqa: E402

from avatar_runtime.faces.image import encode_png  # noqa: E402
from avatar_runtime.limits import Limits  # noqa: E402
from avatar_runtime.motion.frame import MotionFrame  # noqa: E402
from avatar_runtime.render.camera import Camera  # noqa: E402
from bridge_support import running_servers  # noqa: E402
from engine_bridge.client import BridgeError, connect  # noqa: E402
from engine_bridge.generated import pb  # noqa: E402
from engine_bridge.ray_serve import RayDeployment, ServeSettings  # noqa: E402

pytestmark = pytest.mark.timeout(300)
REPO = Path(__file__).resolve().parent.parent
CAMERA = Camera.orbit(width=128, height=128)
REPLACED_WITHIN_S = 120.0  # a new replica imports torch/open3d/MediaPipe on a loaded 2-core box
DRIVE_WITHIN_S = 90.0
BLANK_PNG = encode_png(np.full((96, 96, 3), 200, np.uint8))


def test_replicas_are_fixed_or_autoscaled_and_take_a_gpu_when_the_cluster_has_one():
    fixed = ServeSettings("store", replicas=3).deployment_options(cluster_gpus=0)
    assert fixed["num_replicas"] == 3 and "autoscaling_config" not in fixed
    assert fixed["ray_actor_options"] == {"num_cpus": 0.5, "num_gpus": 0.0}
    assert fixed["max_queued_requests"] > 0  # never an unbounded queue in front of the replicas
    scaled = ServeSettings("store", replicas=2, max_replicas=6, limits=Limits()).deployment_options(4)
    assert "num_replicas" not in scaled and scaled["ray_actor_options"]["num_gpus"] == 1.0
    assert {k: scaled["autoscaling_config"][k] for k in ("min_replicas", "max_replicas")} == \
        {"min_replicas": 2, "max_replicas": 6}
    half = ServeSettings("store", replica_gpus=0.5).deployment_options(cluster_gpus=4)
    assert half["ray_actor_options"]["num_gpus"] == 0.5
    for bad in ({"replicas": 0}, {"replicas": 3, "max_replicas": 2}):
        with pytest.raises(ValueError):
            ServeSettings("store", **bad)


def motions(n: int, pause_s: float = 0.0, offset: int = 0):
    for i in range(offset, offset + n):
        if pause_s:
            time.sleep(pause_s)
        arkit = np.zeros(52, np.float32)
        arkit[17] = 0.5 + 0.5 * np.sin(i / 3)  # jawOpen
        yield MotionFrame(arkit, sequence=i, timecode=i / 30)


def kill_replica(name: str) -> None:
    ray.kill(ray.get_actor(name, namespace="serve"), no_restart=True)


def wait_for(condition, within_s: float, what: str) -> None:
    deadline = time.monotonic() + within_s
    while not condition():
        assert time.monotonic() < deadline, f"{what} did not happen within {within_s:g} s"
        time.sleep(0.5)


def bounded(call, within_s: float):
    """call() on a thread; its result or exception, failing the test if it hangs."""
    box: dict = {}

    def run():
        try:
            box["result"] = call()
        except BaseException as exc:  # noqa: BLE001 - handed to the test below
            box["error"] = exc

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    thread.join(within_s)
    assert not thread.is_alive(), f"no answer within {within_s:g} s"
    if "error" in box:
        raise box["error"]
    return box["result"]


@pytest.fixture(scope="class")
def deployment(tmp_path_factory):
    settings = ServeSettings(tmp_path_factory.mktemp("ray-store"), replicas=2, replica_cpus=0.5,
                             calibrate_after_create=False, max_queued_requests=32)
    deployment = RayDeployment(settings, num_cpus=2, log_to_driver=False)
    try:
        yield deployment
    finally:
        deployment.close()


@pytest.fixture(scope="class")
def servers(deployment):
    with running_servers(deployment.service) as servers:
        yield servers


@pytest.fixture(scope="class")
def avatar_id(servers, astronaut_png) -> str:
    with servers.client("zmq") as client:
        return client.create_avatar(astronaut_png, name="ray")["id"]


class TestDeployment:
    """Two replicas on one local cluster, torn down before `serve --ray` starts its own."""

    def test_an_avatar_created_on_one_replica_is_driven_on_the_other(self, deployment, servers, avatar_id):
        creator = deployment.service.replica_for(avatar_id)
        assert len(deployment.replica_names()) == 2 and creator in deployment.replica_names()
        kill_replica(creator)  # the survivor never saw the create: only the shared store did
        with servers.client("grpc") as client:
            frames = bounded(lambda: list(client.drive(avatar_id, motions(12), CAMERA, window=2)),
                             DRIVE_WITHIN_S)
        assert [f.sequence for f in frames] == list(range(12))
        assert all(f.rgba.shape == (128, 128, 4) and (f.rgba[..., 3] > 0).mean() > 0.05 for f in frames)
        assert deployment.service.replica_for(avatar_id) != creator
        # Serve replaces the killed replica; the new one reads the avatar from the store too.
        wait_for(lambda: deployment.running_replicas() == 2 and creator not in deployment.replica_names(),
                 REPLACED_WITHIN_S, "the killed replica's replacement")
        with servers.client("zmq") as client:
            assert avatar_id in {a["id"] for a in client.list_avatars()}

    def test_a_replica_killed_mid_drive_resumes_or_fails_clearly(self, deployment, servers, avatar_id):
        wait_for(lambda: deployment.running_replicas() == 2, REPLACED_WITHIN_S, "two running replicas")
        retried_before = deployment.service.calls_retried
        received: list[int] = []
        killed: list[str] = []

        def drive():
            with servers.client("zmq") as client:
                stream = client.drive(avatar_id, motions(40, pause_s=0.01), CAMERA, window=2, timeout=30)
                try:
                    for frame in stream:
                        received.append(frame.sequence)
                        if len(received) == 5:  # mid-drive: the replica rendering it goes
                            killed.append(deployment.service.replica_for(avatar_id))
                            kill_replica(killed[0])
                except BridgeError as error:
                    return error
                return stream.status

        outcome = bounded(drive, DRIVE_WITHIN_S)
        assert killed and received == sorted(set(received))  # in order, none twice
        if isinstance(outcome, BridgeError):  # a clear error, never a hang
            assert outcome.code == "UNAVAILABLE" and "replica" in outcome.message
        else:  # or resumed on the other replica: nothing lost
            assert received == list(range(40)) and outcome["frames_rendered"] == 40
        print(f"mid-drive kill: {len(received)} frames, outcome {outcome}, "
              f"calls retried {deployment.service.calls_retried - retried_before}")
        wait_for(lambda: deployment.running_replicas() == 2 and killed[0] not in deployment.replica_names(),
                 REPLACED_WITHIN_S, "the killed replica's replacement")
        store = Path(deployment.settings.data_dir) / "avatars"
        assert (store / f"{avatar_id}.json").exists() and (store / f"{avatar_id}.safetensors").exists()
        with servers.client("grpc") as client:
            assert [a["id"] for a in client.list_avatars()] == [avatar_id]
            assert client.render_frame(avatar_id, None, CAMERA).shape == (128, 128, 4)

    def test_drive_across_the_deployment_is_latest_wins_and_in_order(self, servers, avatar_id):
        with servers.client("grpc") as client:
            stream = client.drive(avatar_id, motions(150), Camera.orbit(width=256, height=256), window=None)
            sequences = bounded(lambda: [f.sequence for f in stream], DRIVE_WITHIN_S)
        status = stream.status
        assert sequences == sorted(set(sequences)) and sequences[-1] == 149  # in order; the newest kept
        assert status["frames_received"] == 150
        assert status["frames_rendered"] == len(sequences) < 150  # stale frames dropped, not queued
        assert status["frames_rendered"] + status["frames_dropped"] == 150

    def test_errors_keep_their_codes_across_the_deployment(self, servers, avatar_id, astronaut_png):
        for transport in ("grpc", "zmq"):
            with servers.client(transport) as client:
                for call, code in ((lambda: client.get_avatar("0123456789abcdef"), "NOT_FOUND"),
                                   (lambda: client.get_avatar("../etc"), "INVALID_ARGUMENT"),
                                   (lambda: client.create_avatar(b"not an image"), "INVALID_ARGUMENT"),
                                   (lambda: list(client.drive("0123456789abcdef", motions(2), CAMERA)),
                                    "NOT_FOUND")):
                    with pytest.raises(BridgeError) as info:
                        bounded(call, 60)
                    assert info.value.code == code, (transport, info.value)
                assert client.get_avatar(avatar_id)["id"] == avatar_id
                # A frame the replica cannot use (no face in its image) is a FrameError; the
                # session goes on.
                frames = [pb.MotionFrame(image=BLANK_PNG, sequence=0), *motions(2, offset=1)]
                stream = client.drive(avatar_id, frames, CAMERA, window=1)
                assert bounded(lambda: [f.sequence for f in stream], 60) == [1, 2]
                assert [(e.sequence, e.code) for e in stream.frame_errors] == [(0, "FAILED_PRECONDITION")]

    def test_a_create_that_outlasts_its_timeout_is_unavailable(self, servers, astronaut_png, monkeypatch):
        from engine_bridge import ray_serve

        monkeypatch.setattr(ray_serve, "CREATE_TIMEOUT_S", 0.05)  # a create takes about a second
        with servers.client("grpc") as client:
            with pytest.raises(BridgeError) as info:
                bounded(lambda: client.create_avatar(astronaut_png, name="slow"), 60)
        assert info.value.code == "UNAVAILABLE" and "within 0.05 s" in info.value.message

    def test_delete_through_the_deployment_is_seen_by_every_replica(self, servers, astronaut_png):
        with servers.client("zmq") as client:
            doomed = client.create_avatar(astronaut_png, name="doomed")["id"]  # another name: another avatar
            client.delete_avatar(doomed)
            for _ in range(6):  # list and get spread over both replicas
                assert doomed not in {a["id"] for a in client.list_avatars()}
                with pytest.raises(BridgeError) as info:
                    client.get_avatar(doomed)
                assert info.value.code == "NOT_FOUND"


def test_serve_ray_starts_a_local_cluster_and_stops_it(tmp_path, astronaut_png):
    refused = subprocess.run([sys.executable, "-m", "engine_bridge.cli", "serve", "--ray", "--replicas", "0",
                              "--data-dir", str(tmp_path)], cwd=REPO, capture_output=True, text=True,
                             timeout=120)
    assert refused.returncode == 2 and "replicas must be at least 1" in refused.stderr
    exposed = subprocess.run([sys.executable, "-m", "engine_bridge.cli", "serve", "--ray", "--grpc",
                              "0.0.0.0:0", "--zmq", "none", "--data-dir", str(tmp_path)], cwd=REPO,
                             capture_output=True, text=True, timeout=120)
    assert exposed.returncode == 2 and "--token" in exposed.stderr  # the token rule holds with --ray
    proc = subprocess.Popen([sys.executable, "-m", "engine_bridge.cli", "serve", "--ray", "--replicas", "1",
                             "--grpc", "127.0.0.1:0", "--zmq", "tcp://127.0.0.1:0",
                             "--data-dir", str(tmp_path)],
                            cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
    try:
        line = bounded(proc.stdout.readline, 150).strip()
        assert line, f"serve --ray printed nothing (exit {proc.poll()})"
        addresses = dict(part.split("=", 1) for part in line.split())
        assert addresses["grpc"].startswith("127.0.0.1:") and addresses["zmq"].startswith("tcp://127.0.0.1:")
        with connect(addresses["zmq"]) as client:
            avatar_id = client.create_avatar(astronaut_png)["id"]
            assert client.render_frame(avatar_id, None, CAMERA).shape == (128, 128, 4)
        assert (tmp_path / "avatars" / f"{avatar_id}.json").exists()
        os.kill(proc.pid, signal.SIGTERM)
        assert proc.wait(90) == 0
        host, port = addresses["ray"].rsplit(":", 1)
        with pytest.raises(OSError):  # the cluster it started is gone with it
            socket.create_connection((host, int(port)), timeout=5).close()
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait(30)
