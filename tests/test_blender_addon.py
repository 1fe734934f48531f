"""The Blender add-on in real headless Blender (the bpy module) against a real runtime.

One `avatar-runtime serve` process on loopback serves the module. Blender's event loop
does not run inside the bpy module, so the tests call `ops.tick` (the function the add-on
registers with bpy.app.timers) in a loop where Blender would call it.
"""

from __future__ import annotations

import json
import math
import os
import re
import shutil
import socket
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest

bpy = pytest.importorskip("bpy")
cv2 = pytest.importorskip("cv2")

import addon_utils  # noqa: E402  (Blender's, importable once bpy is)
import mathutils  # noqa: E402

from avatar_runtime.motion.arkit import ARKIT_INDEX, ARKIT_NAMES  # noqa: E402
from avatar_runtime.motion.frame import MotionFrame  # noqa: E402
from avatar_runtime.motion.livelink_csv import write_livelink_csv  # noqa: E402
from avatar_runtime.motion.pose import euler_to_quat  # noqa: E402
from avatar_runtime.render.camera import Camera  # noqa: E402
from engine_bridge.client import connect  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
ADDON_PARENT = ROOT / "blender_addon"
MODULE = "avatar_runtime_blender"
SERVE = Path(sys.executable).with_name("avatar-runtime")
VIDEO_FRAMES, VIDEO_FPS, VIDEO_SIZE = 60, 30, 320
# Blender = AXES @ runtime: what the glTF importer does, written out independently of the add-on.
AXES = mathutils.Matrix(((1, 0, 0), (0, 0, -1), (0, 1, 0)))

pytestmark = pytest.mark.timeout(300)


# -- runtime processes ---------------------------------------------------------------------
@dataclass
class Runtime:
    process: subprocess.Popen
    address: str
    data_dir: Path

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.kill()
        self.process.wait(10)


def start_runtime(data_dir: Path, log: Path) -> Runtime:
    """`avatar-runtime serve` on an ephemeral loopback port; its first stdout line names it."""
    process = subprocess.Popen(
        [str(SERVE), "serve", "--grpc", "none", "--zmq", "tcp://127.0.0.1:0", "--data-dir", str(data_dir)],
        stdout=subprocess.PIPE, stderr=log.open("w"), text=True)
    line = process.stdout.readline()
    match = re.search(r"zmq=(tcp://127\.0\.0\.1:\d+)", line)
    if match is None:
        process.kill()
        raise RuntimeError(f"runtime did not start: {line!r}\n{log.read_text()[-2000:]}")
    return Runtime(process, match.group(1), data_dir)


@pytest.fixture(scope="module")
def runtime(tmp_path_factory):
    folder = tmp_path_factory.mktemp("runtime")
    server = start_runtime(folder / "data", folder / "serve.log")
    yield server
    server.stop()


@pytest.fixture(scope="module")
def oracle(runtime):
    """The runtime's own Python client: what the add-on's results are checked against."""
    with connect(runtime.address) as client:
        yield client


# -- Blender -------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def ops(runtime):
    bpy.ops.wm.read_factory_settings(use_empty=True)
    sys.path.insert(0, str(ADDON_PARENT))
    addon_utils.enable(MODULE, default_set=True, handle_error=_raise)
    from avatar_runtime_blender import ops as addon_ops

    set_address(runtime.address)
    yield addon_ops
    addon_utils.disable(MODULE, default_set=True)
    sys.path.remove(str(ADDON_PARENT))


def _raise(exc):
    raise exc


def set_address(address: str) -> None:
    preferences = bpy.context.preferences.addons[MODULE].preferences
    preferences.address = address


def pump(ops, until, timeout: float, on_tick=lambda: None) -> float:
    """Stand in for Blender's event loop: call the add-on's timer until `until()`."""
    started = time.monotonic()
    while not until():
        ops.tick()
        on_tick()
        if time.monotonic() - started > timeout:
            raise AssertionError(f"not done after {timeout} s (activity: {ops.STATE.activity!r}, "
                                 f"error: {ops.STATE.error!r})")
        time.sleep(0.002)
    return time.monotonic() - started


@pytest.fixture(scope="module")
def portrait(tmp_path_factory) -> Path:
    from skimage import data

    path = tmp_path_factory.mktemp("photo") / "astronaut.png"
    cv2.imwrite(str(path), cv2.cvtColor(data.astronaut(), cv2.COLOR_RGB2BGR))
    return path


@pytest.fixture(scope="module")
def created(ops, portrait):
    before = set(bpy.context.scene.objects)
    assert bpy.ops.avatar_runtime.create_avatar(filepath=str(portrait)) == {"FINISHED"}
    seconds = pump(ops, lambda: "create" not in ops.STATE.tasks, 60)
    assert not ops.STATE.error, ops.STATE.error
    new = [obj for obj in bpy.context.scene.objects if obj not in before]
    print(f"\ncreate avatar + export + import: {seconds:.2f} s")
    return new


@pytest.fixture(scope="module")
def rig(ops, created):
    return ops.find_rig(bpy.context)


# -- the driving video: the avatar rendered by the runtime with known expressions ------------
def video_motion(i: int) -> MotionFrame:
    phase = 2 * math.pi * i / VIDEO_FRAMES
    weights = {"jawOpen": 0.5 + 0.5 * math.sin(phase), "mouthSmileLeft": 0.5 - 0.5 * math.cos(phase),
               "mouthSmileRight": 0.5 - 0.5 * math.cos(phase), "eyeBlinkLeft": 0.8 * (i % 20 > 16)}
    rotation = euler_to_quat([0.3 * math.sin(phase), 0.1 * math.cos(phase), 0.05 * math.sin(2 * phase)])
    return MotionFrame.from_weights(weights, head_rotation=rotation)


@pytest.fixture(scope="module")
def video(oracle, rig, tmp_path_factory) -> tuple[Path, list[np.ndarray]]:
    """60 frames, lossless (FFV1), so Blender's decoder and OpenCV's see the same pixels."""
    path = tmp_path_factory.mktemp("video") / "drive.avi"
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"FFV1"), VIDEO_FPS, (VIDEO_SIZE, VIDEO_SIZE))
    camera = Camera.orbit(width=VIDEO_SIZE, height=VIDEO_SIZE)
    frames = []
    for i in range(VIDEO_FRAMES):
        rgba = oracle.render_frame(rig.avatar_id, video_motion(i), camera).astype(np.float32)
        alpha = rgba[..., 3:] / 255
        rgb = np.rint(rgba[..., :3] * alpha + 110 * (1 - alpha)).astype(np.uint8)
        frames.append(rgb)
        writer.write(cv2.cvtColor(rgb, cv2.COLOR_RGB2BGR))
    writer.release()
    return path, frames


@dataclass
class DriveRun:
    samples: list
    seconds: float
    fps: float
    checked_on_arrival: int
    max_arrival_error: float


@pytest.fixture(scope="module")
def driven(ops, rig, video) -> DriveRun:
    path, _ = video
    blocks = rig.mesh.data.shape_keys.key_blocks
    seen = {"count": 0, "checked": 0, "error": 0.0}

    def check_latest():  # values must be applied as samples arrive, not at the end
        drive = ops.STATE.drive
        if drive is None or len(drive.recording.samples) == seen["count"]:
            return
        seen["count"] = len(drive.recording.samples)
        latest = drive.recording.samples[-1]
        values = np.array([blocks[name].value for name in ARKIT_NAMES])
        seen["error"] = max(seen["error"], float(np.abs(values - latest.arkit).max()))
        seen["checked"] += 1

    assert bpy.ops.avatar_runtime.drive(filepath=str(path)) == {"FINISHED"}
    seconds = pump(ops, lambda: ops.STATE.drive is None, 120, on_tick=check_latest)
    assert not ops.STATE.error, ops.STATE.error
    samples = list(ops.STATE.recording.samples)
    fps = len(samples) / seconds
    print(f"\ndrive: {len(samples)} video frames solved and applied in {seconds:.2f} s = {fps:.1f} fps")
    return DriveRun(samples, seconds, fps, seen["checked"], seen["error"])


# -- install from the built zip --------------------------------------------------------------
INSTALL_SCRIPT = """
import json, sys, bpy
zip_path, out = sys.argv[-2], sys.argv[-1]
result = bpy.ops.extensions.package_install_files(filepath=zip_path, repo="user_default", enable_on_install=True)
module = "bl_ext.user_default.avatar_runtime_blender"
json.dump({"result": sorted(result), "enabled": module in bpy.context.preferences.addons,
           "operators": sorted(dir(bpy.ops.avatar_runtime)),
           "panel": hasattr(bpy.types, "AVATAR_RUNTIME_PT_main"),
           "address": bpy.context.preferences.addons[module].preferences.address}, open(out, "w"))
"""


def test_built_zip_installs_and_enables_in_a_fresh_user_dir(tmp_path):
    build = subprocess.run([sys.executable, str(ADDON_PARENT / "build.py"), "--out", str(tmp_path / "dist")],
                           capture_output=True, text=True, timeout=600)
    assert build.returncode == 0, build.stderr
    zip_path = Path(build.stdout.strip().splitlines()[-1])
    assert zip_path.name == "avatar_runtime_blender-0.1.0.zip"

    user = tmp_path / "user"
    env = {**os.environ, "BLENDER_USER_RESOURCES": str(user), "BLENDER_USER_CONFIG": str(user / "config"),
           "BLENDER_USER_SCRIPTS": str(user / "scripts"), "BLENDER_USER_EXTENSIONS": str(user / "extensions")}
    report = tmp_path / "report.json"
    run = subprocess.run([sys.executable, "-c", INSTALL_SCRIPT, str(zip_path), str(report)],
                         env=env, capture_output=True, text=True, timeout=120)
    assert run.returncode == 0 and report.exists(), run.stdout + run.stderr
    info = json.loads(report.read_text())
    assert info["result"] == ["FINISHED"] and info["enabled"] and info["panel"]
    for name in ("create_avatar", "drive", "bake", "render_from_server", "check_connection"):
        assert name in info["operators"]
    assert info["address"] == "tcp://127.0.0.1:5555"

    # Blender unpacked the bundled Linux wheels; they import on their own (no venv packages).
    site = next((user / "extensions").glob(".local/lib/python3.11/site-packages"))
    probe = f"import sys; sys.path.insert(0, {str(site)!r}); import zmq, msgpack; print(zmq.__file__)"
    imported = subprocess.run([sys.executable, "-I", "-S", "-c", probe], capture_output=True, text=True)
    assert imported.returncode == 0, imported.stderr
    assert imported.stdout.startswith(str(site))


# -- create ----------------------------------------------------------------------------------
def test_create_imports_one_rigged_textured_head(ops, created, rig):
    assert sorted(obj.type for obj in created) == ["ARMATURE", "MESH"]
    assert rig.armature in created and rig.mesh in created
    names = [block.name for block in rig.mesh.data.shape_keys.key_blocks]
    assert names == ["Basis", *ARKIT_NAMES]
    modifier = next(m for m in rig.mesh.modifiers if m.type == "ARMATURE")
    assert modifier.object == rig.armature
    assert {"head", "neck", "jaw"} <= set(rig.armature.data.bones.keys())
    images = [node.image for slot in rig.mesh.material_slots if slot.material
              for node in slot.material.node_tree.nodes if node.type == "TEX_IMAGE" and node.image]
    assert len(images) == 1
    assert images[0].size[0] >= 256 and images[0].packed_file is not None  # survives the temp glb


# -- drive from video ------------------------------------------------------------------------
def test_drive_applies_the_solved_weights_as_they_arrive(ops, rig, driven, video, oracle):
    assert [s.sequence for s in driven.samples] == list(range(VIDEO_FRAMES))
    np.testing.assert_allclose([s.timecode for s in driven.samples], np.arange(VIDEO_FRAMES) / VIDEO_FPS)
    assert driven.checked_on_arrival >= VIDEO_FRAMES // 4
    assert driven.max_arrival_error < 1e-6

    # The runtime, asked directly about the same pixels, solves the same weights.
    _, frames = video
    solve_seconds = 0.0
    for i in range(0, VIDEO_FRAMES, 12):
        png = cv2.imencode(".png", cv2.cvtColor(frames[i], cv2.COLOR_RGB2BGR))[1].tobytes()
        started = time.monotonic()
        expected = oracle.solve_motion(png, rig.avatar_id)
        solve_seconds += time.monotonic() - started
        np.testing.assert_allclose(driven.samples[i].arkit, expected.arkit, atol=1e-4)
        assert abs(np.dot(driven.samples[i].head_rotation, expected.head_rotation)) > 1 - 1e-6
    direct_fps = 5 / solve_seconds
    print(f"\nadd-on drive {driven.fps:.1f} fps vs. one-at-a-time SolveMotion from Python "
          f"{direct_fps:.1f} fps (ratio {driven.fps / direct_fps:.2f})")

    # The expression and head of the last frame are what the rig shows now.
    last = driven.samples[-1]
    blocks = rig.mesh.data.shape_keys.key_blocks
    np.testing.assert_allclose([blocks[n].value for n in ARKIT_NAMES], last.arkit, atol=1e-4)
    assert max(s.arkit[ARKIT_INDEX["jawOpen"]] for s in driven.samples) > 0.3  # the mouth moved

    bpy.context.view_layer.update()
    head = rig.armature.pose.bones["head"]
    turn = head.matrix.to_3x3() @ head.bone.matrix_local.to_3x3().inverted()  # armature space
    x, y, z, w = last.head_rotation
    expected_turn = AXES @ mathutils.Quaternion((w, x, y, z)).to_matrix() @ AXES.transposed()
    np.testing.assert_allclose(np.array(turn), np.array(expected_turn), atol=1e-5)
    yaws = [euler_yaw(s.head_rotation) for s in driven.samples]
    assert max(yaws) - min(yaws) > 0.2  # the head turned during the video


def euler_yaw(q) -> float:
    """Runtime yaw (about +Y) of a quaternion (x, y, z, w): the face direction's heading."""
    x, y, z, w = q
    face = mathutils.Quaternion((w, x, y, z)) @ mathutils.Vector((0, 0, 1))
    return math.atan2(face.x, face.z)


# -- bake --------------------------------------------------------------------------------------
def test_bake_keys_every_driven_channel_at_the_scene_rate(ops, rig, driven):
    scene = bpy.context.scene
    scene.render.fps, scene.render.fps_base, scene.frame_start = VIDEO_FPS, 1.0, 1
    assert bpy.ops.avatar_runtime.bake() == {"FINISHED"}
    key = rig.mesh.data.shape_keys
    assert key.animation_data.action is not None and rig.armature.animation_data.action is not None
    try:
        head = rig.armature.pose.bones["head"]
        for i in (0, 17, VIDEO_FRAMES - 1):  # frame = start + timecode * fps
            scene.frame_set(1 + i)
            sample = driven.samples[i]
            np.testing.assert_allclose([key.key_blocks[n].value for n in ARKIT_NAMES], sample.arkit, atol=1e-5)
            expected = ops.convert.head_pose_rotation(sample.head_rotation, head.bone.matrix_local)
            assert abs(np.dot(tuple(head.rotation_quaternion), expected)) > 1 - 1e-6

        # At 24 fps the same 2 s of timecodes key frames 1..48, interpolating between samples.
        scene.render.fps = 24
        assert bpy.ops.avatar_runtime.bake() == {"FINISHED"}
        assert scene.frame_end >= 48
        assert tuple(key.animation_data.action.frame_range) == (1.0, 48.0)
        scene.frame_set(25)  # t = 1 s = video frame 30
        np.testing.assert_allclose([key.key_blocks[n].value for n in ARKIT_NAMES], driven.samples[30].arkit,
                                   atol=1e-5)
    finally:
        key.animation_data_clear()
        rig.armature.animation_data_clear()
        scene.render.fps = VIDEO_FPS


# -- Live Link Face take -----------------------------------------------------------------------
def test_a_livelink_take_drives_the_rig(ops, rig, tmp_path):
    rng = np.random.default_rng(3)
    frames = [MotionFrame(rng.uniform(0, 1, 52).astype(np.float32),
                          euler_to_quat(rng.uniform(-0.4, 0.4, 3)).astype(np.float32),
                          sequence=i, timecode=i / 60) for i in range(20)]
    path = tmp_path / "take.csv"
    write_livelink_csv(frames, path, fps=60)
    assert bpy.ops.avatar_runtime.drive(filepath=str(path), take_fps=60) == {"FINISHED"}
    seconds = pump(ops, lambda: ops.STATE.drive is None, 10)
    assert 0.25 < seconds < 3  # played in real time: 20 frames at 60 fps
    recorded = ops.STATE.recording.samples
    assert len(recorded) == 20 and ops.STATE.recording.source == "take.csv"
    blocks = rig.mesh.data.shape_keys.key_blocks
    np.testing.assert_allclose([blocks[n].value for n in ARKIT_NAMES], frames[-1].arkit, atol=1e-6)
    bpy.context.view_layer.update()
    head = rig.armature.pose.bones["head"]
    turn = head.matrix.to_3x3() @ head.bone.matrix_local.to_3x3().inverted()
    x, y, z, w = frames[-1].head_rotation
    expected = AXES @ mathutils.Quaternion((w, x, y, z)).to_matrix() @ AXES.transposed()
    np.testing.assert_allclose(np.array(turn), np.array(expected), atol=1e-5)


# -- render from server ------------------------------------------------------------------------
def test_render_from_server_fills_an_image_from_the_active_camera(ops, rig, oracle):
    for block in rig.mesh.data.shape_keys.key_blocks:
        block.value = 0.0
    rig.armature.pose.bones["head"].rotation_quaternion = (1, 0, 0, 0)
    scene = bpy.context.scene
    camera = bpy.data.objects.new("Front", bpy.data.cameras.new("Front"))
    scene.collection.objects.link(camera)
    scene.camera = camera
    camera.location = (0.0, -1.3, -0.02)  # runtime (0, -0.02, 1.3): in front of the face
    camera.rotation_euler = (math.pi / 2, 0.0, 0.0)  # looking along +Y, Z up
    camera.data.lens = 100.0
    scene.render.resolution_x, scene.render.resolution_y, scene.render.resolution_percentage = 400, 300, 50

    assert bpy.ops.avatar_runtime.render_from_server() == {"FINISHED"}
    pump(ops, lambda: "render" not in ops.STATE.tasks, 30)
    assert not ops.STATE.error, ops.STATE.error
    image = bpy.data.images[ops.RENDER_IMAGE]
    assert tuple(image.size) == (200, 150)
    pixels = np.empty(200 * 150 * 4, np.float32)
    image.pixels.foreach_get(pixels)
    got = np.rint(pixels.reshape(150, 200, 4)[::-1] * 255).astype(np.uint8)  # row 0 = top
    alpha = got[..., 3]
    assert alpha[75, 100] == 255 and alpha[0, 0] == 0 and alpha[-1, -1] == 0 and alpha.mean() > 20

    # The same view asked of the runtime in its own terms: at (0, -0.02, 1.3) looking down -Z.
    c2w = np.eye(4)
    c2w[:3, 3] = 0.0, -0.02, 1.3
    fov = math.degrees(2 * math.atan(36.0 * 150 / 200 / 2 / 100.0))  # sensor width fits the width
    expected = oracle.render_frame(rig.avatar_id, MotionFrame.neutral(), Camera(c2w, fov, 200, 150))
    overlap = np.logical_and(alpha > 127, expected[..., 3] > 127).sum()
    union = np.logical_or(alpha > 127, expected[..., 3] > 127).sum()
    assert overlap / union > 0.99
    bpy.data.objects.remove(camera)


# -- the panel ---------------------------------------------------------------------------------
class FakeLayout:
    """Stands in for UILayout (no window headless): records what the panel draws."""

    def __init__(self, drawn: list):
        self.drawn = drawn
        self.alert = False

    def _nested(self, *args, **kwargs):
        return self

    box = row = column = _nested

    def label(self, text="", icon="NONE"):
        self.drawn.append(("label", text))

    def operator(self, idname, text="", icon="NONE"):
        self.drawn.append(("operator", idname))

    def enum_item_name(self, data, prop, identifier):
        return bpy.types.UILayout.enum_item_name(data, prop, identifier)


def test_panel_draws_status_and_every_action(ops, rig):
    from avatar_runtime_blender import panel

    drawn: list = []
    panel.AVATAR_RUNTIME_PT_main.draw(SimpleNamespace(layout=FakeLayout(drawn)), bpy.context)
    operators = {name for kind, name in drawn if kind == "operator"}
    assert {"avatar_runtime.create_avatar", "avatar_runtime.drive", "avatar_runtime.bake",
            "avatar_runtime.render_from_server", "avatar_runtime.check_connection"} <= operators
    labels = " | ".join(text for kind, text in drawn if kind == "label")
    assert f"Avatar: {rig.armature.name}" in labels and "ZeroMQ tcp://127.0.0.1:" in labels


# -- failures ------------------------------------------------------------------------------------
def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def test_a_dead_server_is_reported_within_two_seconds(ops, runtime, portrait):
    set_address(f"tcp://127.0.0.1:{free_port()}")
    try:
        started = time.monotonic()
        assert bpy.ops.avatar_runtime.create_avatar(filepath=str(portrait)) == {"FINISHED"}
        pump(ops, lambda: "create" not in ops.STATE.tasks, 5)
        assert time.monotonic() - started < 2.0
        assert "not answering" in ops.STATE.error and ops.STATE.connected is False
        assert bpy.ops.avatar_runtime.check_connection() == {"FINISHED"}  # still usable
        pump(ops, lambda: "check" not in ops.STATE.tasks, 5)
        assert "not answering" in ops.STATE.error
    finally:
        set_address(runtime.address)
    bpy.ops.avatar_runtime.check_connection()
    pump(ops, lambda: "check" not in ops.STATE.tasks, 5)
    assert ops.STATE.connected is True


def test_a_server_killed_mid_drive_stops_the_drive_cleanly(ops, runtime, rig, driven, video, tmp_path):
    data = tmp_path / "data"
    shutil.copytree(runtime.data_dir, data)  # a second runtime that knows the avatar
    doomed = start_runtime(data, tmp_path / "serve.log")
    set_address(doomed.address)
    try:
        assert bpy.ops.avatar_runtime.drive(filepath=str(video[0])) == {"FINISHED"}
        pump(ops, lambda: ops.STATE.drive is None or ops.STATE.drive.applied >= 5, 60)
        assert ops.STATE.drive is not None, ops.STATE.error
        doomed.process.kill()
        killed = time.monotonic()
        pump(ops, lambda: ops.STATE.drive is None, 5)
        assert time.monotonic() - killed < 2.0
        assert "not answering" in ops.STATE.error
        # Blender and the add-on carry on: what arrived can be baked, other calls work.
        assert 5 <= len(ops.STATE.recording.samples) < VIDEO_FRAMES
        assert bpy.ops.avatar_runtime.bake() == {"FINISHED"}
        rig.mesh.data.shape_keys.animation_data_clear()
        rig.armature.animation_data_clear()
    finally:
        doomed.stop()
        set_address(runtime.address)
    assert bpy.ops.avatar_runtime.check_connection() == {"FINISHED"}
    pump(ops, lambda: "check" not in ops.STATE.tasks, 5)
    assert ops.STATE.connected is True
