"""Every RPC over both transports with the same assertions (real servers on loopback ports).

One `AvatarService` and one astronaut avatar for the whole session (tests/conftest.py);
each test runs once per transport through the client facade.
"""

from __future__ import annotations

import dataclasses
import threading
import time
import os
from concurrent.futures import ThreadPoolExecutor

import numpy as np
import pytest

from avatar_runtime.faces.image import encode_png
from avatar_runtime.motion.frame import MotionFrame
from avatar_runtime.render.camera import Camera
from bridge_support import TRANSPORTS, running_servers
from engine_bridge.client import BridgeError
from engine_bridge.config import BridgeLimits, Security
from engine_bridge.generated import pb

SIZE = 128
CAMERA = Camera.orbit(yaw_deg=15.0, width=SIZE, height=SIZE)
LIMITS = BridgeLimits(max_drive_sessions=20, header_timeout_s=2.0, idle_timeout_s=3.0)


@pytest.fixture(scope="module")
def servers(service):
    with running_servers(service, LIMITS) as running:
        yield running


@pytest.fixture(params=TRANSPORTS)
def client(request, servers):
    with servers.client(request.param) as c:
        yield c


def motion(i: int) -> MotionFrame:
    """A deterministic expression that changes every frame."""
    arkit = np.zeros(52, np.float32)
    arkit[17] = 0.5 + 0.5 * np.sin(i / 5)  # jawOpen
    arkit[23] = arkit[24] = 0.5 + 0.5 * np.cos(i / 7)  # mouthSmileLeft/Right
    return MotionFrame(arkit, sequence=i, timecode=i / 30.0)


def code_of(call) -> str:
    with pytest.raises(BridgeError) as info:
        call()
    assert info.value.message, "errors must say what was wrong"
    return info.value.code


# -- avatars -------------------------------------------------------------------------------
def test_health(client):
    assert client.health() == "SERVING"


def test_create_streams_progress_and_is_idempotent(client, astronaut_png, astronaut_id):
    stages = []
    summary = client.create_avatar(astronaut_png, name="astronaut",
                                   progress=lambda s, f: stages.append((s, f)))
    assert summary["id"] == astronaut_id and summary["reconstructor"] == "fit"
    assert summary["name"] == "astronaut"
    assert stages and all(0.0 <= f <= 1.0 for _, f in stages)
    assert isinstance(summary["meta"], dict) and summary["meta"]["faces_found"] == 1


def test_same_photo_under_another_name_is_another_avatar(client, astronaut_png, astronaut_id):
    """Documented in docs/PROTOCOL.md: the name is part of the id; nothing is renamed."""
    other = client.create_avatar(astronaut_png, name="cosmonaut")
    assert other["id"] != astronaut_id and other["name"] == "cosmonaut"
    assert client.get_avatar(astronaut_id)["name"] == "astronaut"
    assert client.create_avatar(astronaut_png, name="cosmonaut")["id"] == other["id"]
    client.delete_avatar(other["id"])


def test_get_and_list(client, service, astronaut_id):
    assert client.get_avatar(astronaut_id) == service.get(astronaut_id)
    assert astronaut_id in [a["id"] for a in client.list_avatars()]


def test_delete(client, service, astronaut_id):
    copy_id = f"c0ffee{abs(hash(client)) % 10**10:010d}"
    service.store.put(dataclasses.replace(service.avatar(astronaut_id), id=copy_id))
    assert client.get_avatar(copy_id)["id"] == copy_id
    client.delete_avatar(copy_id)
    assert code_of(lambda: client.get_avatar(copy_id)) == "NOT_FOUND"
    assert code_of(lambda: client.delete_avatar(copy_id)) == "NOT_FOUND"
    assert copy_id not in [a["id"] for a in client.list_avatars()]


def test_create_errors(client):
    assert code_of(lambda: client.create_avatar(b"not an image at all")) == "INVALID_ARGUMENT"
    blank = encode_png(np.full((64, 64, 3), 127, np.uint8))
    assert code_of(lambda: client.create_avatar(blank)) == "FAILED_PRECONDITION"
    assert code_of(lambda: client.create_avatar(blank, reconstructor="nope")) == "INVALID_ARGUMENT"


def test_get_errors(client):
    assert code_of(lambda: client.get_avatar("0123456789abcdef")) == "NOT_FOUND"
    assert code_of(lambda: client.get_avatar("../etc/passwd")) in ("INVALID_ARGUMENT", "NOT_FOUND")


# -- rendering -----------------------------------------------------------------------------
def test_render_matches_in_process(client, service, astronaut_id):
    expected = service.render(astronaut_id, motion(3), CAMERA)
    rgba = client.render_frame(astronaut_id, motion(3), CAMERA)
    assert rgba.shape == (SIZE, SIZE, 4) and rgba.dtype == np.uint8
    np.testing.assert_array_equal(rgba, expected.rgba)
    full = client.render(astronaut_id, motion(3), CAMERA, encoding="png", depth=True, normals=True)
    np.testing.assert_array_equal(full.rgba, expected.rgba)
    np.testing.assert_array_equal(full.depth, expected.depth)
    np.testing.assert_array_equal(full.normals, expected.normals)
    assert full.sequence == 3 and full.timecode == pytest.approx(0.1) and full.render_ms > 0


def test_render_jpeg_keeps_alpha(client, service, astronaut_id):
    expected = service.render(astronaut_id, None, CAMERA).rgba
    frame = client.render(astronaut_id, None, CAMERA, encoding="jpeg")
    np.testing.assert_array_equal(frame.rgba[..., 3], expected[..., 3])
    assert np.abs(frame.rgba[..., :3].astype(int) - expected[..., :3]).mean() < 6


def test_render_defaults(client, astronaut_id):
    assert client.render_frame(astronaut_id).shape == (512, 512, 4)


def test_render_errors(client, astronaut_id):
    huge = Camera.orbit(width=5000, height=16)
    code = code_of(lambda: client.render_frame(astronaut_id, None, huge))
    assert code == "RESOURCE_EXHAUSTED"
    bad_motion = pb.MotionFrame(arkit=[0.5] * 3)
    assert code_of(lambda: client.render_frame(astronaut_id, bad_motion, CAMERA)) == "INVALID_ARGUMENT"
    out_of_range = pb.MotionFrame(arkit=[2.0] * 52)
    assert code_of(lambda: client.render_frame(astronaut_id, out_of_range, CAMERA)) == "INVALID_ARGUMENT"
    bad_camera = pb.Camera(c2w=[1.0] * 9, width=16, height=16)
    assert code_of(lambda: client.render_frame(astronaut_id, None, bad_camera)) == "INVALID_ARGUMENT"
    assert code_of(lambda: client.render_frame("0123456789abcdef", None, CAMERA)) == "NOT_FOUND"


def test_solve_motion(client, service, astronaut_png, astronaut_id):
    solved = client.solve_motion(astronaut_png, astronaut_id, sequence=9, timecode=0.3)
    expected = service.solve_motion(astronaut_png, astronaut_id)
    assert isinstance(solved, MotionFrame) and solved.sequence == 9
    np.testing.assert_allclose(solved.arkit, expected.arkit, atol=1e-5)
    np.testing.assert_allclose(solved.head_rotation, expected.head_rotation, atol=1e-5)
    assert code_of(lambda: client.solve_motion(b"\x89PNG garbage")) == "INVALID_ARGUMENT"


def test_export_mesh(client, astronaut_id):
    glb = client.export_mesh(astronaut_id, motion(1))
    assert glb[:4] == b"glTF" and int.from_bytes(glb[8:12], "little") == len(glb)
    files = client.export_mesh_files(astronaut_id, format="obj")
    assert [name.rsplit(".", 1)[1] for name in files] == ["obj", "mtl", "png"]
    assert files[next(iter(files))].startswith(b"#") or b"\nv " in files[next(iter(files))]
    assert code_of(lambda: client.export_mesh(astronaut_id, format="fbx")) == "INVALID_ARGUMENT"
    # A fit avatar has no learned field to extract.
    assert code_of(lambda: client.export_mesh(astronaut_id, source="volume")) == "UNIMPLEMENTED"
    assert code_of(lambda: client.export_mesh("0123456789abcdef")) == "NOT_FOUND"


# -- drive ---------------------------------------------------------------------------------
def test_drive_lockstep_renders_every_frame_in_order(client, service, astronaut_id):
    frames = [motion(i) for i in range(12)]
    stream = client.drive(astronaut_id, frames, CAMERA, window=1, depth=True)
    out = list(stream)
    assert [f.sequence for f in out] == list(range(12))
    assert [f.timecode for f in out] == pytest.approx([i / 30 for i in range(12)])
    np.testing.assert_array_equal(out[5].rgba, service.render(astronaut_id, frames[5], CAMERA).rgba)
    assert out[5].depth.shape == (SIZE, SIZE) and all(f.render_ms > 0 for f in out)
    assert stream.started["avatar_id"] == astronaut_id and stream.started["width"] == SIZE
    assert stream.status["frames_received"] == 12 and stream.status["frames_rendered"] == 12
    assert stream.status["frames_dropped"] == 0


def test_drive_latest_wins_drops_stale_frames(client, astronaut_id):
    stream = client.drive(astronaut_id, (motion(i) for i in range(80)), CAMERA, window=None)
    sequences = [f.sequence for f in stream]
    assert sequences == sorted(set(sequences)) and sequences[-1] == 79
    status = stream.status
    assert status["frames_received"] == 80
    assert status["frames_rendered"] == len(sequences)
    assert status["frames_rendered"] + status["frames_dropped"] == 80
    assert status["frames_dropped"] > 0


def test_drive_smoothing_and_encodings(client, astronaut_id):
    stream = client.drive(astronaut_id, [motion(i) for i in range(4)], CAMERA, encoding="png",
                          smoothing={"enabled": True, "min_cutoff": 1.0, "beta": 0.1}, window=1)
    frames = list(stream)
    assert [f.sequence for f in frames] == [0, 1, 2, 3] and frames[0].rgba.shape == (SIZE, SIZE, 4)


def test_drive_solves_image_frames(client, astronaut_png, astronaut_id):
    frames = [pb.MotionFrame(image=astronaut_png, sequence=7, timecode=1.5)]
    out = list(client.drive(astronaut_id, frames, CAMERA))
    assert len(out) == 1 and out[0].sequence == 7 and out[0].timecode == 1.5


def test_drive_errors(client, astronaut_id):
    """Header problems end the stream; a bad frame is a FrameError and the session goes on."""
    assert code_of(lambda: list(client.drive("0123456789abcdef", [motion(0)], CAMERA))) == "NOT_FOUND"
    huge = Camera.orbit(width=5000, height=5000)
    assert code_of(lambda: list(client.drive(astronaut_id, [motion(0)], huge))) == "RESOURCE_EXHAUSTED"
    frames = [motion(0), pb.MotionFrame(arkit=[0.1] * 7, sequence=1),
              pb.MotionFrame(landmarks=pb.Landmarks(xyz=[0.0] * 3), sequence=2),
              pb.MotionFrame(arkit=[float("nan")] * 52, sequence=3), motion(4)]
    stream = client.drive(astronaut_id, frames, CAMERA, window=1)
    assert [f.sequence for f in stream] == [0, 4]
    refused = {e.sequence: e for e in stream.frame_errors}
    assert sorted(refused) == [1, 2, 3] and stream.status["frames_rendered"] == 2
    assert refused[1].code == "INVALID_ARGUMENT" and "52" in refused[1].message
    assert refused[2].code == "INVALID_ARGUMENT" and "landmarks" in refused[2].message
    assert refused[3].code == "INVALID_ARGUMENT" and "finite" in refused[3].message.lower()


def test_drive_empty_stream(client, astronaut_id):
    stream = client.drive(astronaut_id, [], CAMERA)
    assert list(stream) == [] and stream.status["frames_received"] == 0


@pytest.mark.parametrize("transport", TRANSPORTS)
def test_eight_concurrent_drive_sessions(servers, astronaut_id, transport):
    """8 sessions x 200 frames (small frames: this is about ordering and memory)."""
    n, camera = 200, Camera.orbit(width=48, height=48)

    def session(k: int) -> list[int]:
        with servers.client(transport) as c:
            frames = [motion(1000 * k + i) for i in range(n)]
            return [f.sequence for f in c.drive(astronaut_id, frames, camera, window=1)]

    rss_before = _rss_bytes()
    started = time.perf_counter()
    with ThreadPoolExecutor(8) as pool:
        results = list(pool.map(session, range(8)))
    for k, sequences in enumerate(results):
        assert sequences == [1000 * k + i for i in range(n)]
    assert time.perf_counter() - started < 240
    assert _wait(lambda: servers.handlers.sessions.active == 0)
    growth = _rss_bytes() - rss_before
    print(f"{transport}: RSS grew {growth / 1e6:.1f} MB over 8 x {n} frames")
    assert growth < 150e6


def _rss_bytes() -> int:
    """Resident set size of this process (the servers run in it)."""
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")


def _wait(condition, timeout: float = 10.0) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if condition():
            return True
        time.sleep(0.05)
    return condition()


# -- limits and auth -----------------------------------------------------------------------
@pytest.fixture(scope="module")
def strict(service):
    limits = BridgeLimits(max_message_bytes=1024 * 1024, max_drive_sessions=1, idle_timeout_s=5.0)
    with running_servers(service, limits, Security(token="s3cret")) as running:
        yield running


@pytest.mark.parametrize("transport", TRANSPORTS)
def test_token_required(strict, astronaut_id, transport):
    with strict.client(transport) as anonymous:
        assert anonymous.health() == "SERVING"  # liveness needs no token
        assert code_of(anonymous.list_avatars) == "UNAUTHENTICATED"
        assert code_of(lambda: list(anonymous.drive(astronaut_id, [motion(0)], CAMERA))) == "UNAUTHENTICATED"
    with strict.client(transport, token="wrong") as wrong:
        assert code_of(lambda: wrong.get_avatar(astronaut_id)) == "UNAUTHENTICATED"
    with strict.client(transport, token="s3cret") as good:
        assert good.get_avatar(astronaut_id)["id"] == astronaut_id


@pytest.mark.parametrize("transport", TRANSPORTS)
def test_message_size_limit(strict, transport):
    with strict.client(transport, token="s3cret") as c:
        with pytest.raises(BridgeError) as info:
            c.create_avatar(b"\0" * (2 * 1024 * 1024))
        assert info.value.code == "RESOURCE_EXHAUSTED"
        assert c.health() == "SERVING"


@pytest.mark.parametrize("transport", TRANSPORTS)
def test_drive_session_cap(strict, astronaut_id, transport):
    release = threading.Event()

    def slow_frames():
        yield motion(0)
        release.wait(10)

    with strict.client(transport, token="s3cret") as first, \
            strict.client(transport, token="s3cret") as second:
        stream = first.drive(astronaut_id, slow_frames(), CAMERA, window=None)
        assert next(stream).sequence == 0  # the first session holds the only slot
        with pytest.raises(BridgeError) as info:
            list(second.drive(astronaut_id, [motion(1)], CAMERA))
        assert info.value.code == "RESOURCE_EXHAUSTED" and "max_drive_sessions" in info.value.message
        release.set()
        list(stream)
    assert _wait(lambda: strict.handlers.sessions.active == 0)


def test_non_loopback_requires_token(service):
    from engine_bridge import grpc_server, zmq_server

    with pytest.raises(ValueError, match="token"):
        grpc_server.create_server(service, "0.0.0.0:0")
    with pytest.raises(ValueError, match="token"):
        zmq_server.create_server(service, "tcp://0.0.0.0:0")
    server, port = grpc_server.create_server(service, "0.0.0.0:0", security=Security(token="t"))
    assert port > 0
    server.stop(0)


def test_zmq_stop_lets_a_drive_in_flight_finish(service, astronaut_id):
    def slow(n):
        for i in range(n):
            time.sleep(0.02)
            yield motion(i)

    with running_servers(service, LIMITS) as own:
        with own.client("zmq") as c, own.client("zmq") as late:
            stream = c.drive(astronaut_id, slow(15), CAMERA, window=1)
            assert next(stream).sequence == 0
            stopper = threading.Thread(target=own.zmq.stop, args=(10.0,))
            stopper.start()
            time.sleep(0.1)
            assert code_of(late.list_avatars) == "UNAVAILABLE"
            assert [f.sequence for f in stream] == list(range(1, 15))
            stopper.join(10)
            assert not stopper.is_alive()


# -- motion sources ------------------------------------------------------------------------
@pytest.fixture(scope="module")
def astronaut_landmarks(service, astronaut_png) -> pb.Landmarks:
    from avatar_runtime.faces.image import decode_image

    rgb = decode_image(astronaut_png)
    points = service.analyzer.landmarks(rgb).landmarks
    return pb.Landmarks(xyz=points.ravel().tolist(), width=rgb.shape[1], height=rgb.shape[0])


def test_every_motion_source_renders_and_drives(client, service, astronaut_id, astronaut_png,
                                                 astronaut_landmarks):
    """arkit, image, landmarks and embedding (the 63-value motion code) on RenderFrame and Drive."""
    jaw = MotionFrame.from_weights({"jawOpen": 0.8}, sequence=4)
    sources = {
        "arkit": pb.MotionFrame(arkit=jaw.arkit.tolist(), sequence=1),
        "image": pb.MotionFrame(image=astronaut_png, sequence=2),
        "landmarks": pb.MotionFrame(landmarks=astronaut_landmarks, sequence=3),
        "embedding": pb.MotionFrame(embedding=pb.Embedding(values=jaw.code().tolist()), sequence=4),
    }
    solved = service.solve_motion(astronaut_png, astronaut_id)
    expected = {"arkit": service.render(astronaut_id, jaw, CAMERA).rgba,
                "image": service.render(astronaut_id, solved, CAMERA).rgba,
                "embedding": service.render(astronaut_id, jaw, CAMERA).rgba}
    for name, msg in sources.items():
        rgba = client.render(astronaut_id, msg, CAMERA).rgba
        if name in expected:
            np.testing.assert_array_equal(rgba, expected[name], err_msg=name)
        else:  # landmarks from the same photo solve to what the image solves to
            assert np.abs(rgba.astype(int) - expected["image"]).mean() < 2.0
    stream = client.drive(astronaut_id, list(sources.values()), CAMERA, window=1)
    assert [f.sequence for f in stream] == [1, 2, 3, 4] and not stream.frame_errors


def test_bad_motion_sources_are_refused_clearly(client, astronaut_id, astronaut_landmarks):
    outside = pb.Landmarks(xyz=[5000.0] * (478 * 3), width=512, height=512)
    cases = [
        (pb.MotionFrame(landmarks=pb.Landmarks(xyz=[1.0] * 30, width=512, height=512)), "1434 values"),
        (pb.MotionFrame(landmarks=outside), "outside the 512x512 image"),
        (pb.MotionFrame(landmarks=pb.Landmarks(xyz=astronaut_landmarks.xyz)), "width and height"),
        (pb.MotionFrame(embedding=pb.Embedding(values=[0.0] * 10)), "63 values"),
        (pb.MotionFrame(embedding=pb.Embedding(values=[float("inf")] * 63)), "finite"),
        (pb.MotionFrame(arkit=[0.1] * 51), "52 values"),
    ]
    for msg, words in cases:
        error = code_of(lambda: client.render(astronaut_id, msg, CAMERA))
        assert error == "INVALID_ARGUMENT", words
        with pytest.raises(BridgeError) as info:
            client.render(astronaut_id, msg, CAMERA)
        assert words in info.value.message, (words, info.value.message)
    frames = [m for m, _ in cases] + [pb.MotionFrame(sequence=99)]
    for i, m in enumerate(frames[:-1]):
        m.sequence = i + 1
    stream = client.drive(astronaut_id, frames, CAMERA, window=1)
    assert [f.sequence for f in stream] == [99]  # the session survived every bad frame
    assert sorted(e.sequence for e in stream.frame_errors) == list(range(1, len(cases) + 1))


def test_calibrate_neutral(client, service, astronaut_png, astronaut_id, astronaut_landmarks):
    """The face at rest becomes the avatar's neutral (image or landmarks), then reset."""
    main = ["eyeBlinkLeft", "eyeBlinkRight", "jawOpen", "mouthSmileLeft", "mouthSmileRight",
            "browInnerUp", "browDownLeft", "browDownRight"]
    try:
        calibrated = client.calibrate_neutral(astronaut_id, image=astronaut_png)
        assert max(calibrated.weights()[name] for name in main) < 0.15
        solved = client.solve_motion(astronaut_png, astronaut_id)
        np.testing.assert_allclose(solved.arkit, calibrated.arkit, atol=1e-5)
        points = np.asarray(astronaut_landmarks.xyz, np.float32).reshape(478, 3)
        again = client.calibrate_neutral(astronaut_id, landmarks=points, width=astronaut_landmarks.width,
                                         height=astronaut_landmarks.height)
        assert max(again.weights()[name] for name in main) < 0.15
        for bad in (lambda: client.calibrate_neutral(astronaut_id),
                    lambda: client.calibrate_neutral(astronaut_id, image=astronaut_png, reset=True)):
            assert code_of(bad) == "INVALID_ARGUMENT"
        assert code_of(lambda: client.calibrate_neutral("0123456789abcdef", image=astronaut_png)) == "NOT_FOUND"
        blank = encode_png(np.full((64, 64, 3), 128, np.uint8))
        assert code_of(lambda: client.calibrate_neutral(astronaut_id, image=blank)) == "FAILED_PRECONDITION"
    finally:
        client.calibrate_neutral(astronaut_id, reset=True)
