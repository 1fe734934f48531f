"""The Blender add-on's bpy-free modules, with plain pytest (no Blender, no runtime).

The modules are loaded as a package whose `__init__` (the Blender glue) is skipped, which
is also what proves they never import bpy.
"""

from __future__ import annotations

import importlib
import math
import os
import re
import signal
import subprocess
import sys
import threading
import time
import types
import zlib
from pathlib import Path

import msgpack
import numpy as np
import pytest
import zmq

ADDON_DIR = Path(__file__).resolve().parents[1] / "blender_addon" / "avatar_runtime_blender"
PURE_MODULES = ("client", "convert", "drive", "imaging", "motion", "tasks")
PACKAGE = "_avatar_addon_pure"


def _load(name: str):
    if PACKAGE not in sys.modules:
        package = types.ModuleType(PACKAGE)
        package.__path__ = [str(ADDON_DIR)]  # submodules resolve here; __init__.py is not run
        sys.modules[PACKAGE] = package
    return importlib.import_module(f"{PACKAGE}.{name}")


convert = _load("convert")
motion = _load("motion")
imaging = _load("imaging")
client = _load("client")
tasks = _load("tasks")
drive = _load("drive")


def test_pure_modules_never_import_bpy():
    code = (f"import sys, types, importlib\n"
            f"p = types.ModuleType('pure'); p.__path__ = [{str(ADDON_DIR)!r}]; sys.modules['pure'] = p\n"
            f"for m in {PURE_MODULES!r}: importlib.import_module('pure.' + m)\n"
            f"assert 'bpy' not in sys.modules and 'mathutils' not in sys.modules\n")
    subprocess.run([sys.executable, "-c", code], check=True, timeout=60)


# -- convert -------------------------------------------------------------------------------
def _translation(x, y, z):
    m = np.eye(4)
    m[:3, 3] = x, y, z
    return m


def test_points_map_like_the_gltf_importer():
    # Blender's glTF importer: runtime (x, y, z) -> Blender (x, -z, y).
    moved = convert.convert_world(_translation(1.0, 2.0, 3.0), to="blender")
    np.testing.assert_allclose(moved[:3, 3], [1.0, -3.0, 2.0])
    back = convert.convert_world(moved, to="runtime")
    np.testing.assert_allclose(back, _translation(1.0, 2.0, 3.0), atol=1e-12)


def test_front_camera_is_the_runtime_portrait_camera():
    # Blender's front view camera: at -Y looking toward +Y, rotated 90 deg about X.
    c, s = math.cos(math.pi / 2), math.sin(math.pi / 2)
    blender_cam = np.array([[1, 0, 0, 0], [0, c, -s, -1.3], [0, s, c, 0], [0, 0, 0, 1]])
    camera = convert.camera_to_runtime(blender_cam, 12.0, 512, 256)
    c2w = np.array(camera.c2w).reshape(4, 4)
    # The runtime's frontal camera: on +Z (the head faces +Z), looking down -Z, +Y up.
    np.testing.assert_allclose(c2w, _translation(0.0, 0.0, 1.3), atol=1e-12)
    assert (camera.fov_y_deg, camera.width, camera.height) == (12.0, 512, 256)


def test_camera_scale_is_ignored():
    scaled = np.diag([2.0, 2.0, 2.0, 1.0])
    scaled[:3, 3] = 0.1, 0.2, 0.3
    c2w = np.array(convert.camera_to_runtime(scaled, 30.0, 64, 64).c2w).reshape(4, 4)
    np.testing.assert_allclose(c2w[:3, :3] @ c2w[:3, :3].T, np.eye(3), atol=1e-12)


@pytest.mark.parametrize("fit, width, height, sensor_mm", [
    ("AUTO", 1920, 1080, 36.0 * 1080 / 1920),   # landscape: sensor width spans the width
    ("AUTO", 1080, 1920, 36.0),                 # portrait: sensor width spans the height
    ("HORIZONTAL", 1000, 1000, 36.0),
    ("VERTICAL", 1920, 1080, 24.0),             # sensor height spans the height
])
def test_vertical_fov_follows_blender_sensor_fit(fit, width, height, sensor_mm):
    expected = math.degrees(2 * math.atan(sensor_mm / 2 / 50.0))
    assert convert.fov_y_deg(50.0, 36.0, 24.0, fit, width, height) == pytest.approx(expected)


def test_head_yaw_turns_about_blender_up():
    # Yaw +30 deg in the runtime: about +Y, face (+Z) toward the subject's left (+X).
    yaw = math.radians(30)
    q = (0.0, math.sin(yaw / 2), 0.0, math.cos(yaw / 2))
    pose = convert.head_pose_rotation(q, np.eye(4))  # a bone whose rest frame is armature space
    # Blender: about +Z (up); the face looks toward -Y at rest and turns toward +X.
    np.testing.assert_allclose(pose, (math.cos(yaw / 2), 0.0, 0.0, math.sin(yaw / 2)), atol=1e-12)
    face = convert.quat_xyzw_to_matrix((pose[1], pose[2], pose[3], pose[0])) @ [0.0, -1.0, 0.0]
    assert face[0] > 0.4


def test_head_pose_respects_the_bone_rest_frame():
    rng = np.random.default_rng(1)
    q = rng.normal(size=4)
    q /= np.linalg.norm(q)
    rest = np.eye(4)
    rest[:3, :3] = convert.quat_xyzw_to_matrix(rng.normal(size=4))
    w, x, y, z = convert.head_pose_rotation(q, rest)
    # The posed bone (rest @ basis) must equal the world turn applied to the rest frame.
    posed = rest[:3, :3] @ convert.quat_xyzw_to_matrix((x, y, z, w))
    axes = np.array([[1.0, 0, 0], [0, 0, -1], [0, 1, 0]])  # Blender = axes @ runtime
    turn = axes @ convert.quat_xyzw_to_matrix(q) @ axes.T
    np.testing.assert_allclose(posed, turn @ rest[:3, :3], atol=1e-10)
    back = convert.head_rotation_from_pose((w, x, y, z), rest)
    assert abs(np.dot(back, q)) == pytest.approx(1.0, abs=1e-10)


def test_matrix_to_quaternion_covers_every_branch():
    for angle, axis in ((math.pi * 0.999, (1, 0, 0)), (math.pi * 0.999, (0, 1, 0)),
                        (math.pi * 0.999, (0, 0, 1)), (0.3, (1, 2, 3))):
        axis = np.array(axis, float) / np.linalg.norm(axis)
        q = (*(axis * math.sin(angle / 2)), math.cos(angle / 2))
        w, x, y, z = convert.matrix_to_quat_wxyz(convert.quat_xyzw_to_matrix(q))
        assert abs(np.dot((x, y, z, w), q)) == pytest.approx(1.0, abs=1e-9)


# -- motion --------------------------------------------------------------------------------
def _take_csv(rows: int = 5, fps: float = 60.0) -> tuple[str, np.ndarray, np.ndarray]:
    rng = np.random.default_rng(0)
    weights = rng.uniform(0, 1, (rows, 52))
    angles = rng.uniform(-0.3, 0.3, (rows, 3))
    swap = {"jawLeft": "jawRight", "jawRight": "jawLeft", "mouthLeft": "mouthRight", "mouthRight": "mouthLeft"}
    order = [motion.ARKIT_NAMES.index(swap.get(n, n)) for n in motion.ARKIT_NAMES]  # the app's order
    names = [motion.ARKIT_NAMES[i][0].upper() + motion.ARKIT_NAMES[i][1:] for i in order]
    lines = [",".join(["Timecode", "BlendShapeCount", *names, "HeadYaw", "HeadPitch", "HeadRoll"])]
    for r in range(rows):
        frame = 58 + r  # crosses a second boundary
        timecode = f"10:20:{30 + frame // int(fps):02d}:{frame % int(fps):02d}.000"
        lines.append(",".join([timecode, "55", *(f"{weights[r, i]:.9g}" for i in order),
                               *(f"{a:.9g}" for a in angles[r])]))
    return "\n".join(lines) + "\n", weights, angles


def test_livelink_csv_reads_columns_by_name(tmp_path):
    text, weights, angles = _take_csv()
    path = tmp_path / "take.csv"
    path.write_text(text)
    samples = motion.read_livelink_csv(path, fps=60.0)
    assert [s.sequence for s in samples] == list(range(5))
    np.testing.assert_allclose([s.timecode for s in samples], np.arange(5) / 60.0, atol=1e-9)
    np.testing.assert_allclose([s.arkit for s in samples], weights, atol=1e-8)
    yaw, pitch, roll = angles[2]
    expected = motion.euler_to_quat(yaw, pitch, roll)
    np.testing.assert_allclose(samples[2].head_rotation, expected, atol=1e-8)


def test_euler_order_is_yaw_pitch_roll():
    # R = Ry(yaw) Rx(pitch) Rz(roll): built from matrices independently of the quaternion code.
    yaw, pitch, roll = 0.4, -0.2, 0.3
    cy, sy, cp, sp, cr, sr = (math.cos(yaw), math.sin(yaw), math.cos(pitch), math.sin(pitch),
                              math.cos(roll), math.sin(roll))
    ry = np.array([[cy, 0, sy], [0, 1, 0], [-sy, 0, cy]])
    rx = np.array([[1, 0, 0], [0, cp, -sp], [0, sp, cp]])
    rz = np.array([[cr, -sr, 0], [sr, cr, 0], [0, 0, 1]])
    got = convert.quat_xyzw_to_matrix(motion.euler_to_quat(yaw, pitch, roll))
    np.testing.assert_allclose(got, ry @ rx @ rz, atol=1e-12)


def test_livelink_csv_errors_name_the_line(tmp_path):
    text, _, _ = _take_csv(rows=3)
    lines = text.splitlines()
    lines[2] = "not-a-timecode" + lines[2][lines[2].index(","):]
    path = tmp_path / "bad.csv"
    path.write_text("\n".join(lines))
    with pytest.raises(motion.MotionFileError, match="line 3"):
        motion.read_livelink_csv(path)
    path.write_text("Timecode,EyeBlinkLeft\n00:00:00:00.0,0.5\n")
    with pytest.raises(motion.MotionFileError, match="missing column"):
        motion.read_livelink_csv(path)


def test_resample_keys_every_scene_frame_from_timecodes():
    def sample(t, value, yaw):
        return motion.MotionSample(0, t, (value,) * 52, motion.euler_to_quat(yaw, 0, 0))

    samples = [sample(0.0, 0.0, 0.0), sample(0.1, 1.0, 0.2), sample(0.2, 0.0, 0.0)]
    result = motion.resample(samples, fps=20.0)
    keyed = result.keyed
    assert [f for f, _ in keyed] == [0, 1, 2, 3, 4]
    np.testing.assert_allclose([s.arkit[0] for _, s in keyed], [0.0, 0.5, 1.0, 0.5, 0.0], atol=1e-9)
    np.testing.assert_allclose(keyed[1][1].head_rotation, motion.euler_to_quat(0.1, 0, 0), atol=1e-4)
    assert (result.held, result.unkeyed_before, result.unkeyed_after) == ([], 0, 0)


def test_resample_keeps_footage_frame_numbers_when_frames_have_no_face():
    """Footage at 10 fps, frames 0-2 and 5-6 without a face, 9 the last: keys stay on the
    footage's frame numbers, the gap holds frame 4's pose, the leading frames are not keyed."""
    values = {i: i / 10 for i in (3, 4, 7, 8)}
    samples = [motion.MotionSample(i, i / 10, (v,) * 52) for i, v in values.items()]
    missing = [i / 10 for i in (0, 1, 2, 5, 6, 9)]
    result = motion.resample(samples, fps=10.0, origin=0.0, missing=missing, end=0.9)
    assert [f for f, _ in result.keyed] == [3, 4, 5, 6, 7, 8]
    assert [s.arkit[0] for _, s in result.keyed] == pytest.approx([0.3, 0.4, 0.4, 0.4, 0.7, 0.8])
    assert result.held == [5, 6] and result.unkeyed_before == 3 and result.unkeyed_after == 1
    # At twice the footage rate: footage frame i on scene frame 2i, interpolated where faces are.
    double = motion.resample(samples, fps=20.0, origin=0.0, missing=missing, end=0.9)
    frames = dict(double.keyed)
    assert min(frames) == 6 and max(frames) == 16 and double.unkeyed_before == 6
    assert frames[7].arkit[0] == pytest.approx(0.35)
    assert frames[11].arkit[0] == pytest.approx(0.4) and frames[15].arkit[0] == pytest.approx(0.75)


def test_motion_sample_from_runtime_map():
    body = {"arkit": [0.5] * 52, "head_rotation": [0, 0, 0, 1], "sequence": 7, "timecode": 0.25}
    sample = motion.MotionSample.from_body(body)
    assert (sample.sequence, sample.timecode, sample.arkit[3]) == (7, 0.25, 0.5)
    assert motion.MotionSample.from_body({}).arkit == (0.0,) * 52
    with pytest.raises(ValueError, match="52"):
        motion.MotionSample.from_body({"arkit": [0.1]})


# -- imaging -------------------------------------------------------------------------------
def test_png_decodes_to_the_same_pixels():
    cv2 = pytest.importorskip("cv2")
    rng = np.random.default_rng(2)
    for channels in (3, 4):
        image = rng.integers(0, 256, (17, 23, channels), np.uint8)
        decoded = cv2.imdecode(np.frombuffer(imaging.encode_png(image), np.uint8), cv2.IMREAD_UNCHANGED)
        code = cv2.COLOR_BGR2RGB if channels == 3 else cv2.COLOR_BGRA2RGBA
        np.testing.assert_array_equal(cv2.cvtColor(decoded, code), image)


def test_blender_pixels_flip_rows():
    rgba = np.arange(2 * 3 * 4, dtype=np.uint8).reshape(2, 3, 4)  # row 0 = top
    pixels = imaging.rgba8_to_blender_pixels(rgba.tobytes(), 3, 2)
    assert pixels[0] == pytest.approx(rgba[1, 0, 0] / 255)       # Blender row 0 = bottom
    np.testing.assert_array_equal(imaging.blender_pixels_to_rgb8(pixels, 3, 2), rgba[..., :3])


# -- client against scripted ROUTER sockets ------------------------------------------------
class FakeRuntime:
    """A ROUTER on loopback answering with `respond(request) -> list of replies`."""

    def __init__(self, respond):
        self.context = zmq.Context()
        self.router = self.context.socket(zmq.ROUTER)
        self.router.setsockopt(zmq.LINGER, 0)
        port = self.router.bind_to_random_port("tcp://127.0.0.1")
        self.address = f"tcp://127.0.0.1:{port}"
        self.respond = respond
        self.requests: list[dict] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, daemon=True)
        self._thread.start()

    def _loop(self):
        while not self._stop.is_set():
            if not self.router.poll(20):
                continue
            peer, payload = self.router.recv_multipart()
            request = msgpack.unpackb(payload, raw=False)
            self.requests.append(request)
            for reply in self.respond(request):
                self.router.send_multipart([peer, msgpack.packb(reply, use_bin_type=True)])

    def close(self):
        self._stop.set()
        self._thread.join()
        self.router.close()
        self.context.term()


def _reply(request, body=None, last=True, error=None):
    out = {"kind": request["kind"], "request_id": request["request_id"], "last": last}
    if error:
        out["error"] = error
    else:
        out["body"] = body or {}
    return out


@pytest.fixture
def fake_runtime():
    servers = []

    def make(respond):
        servers.append(FakeRuntime(respond))
        return servers[-1]

    yield make
    for server in servers:
        server.close()


def test_streams_progress_then_result_with_token(fake_runtime):
    def respond(request):
        if request["kind"] == "CreateAvatar":
            return [_reply(request, {"progress": {"stage": "fit", "fraction": 0.5}}, last=False),
                    _reply(request, {"avatar": {"id": "abc", "name": "x"}})]
        return []

    server = fake_runtime(respond)
    seen = []
    with client.Client(client.Settings(server.address, token="s3cret")) as c:
        avatar = c.create_avatar(b"png", "x", lambda stage, f: seen.append((stage, f)))
    assert avatar["id"] == "abc" and seen == [("fit", 0.5)]
    assert server.requests[0]["token"] == "s3cret"
    assert server.requests[0]["body"] == {"image": b"png", "name": "x"}


def test_error_replies_raise_with_code(fake_runtime):
    server = fake_runtime(lambda r: [_reply(r, error={"code": "NOT_FOUND", "message": "no avatar 'x'"})])
    with client.Client(client.Settings(server.address)) as c, pytest.raises(client.ServerError) as info:
        c.export_mesh("x")
    assert info.value.code == "NOT_FOUND" and "no avatar" in info.value.message


def test_silent_server_fails_within_the_liveness_time(fake_runtime):
    server = fake_runtime(lambda request: [])  # reads everything, answers nothing
    started = time.monotonic()
    with client.Client(client.Settings(server.address, liveness_s=0.6)) as c, \
            pytest.raises(client.ServerError) as info:
        c.health()
    assert info.value.code == "UNAVAILABLE"
    assert 0.5 < time.monotonic() - started < 1.5
    assert any(r["kind"] == "Health" for r in server.requests[1:])  # it pinged before giving up


def test_a_slow_call_stays_alive_while_health_pings_answer(fake_runtime):
    started = time.monotonic()

    def respond(request):
        if request["kind"] == "Health":
            return [_reply(request, {"status": "SERVING"})]
        return []  # the render never comes

    server = fake_runtime(respond)
    with client.Client(client.Settings(server.address, liveness_s=0.3)) as c, \
            pytest.raises(client.ServerError) as info:
        c.call("RenderFrame", {}, cancelled=lambda: time.monotonic() - started > 1.2)
    assert info.value.code == "CANCELLED"  # not UNAVAILABLE: the server kept answering pings


def test_nothing_listening_fails_fast():
    with socket_port() as port:
        pass  # the port is free again: nothing listens there
    started = time.monotonic()
    with client.Client(client.Settings(f"tcp://127.0.0.1:{port}", liveness_s=1.0)) as c, \
            pytest.raises(client.ServerError, match="not answering"):
        c.health()
    assert time.monotonic() - started < 2.0


def test_bad_address_is_a_clear_error():
    with pytest.raises(client.ServerError, match="ZeroMQ endpoint"):
        client.Client(client.Settings("localhost:5555"))


class socket_port:
    def __enter__(self):
        import socket
        self.sock = socket.socket()
        self.sock.bind(("127.0.0.1", 0))
        return self.sock.getsockname()[1]

    def __exit__(self, *exc):
        self.sock.close()


def test_solve_pipeline_keeps_frame_order_and_skips_faceless_frames(fake_runtime):
    def respond(request):
        if request["kind"] != "SolveMotion":
            return [_reply(request, {"status": "SERVING"})]
        body = request["body"]
        assert body["image"].startswith(imaging.PNG_SIGNATURE)
        if body["sequence"] == 1:
            return [_reply(request, error={"code": "FAILED_PRECONDITION", "message": "no face"})]
        return [_reply(request, {"arkit": [body["sequence"] / 10] * 52, "head_rotation": [0, 0, 0, 1],
                                 "sequence": body["sequence"], "timecode": body["timecode"]})]

    server = fake_runtime(respond)
    pipeline = drive.SolvePipeline(client.Settings(server.address), "abc", window=2).start()
    pixels = np.zeros(4 * 4 * 4, np.float32)
    events, pushed = [], 0
    deadline = time.monotonic() + 10
    while not any(isinstance(e, drive.Finished) for e in events) and time.monotonic() < deadline:
        while pipeline.room > 0 and pushed < 5:
            pipeline.push(pushed, pushed / 30, pixels, 4, 4)
            pushed += 1
            if pushed == 5:
                pipeline.close()
        events += pipeline.poll()
        time.sleep(0.005)
    kinds = [(type(e).__name__, getattr(e, "sequence", None)) for e in events]
    assert kinds == [("MotionSample", 0), ("Skipped", 1), ("MotionSample", 2), ("MotionSample", 3),
                     ("MotionSample", 4), ("Finished", None)]
    assert events[2].arkit[0] == pytest.approx(0.2)


# -- tasks ---------------------------------------------------------------------------------
def test_task_results_and_errors_arrive_through_the_mailbox():
    mailbox = tasks.Mailbox()
    results, errors = [], []

    def work(task):
        task.post(results.append, "progress")
        return 42

    ok = tasks.Task("ok", work, mailbox, on_done=results.append, on_error=errors.append).start()
    bad = tasks.Task("bad", lambda t: 1 / 0, mailbox, on_done=results.append, on_error=errors.append).start()
    deadline = time.monotonic() + 5
    while not (ok.finished and bad.finished) and time.monotonic() < deadline:
        mailbox.drain()
        time.sleep(0.001)
    assert results == ["progress", 42]
    assert isinstance(errors[0], ZeroDivisionError)


def test_a_failing_callback_does_not_stop_the_drain():
    mailbox = tasks.Mailbox()
    ran = []
    mailbox.post(lambda: 1 / 0)
    mailbox.post(ran.append, "after")
    assert mailbox.drain() == 2 and ran == ["after"]


def test_playback_releases_samples_by_timecode():
    now = [100.0]
    samples = [motion.MotionSample(i, i * 0.5, (0.0,) * 52) for i in range(3)]
    playback = drive.Playback(samples, clock=lambda: now[0])
    assert [s.sequence for s in playback.poll()] == [0]
    now[0] += 0.6
    assert [s.sequence for s in playback.poll()] == [1]
    now[0] += 1.0
    assert [s.sequence for s in playback.poll()] == [2] and playback.done


def test_png_uses_zlib_stream():
    png = imaging.encode_png(np.zeros((2, 2, 3), np.uint8))
    start = png.index(b"IDAT") + 4
    length = int.from_bytes(png[start - 8:start - 4], "big")
    assert zlib.decompress(png[start:start + length]) == bytes([0, 0, 0, 0, 0, 0, 0] * 2)


def test_a_failing_result_handler_is_reported_as_an_error():
    mailbox = tasks.Mailbox()
    errors = []

    def explode(result):
        raise RuntimeError(f"cannot import {result}")

    task = tasks.Task("import", lambda t: "x.glb", mailbox, on_done=explode, on_error=errors.append).start()
    deadline = time.monotonic() + 5
    while not task.finished and time.monotonic() < deadline:
        mailbox.drain()
        time.sleep(0.001)
    assert [str(e) for e in errors] == ["cannot import x.glb"]


def test_frames_are_compressed_only_off_this_machine():
    assert [drive.png_level(a) for a in ("tcp://127.0.0.1:5555", "tcp://localhost:1", "tcp://[::1]:1",
                                         "ipc:///tmp/runtime", "tcp://10.1.2.3:5555")] == [0, 0, 0, 0, 1]
    image = np.full((8, 8, 3), 7, np.uint8)
    assert len(imaging.encode_png(image, 0)) > len(imaging.encode_png(image, 1))


# -- liveness against a real runtime: killed (SIGKILL) or hung (SIGSTOP) mid-call -----------------
SERVE = Path(sys.executable).with_name("avatar-runtime")


@pytest.fixture
def real_runtime(tmp_path):
    """`avatar-runtime serve` on a free loopback port: (process, zmq address)."""
    log = (tmp_path / "serve.log").open("w")
    process = subprocess.Popen([str(SERVE), "serve", "--grpc", "none", "--zmq", "tcp://127.0.0.1:0",
                                "--data-dir", str(tmp_path / "data")], stdout=subprocess.PIPE,
                               stderr=log, text=True)
    try:
        match = re.search(r"zmq=(tcp://\S+)", process.stdout.readline())
        assert match, (tmp_path / "serve.log").read_text()[-2000:]
        yield process, match.group(1)
    finally:
        if process.poll() is None:
            process.send_signal(signal.SIGCONT)
            process.kill()
        process.wait(10)
        log.close()


@pytest.mark.parametrize("sig, liveness_s", [(signal.SIGKILL, 30.0), (signal.SIGSTOP, 30.0),
                                             (signal.SIGSTOP, 1.5)], ids=["kill", "stop", "stop-default"])
def test_a_killed_or_hung_runtime_fails_the_pending_call_within_two_seconds(real_runtime, sig, liveness_s):
    """With a 30 s application timeout only the ZMTP heartbeats and the socket monitor can
    notice in time; with the default 1.5 s whichever notices first."""
    from skimage import data

    process, address = real_runtime
    photo = imaging.encode_png(np.ascontiguousarray(data.astronaut()), 1)
    with client.Client(client.Settings(address, liveness_s=liveness_s)) as c:
        request = c.send("CreateAvatar", {"image": photo, "name": "doomed"})
        first = c.receive(60)  # a progress event: the call is running on the runtime
        assert first is not None and first.request_id == request and "progress" in first.body
        assert c.connected
        os.kill(process.pid, sig)
        hit = time.monotonic()
        with pytest.raises(client.ServerError) as info:
            while True:
                c.receive(0.1)
        seconds = time.monotonic() - hit
    print(f"\n{signal.Signals(sig).name} with liveness {liveness_s} s: UNAVAILABLE after {seconds * 1000:.0f} ms")
    assert info.value.code == client.UNAVAILABLE
    # Heartbeats alone bound a hang by the next PING (<= 0.5 s) + the 1.5 s timeout: 2.0 s at
    # worst, plus the monitor's wake-up. A crash closes the TCP connection: milliseconds.
    assert seconds < (0.5 if sig == signal.SIGKILL else 2.0 if liveness_s < 2 else 2.15)
    if liveness_s > 2:
        assert "lost the connection to avatar-runtime at " + address in info.value.message


def test_export_is_verified_by_size_and_sha256(fake_runtime):
    """A reply stream that lost a chunk (what the runtime's checksum exists to catch) fails
    with DATA_LOSS; a complete one passes."""
    import hashlib

    payload = bytes(range(256)) * 40
    digest = hashlib.sha256(payload).hexdigest()

    def chunks(drop_middle: bool):
        def respond(request):
            pieces = [payload[i:i + 4096] for i in range(0, len(payload), 4096)]
            replies, offset = [], 0
            for i, piece in enumerate(pieces):
                last = i == len(pieces) - 1
                body = {"data": piece, "offset": offset, "total_bytes": len(payload),
                        "file_name": "a.glb", "last": last, "sha256": digest if last else ""}
                offset += len(piece)
                if not (drop_middle and i == 1):
                    replies.append(_reply(request, body, last=last))
            return replies
        return respond

    with client.Client(client.Settings(fake_runtime(chunks(False)).address)) as c:
        assert c.export_mesh("x") == {"a.glb": payload}
    with client.Client(client.Settings(fake_runtime(chunks(True)).address)) as c, \
            pytest.raises(client.ServerError) as info:
        c.export_mesh("x")
    assert info.value.code == "DATA_LOSS"


def test_calibrate_neutral_sends_the_face_at_rest_or_a_reset(fake_runtime):
    def respond(request):
        if request["kind"] != "CalibrateNeutral":
            return []
        if request["body"]["avatar_id"] == "gone":
            return [_reply(request, error={"code": "NOT_FOUND", "message": "no avatar with id 'gone'"})]
        return [_reply(request, {"arkit": [0.01] * 52, "head_rotation": [0.0, 0.0, 0.0, 1.0]})]

    server = fake_runtime(respond)
    points = {"xyz": np.zeros(1434, np.float32), "width": 640, "height": 480}
    with client.Client(client.Settings(server.address, token="t")) as c:
        sample = c.calibrate_neutral("abc", image=b"png bytes")
        assert sample.arkit == (0.01,) * 52
        c.calibrate_neutral("abc", landmarks=points)
        c.calibrate_neutral("abc", reset=True)
        with pytest.raises(client.ServerError) as info:
            c.calibrate_neutral("gone", image=b"png bytes")
        assert info.value.code == "NOT_FOUND"
        for bad in ({}, {"image": b"x", "landmarks": points}, {"image": b"x", "reset": True}):
            with pytest.raises(ValueError):
                c.calibrate_neutral("abc", **bad)
    bodies = [r["body"] for r in server.requests if r["kind"] == "CalibrateNeutral"]
    assert bodies[0] == {"avatar_id": "abc", "neutral": {"image": b"png bytes"}}
    assert bodies[1] == {"avatar_id": "abc", "neutral": {"landmarks": {
        "xyz": [0.0] * 1434, "width": 640, "height": 480}}}
    assert bodies[2] == {"avatar_id": "abc", "reset": True}
    assert len(bodies) == 4 and all(r["token"] == "t" for r in server.requests)
