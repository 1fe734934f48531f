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

from conftest import wait_for_background_work  # noqa: E402

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


def start_runtime(data_dir: Path, log: Path, *extra: str) -> Runtime:
    """`avatar-runtime serve` on an ephemeral loopback port; its first stdout line names it."""
    process = subprocess.Popen(
        [str(SERVE), "serve", "--grpc", "none", "--zmq", "tcp://127.0.0.1:0", "--data-dir", str(data_dir),
         *extra], stdout=subprocess.PIPE, stderr=log.open("w"), text=True)
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
    wait_for_background_work()  # see conftest: bpy runs with no other Python thread at work
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


def set_address(address: str, token: str = "") -> None:
    preferences = bpy.context.preferences.addons[MODULE].preferences
    preferences.address = address
    preferences.token = token


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


@dataclass
class Created:
    objects: list
    progress: list  # every (stage, fraction) the panel could show, in order


@pytest.fixture(scope="module")
def created_run(ops, portrait) -> Created:
    before = set(bpy.context.scene.objects)
    progress: list = []

    def watch():
        value = ops.STATE.progress.get("create")
        if value is not None and (not progress or progress[-1] != value):
            progress.append(value)

    assert bpy.ops.avatar_runtime.create_avatar(filepath=str(portrait)) == {"FINISHED"}
    seconds = pump(ops, lambda: "create" not in ops.STATE.tasks, 60, on_tick=watch)
    assert not ops.STATE.error, ops.STATE.error
    new = [obj for obj in bpy.context.scene.objects if obj not in before]
    print(f"\ncreate avatar + export + import: {seconds:.2f} s; progress {progress}")
    return Created(new, progress)


@pytest.fixture(scope="module")
def created(created_run):
    return created_run.objects


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


@pytest.fixture(scope="module")
def built_zip(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("dist")
    build = subprocess.run([sys.executable, str(ADDON_PARENT / "build.py"), "--out", str(out)],
                           capture_output=True, text=True, timeout=600)
    assert build.returncode == 0, build.stderr
    zip_path = Path(build.stdout.strip().splitlines()[-1])
    assert zip_path.name == "avatar_runtime_blender-0.1.0.zip"
    return zip_path


# `blender --command extension validate PATH`, run through the bpy module: the same handler
# Blender's command line calls (bl_pkg's CLI, with Blender's list of valid tags).
VALIDATE_SCRIPT = """
import sys, bpy
from bl_pkg import bl_extension_cli
sys.exit(bl_extension_cli.cli_extension_handler(["validate", sys.argv[-1]]))
"""


def blender_validate(path: Path) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-c", VALIDATE_SCRIPT, str(path)], capture_output=True,
                          text=True, timeout=120)


def test_built_zip_passes_blenders_extension_validate(built_zip, tmp_path):
    run = blender_validate(built_zip)
    assert run.returncode == 0, run.stdout + run.stderr
    assert f'Success parsing TOML in "{built_zip}"' in run.stdout
    # The validator is a real check: the manifest as it was (a 70-character tagline) fails it.
    import zipfile

    bad = tmp_path / "bad.zip"
    with zipfile.ZipFile(built_zip) as source, zipfile.ZipFile(bad, "w") as target:
        for item in source.infolist():
            data = source.read(item)
            if item.filename == "blender_manifest.toml":
                data = re.sub(rb'(?m)^tagline = ".*"$',
                              b'tagline = "Photo to rigged head avatar, driven from video or Live Link Face takes"',
                              data)
            target.writestr(item, data)
    run = blender_validate(bad)
    assert run.returncode == 1
    assert 'key "tagline" invalid: a value no longer than 64 characters expected, found 70' in run.stdout


def test_built_zip_installs_and_enables_in_a_fresh_user_dir(built_zip, tmp_path):
    zip_path = built_zip
    user = tmp_path / "user"
    env = {**os.environ, "BLENDER_USER_RESOURCES": str(user), "BLENDER_USER_CONFIG": str(user / "config"),
           "BLENDER_USER_SCRIPTS": str(user / "scripts"), "BLENDER_USER_EXTENSIONS": str(user / "extensions")}
    report = tmp_path / "report.json"
    run = subprocess.run([sys.executable, "-c", INSTALL_SCRIPT, str(zip_path), str(report)],
                         env=env, capture_output=True, text=True, timeout=120)
    assert run.returncode == 0 and report.exists(), run.stdout + run.stderr
    info = json.loads(report.read_text())
    assert info["result"] == ["FINISHED"] and info["enabled"] and info["panel"]
    for name in ("create_avatar", "drive", "bake", "render_from_server", "check_connection", "cancel_task",
                 "refresh_avatars", "import_avatar", "calibrate_neutral", "reset_neutral"):
        assert name in info["operators"]
    assert info["address"] == "tcp://127.0.0.1:5555"

    # Blender unpacked the bundled Linux wheels; they import on their own (no venv packages).
    site = next((user / "extensions").glob(".local/lib/python3.11/site-packages"))
    probe = f"import sys; sys.path.insert(0, {str(site)!r}); import zmq, msgpack; print(zmq.__file__)"
    imported = subprocess.run([sys.executable, "-I", "-S", "-c", probe], capture_output=True, text=True)
    assert imported.returncode == 0, imported.stderr
    assert imported.stdout.startswith(str(site))


# -- create ----------------------------------------------------------------------------------
def test_create_imports_one_rigged_textured_bust(ops, created, rig):
    # The armature, the head (with the shape keys), its hair and its body.
    assert sorted(obj.type for obj in created) == ["ARMATURE", "MESH", "MESH", "MESH"]
    assert rig.armature in created and rig.mesh in created
    layers = sorted(obj.name for obj in created if obj.type == "MESH" and obj != rig.mesh)
    assert [name.rsplit("_", 1)[-1] for name in layers] == ["body", "hair"]
    assert all(obj.parent == rig.armature and obj[ops.AVATAR_ID_PROP] == rig.avatar_id
               for obj in created if obj.type == "MESH")
    names = [block.name for block in rig.mesh.data.shape_keys.key_blocks]
    assert names == ["Basis", *ARKIT_NAMES]
    modifier = next(m for m in rig.mesh.modifiers if m.type == "ARMATURE")
    assert modifier.object == rig.armature
    assert {"head", "neck", "jaw"} <= set(rig.armature.data.bones.keys())
    # One texture (shared by every material the export has), packed.
    images = list({node.image for slot in rig.mesh.material_slots if slot.material
                   for node in slot.material.node_tree.nodes if node.type == "TEX_IMAGE" and node.image})
    assert len(images) == 1
    assert images[0].size[0] >= 256 and images[0].packed_file is not None  # survives the temp glb


def test_create_shows_its_progress(created_run):
    stages = [stage for stage, _ in created_run.progress]
    fractions = [fraction for _, fraction in created_run.progress]
    assert stages[0] == "sending" and stages[-1] == "export" and len(set(stages)) >= 4, stages
    assert fractions == sorted(fractions) and fractions[0] == 0.0 and fractions[-1] == pytest.approx(0.9)


def test_create_can_be_cancelled_and_imports_nothing(ops, rig, portrait, tmp_path, oracle):
    other = tmp_path / "astronaut_flipped.png"  # a photo the runtime has not seen: a real create
    cv2.imwrite(str(other), cv2.imread(str(portrait))[:, ::-1])
    before = set(bpy.data.objects)
    assert bpy.ops.avatar_runtime.create_avatar(filepath=str(other)) == {"FINISHED"}
    pump(ops, lambda: ops.STATE.progress.get("create", ("", 0.0))[1] > 0.0, 30)  # the runtime is at it

    drawn: list = []
    draw_panel(drawn)
    assert ("operator", "avatar_runtime.cancel_task") in drawn
    assert any(kind == "progress" and text.startswith("Creating: ") for kind, text in drawn)
    assert ("operator", "avatar_runtime.create_avatar") not in drawn

    assert bpy.ops.avatar_runtime.cancel_task(task="create") == {"FINISHED"}
    seconds = pump(ops, lambda: "create" not in ops.STATE.tasks, 5)
    print(f"\ncreate cancelled {seconds * 1000:.0f} ms after the cancel")
    assert seconds < 0.5
    assert set(bpy.data.objects) == before and not ops.STATE.error
    assert ops.STATE.activity == "Create avatar cancelled" and "create" not in ops.STATE.progress
    assert not bpy.ops.avatar_runtime.cancel_task.poll()  # nothing left to cancel
    # The runtime stops the work too (at its next stage): the cancelled avatar is never stored.
    time.sleep(3.0)
    assert [a["id"] for a in oracle.list_avatars()] == [rig.avatar_id]


def test_the_avatar_browser_lists_runtime_avatars_and_imports_one(ops, rig, oracle, portrait):
    # A second avatar made by another client shows up in the list.
    flipped = cv2.imencode(".png", cv2.imread(str(portrait))[:, ::-1])[1].tobytes()
    oracle.create_avatar(flipped, "flipped")
    expected = {a["id"]: a["name"] for a in oracle.list_avatars()}
    assert bpy.ops.avatar_runtime.refresh_avatars() == {"FINISHED"}
    pump(ops, lambda: "list" not in ops.STATE.tasks, 30)
    assert not ops.STATE.error, ops.STATE.error
    browser = sys.modules["avatar_runtime_blender.browser"]
    items = bpy.context.window_manager.avatar_runtime_avatars
    assert {item.avatar_id: item.name for item in items} == expected
    for item in items:  # a thumbnail of each, rendered by the runtime: a bust on transparency
        image = browser.thumbnail(item.avatar_id)
        assert image is not None and tuple(image.size) == (96, 96)
        pixels = np.empty(96 * 96 * 4, np.float32)
        image.pixels.foreach_get(pixels)
        alpha = pixels.reshape(96, 96, 4)[..., 3]
        # Blender's row 0 is the bottom, where the shoulders reach the corners; the top's are clear.
        assert alpha[48, 48] == 1.0 and alpha[-1, 0] == 0.0 and alpha[-1, -1] == 0.0 and 0.1 < alpha.mean() < 0.95

    other = next(item for item in items if item.avatar_id != rig.avatar_id)
    bpy.context.window_manager.avatar_runtime_avatar_index = list(items).index(other)
    before = set(bpy.data.objects)
    assert bpy.ops.avatar_runtime.import_avatar() == {"FINISHED"}
    pump(ops, lambda: "import" not in ops.STATE.tasks, 60)
    assert not ops.STATE.error, ops.STATE.error
    new = [obj for obj in bpy.data.objects if obj not in before]
    try:
        assert sorted(obj.type for obj in new) == ["ARMATURE", "MESH", "MESH", "MESH"]
        assert all(obj[ops.AVATAR_ID_PROP] == other.avatar_id for obj in new)
        mesh = next(obj for obj in new if obj.type == "MESH" and obj.data.shape_keys)
        assert [b.name for b in mesh.data.shape_keys.key_blocks] == ["Basis", *ARKIT_NAMES]
        assert next(obj for obj in new if obj.type == "ARMATURE").name == f"{other.name} rig"
    finally:
        for obj in new:
            bpy.data.objects.remove(obj)
    assert ops.find_rig(bpy.context).avatar_id == rig.avatar_id


# -- drive from video ------------------------------------------------------------------------
def test_create_from_two_photos_fits_both_and_imports_one_rig(ops, rig, oracle, portrait, tmp_path):
    # The second photo: the same avatar rendered turned, so both show one person.
    turned = oracle.render_frame(rig.avatar_id, MotionFrame.from_weights(
        {}, head_rotation=euler_to_quat([math.radians(-25), 0.0, 0.0])), Camera.orbit(width=512, height=512))
    alpha = turned[..., 3:].astype(np.float32) / 255
    second = tmp_path / "turned.png"
    cv2.imwrite(str(second), cv2.cvtColor(np.rint(turned[..., :3] * alpha + 128 * (1 - alpha)).astype(np.uint8),
                                          cv2.COLOR_RGB2BGR))
    main = tmp_path / portrait.name
    shutil.copy(portrait, main)
    before = set(bpy.data.objects)
    assert bpy.ops.avatar_runtime.create_avatar(
        filepath=str(main), directory=str(tmp_path),
        files=[{"name": main.name}, {"name": second.name}]) == {"FINISHED"}
    pump(ops, lambda: "create" not in ops.STATE.tasks, 90)
    assert not ops.STATE.error, ops.STATE.error
    new = [obj for obj in bpy.data.objects if obj not in before]
    try:
        assert sorted(obj.type for obj in new) == ["ARMATURE", "MESH", "MESH", "MESH"]
        avatar_id = new[0][ops.AVATAR_ID_PROP]
        assert avatar_id != rig.avatar_id
        views = oracle.get_avatar(avatar_id)["meta"]["views"]
        assert [v["source"] for v in views] == ["image", "image 2"]
    finally:
        for obj in new:
            bpy.data.objects.remove(obj)
        oracle.delete_avatar(avatar_id)
    assert ops.find_rig(bpy.context).avatar_id == rig.avatar_id


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


def test_bake_keeps_the_footage_frame_numbers_when_frames_have_no_face(ops, rig, oracle, tmp_path):
    """Footage frames 0-2, 8-9 and 15 show no face: frame i still keys scene frame start + i."""
    faceless = {0, 1, 2, 8, 9, 15}
    count = 16
    path = tmp_path / "gaps.avi"
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"FFV1"), VIDEO_FPS, (VIDEO_SIZE, VIDEO_SIZE))
    camera = Camera.orbit(width=VIDEO_SIZE, height=VIDEO_SIZE)
    for i in range(count):
        rgb = np.full((VIDEO_SIZE, VIDEO_SIZE, 3), 110, np.uint8)
        if i not in faceless:
            rgba = oracle.render_frame(rig.avatar_id, video_motion(4 * i), camera).astype(np.float32)
            alpha = rgba[..., 3:] / 255
            rgb = np.rint(rgba[..., :3] * alpha + 110 * (1 - alpha)).astype(np.uint8)
        writer.write(cv2.cvtColor(rgb, cv2.COLOR_RGB2BGR))
    writer.release()

    assert bpy.ops.avatar_runtime.drive(filepath=str(path)) == {"FINISHED"}
    pump(ops, lambda: ops.STATE.drive is None, 120)
    assert not ops.STATE.error, ops.STATE.error
    recording = ops.STATE.recording
    samples = {s.sequence: s for s in recording.samples}
    assert sorted(samples) == sorted(set(range(count)) - faceless)

    scene = bpy.context.scene
    scene.render.fps, scene.render.fps_base, scene.frame_start = VIDEO_FPS, 1.0, 1
    key = rig.mesh.data.shape_keys
    try:
        assert bpy.ops.avatar_runtime.bake() == {"FINISHED"}
        assert "frames 1-3 not keyed (no face)" in ops.STATE.activity
        assert "2 frames without a face hold the last pose" in ops.STATE.activity
        assert "frame 16 not keyed (no face)" in ops.STATE.activity
        action = key.animation_data.action
        assert tuple(action.frame_range) == (4.0, 15.0)  # footage frames 3..14
        offsets = []
        for i in range(3, count - 1):
            scene.frame_set(1 + i)
            values = np.array([key.key_blocks[n].value for n in ARKIT_NAMES])
            source = samples.get(i) or samples[7]  # 8 and 9 hold frame 7's pose
            np.testing.assert_allclose(values, source.arkit, atol=1e-5)
            if i in samples:  # which footage frame does this scene frame show? (0 = its own)
                errors = {j: np.abs(values - np.array(s.arkit)).max() for j, s in samples.items()}
                offsets.append(min(errors, key=errors.get) - i)
        print(f"\nbake offsets (scene frame - footage frame) over {len(offsets)} faced frames: "
              f"{sorted(set(offsets))}")
        assert offsets == [0] * len(offsets)
    finally:
        key.animation_data_clear()
        rig.armature.animation_data_clear()


# -- neutral calibration -----------------------------------------------------------------------
MAIN = ("eyeBlinkLeft", "eyeBlinkRight", "jawOpen", "mouthSmileLeft", "mouthSmileRight", "browInnerUp",
        "browDownLeft", "browDownRight", "browOuterUpLeft", "browOuterUpRight")
# A performer whose face at rest reads as an expression: raised brows, a slight smile.
AT_REST = {"browInnerUp": 1.0, "browOuterUpLeft": 1.0, "browOuterUpRight": 1.0, "mouthSmileLeft": 0.4,
           "mouthSmileRight": 0.4}


def render_rgb(oracle, avatar_id, weights: dict, size: int = VIDEO_SIZE) -> np.ndarray:
    rgba = oracle.render_frame(avatar_id, MotionFrame.from_weights(weights),
                               Camera.orbit(width=size, height=size)).astype(np.float32)
    alpha = rgba[..., 3:] / 255
    return np.rint(rgba[..., :3] * alpha + 110 * (1 - alpha)).astype(np.uint8)


def png_of(rgb: np.ndarray) -> bytes:
    return cv2.imencode(".png", cv2.cvtColor(rgb, cv2.COLOR_RGB2BGR))[1].tobytes()


def main_weights(frame) -> dict[str, float]:
    return {name: round(float(frame.arkit[ARKIT_INDEX[name]]), 3) for name in MAIN}


def calibrate(ops, **kwargs) -> float:
    assert bpy.ops.avatar_runtime.calibrate_neutral(**kwargs) == {"FINISHED"}
    return pump(ops, lambda: "calibrate" not in ops.STATE.tasks, 30)


def reset(ops) -> float:
    assert bpy.ops.avatar_runtime.reset_neutral() == {"FINISHED"}
    return pump(ops, lambda: "calibrate" not in ops.STATE.tasks, 30)


@pytest.fixture
def uncalibrated(oracle, rig):
    """The module's avatar back at its source-photo neutral afterwards, whatever the test did."""
    yield
    oracle.calibrate_neutral(rig.avatar_id, reset=True)


def test_calibrating_on_a_photo_makes_it_read_at_rest_and_reset_undoes_it(ops, rig, oracle, portrait,
                                                                          tmp_path, uncalibrated):
    photo = tmp_path / "performer_at_rest.png"
    photo.write_bytes(png_of(render_rgb(oracle, rig.avatar_id, AT_REST, 512)))
    before = main_weights(oracle.solve_motion(photo.read_bytes(), rig.avatar_id))
    assert max(before["browInnerUp"], before["mouthSmileLeft"], before["mouthSmileRight"]) > 0.2, before

    seconds = calibrate(ops, source="FILE", filepath=str(photo))
    assert not ops.STATE.error, ops.STATE.error
    assert ops.STATE.activity.startswith(f"Neutral of {rig.armature.name} calibrated on performer_at_rest.png: "
                                         "at rest it now reads 0."), ops.STATE.activity
    after = main_weights(oracle.solve_motion(photo.read_bytes(), rig.avatar_id))
    replied = main_weights(ops.STATE.last_neutral)
    print(f"\ncalibrate on a photo ({seconds * 1000:.0f} ms): before {before}\n  after {after}")
    assert max(after.values()) < 0.15, after
    assert max(replied.values()) < 0.15, replied

    seconds = reset(ops)
    assert not ops.STATE.error, ops.STATE.error
    assert ops.STATE.activity == f"Neutral of {rig.armature.name} reset to the one estimated from its source photo"
    assert max(ops.STATE.last_neutral.arkit) == 0.0
    again = main_weights(oracle.solve_motion(photo.read_bytes(), rig.avatar_id))
    print(f"reset ({seconds * 1000:.0f} ms): {again}")
    for name in ("browInnerUp", "mouthSmileLeft", "mouthSmileRight"):
        assert again[name] == pytest.approx(before[name], abs=0.05)

    # A real photo too: the portrait the avatar was made from, taken as the face at rest.
    calibrate(ops, source="FILE", filepath=str(portrait))
    assert not ops.STATE.error, ops.STATE.error
    real = main_weights(oracle.solve_motion(portrait.read_bytes(), rig.avatar_id))
    print(f"calibrated on {portrait.name}: {real}")
    assert max(real.values()) < 0.15, real


def test_calibrating_on_the_current_frame_of_the_drive_footage(ops, rig, oracle, tmp_path, uncalibrated):
    """Footage at 15 fps in a 30 fps scene: footage frame i is on scene frame start + 2 i (the
    bake's clock); frame 5 (the sixth) is the performer at rest, the others are expressions."""
    expressions = [{"jawOpen": 0.7}, {"mouthSmileLeft": 0.8, "mouthSmileRight": 0.8}, {"jawOpen": 0.4},
                   {"browDownLeft": 0.8, "browDownRight": 0.8}, {"jawOpen": 0.9}, AT_REST, {"jawOpen": 0.7},
                   {"jawOpen": 0.2}]
    frames = [render_rgb(oracle, rig.avatar_id, weights) for weights in expressions]
    path = tmp_path / "take_with_rest.avi"
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"FFV1"), 15, (VIDEO_SIZE, VIDEO_SIZE))
    for rgb in frames:
        writer.write(cv2.cvtColor(rgb, cv2.COLOR_RGB2BGR))
    writer.release()
    assert bpy.ops.avatar_runtime.drive(filepath=str(path)) == {"FINISHED"}
    pump(ops, lambda: ops.STATE.drive is None, 60)
    assert not ops.STATE.error, ops.STATE.error
    assert ops.STATE.footage.path == path and ops.STATE.footage.count == len(frames)

    scene = bpy.context.scene
    scene.render.fps, scene.render.fps_base, scene.frame_start = 30, 1.0, 1
    rest, jaw = png_of(frames[5]), png_of(frames[0])
    before = main_weights(oracle.solve_motion(rest, rig.avatar_id))
    scene.frame_set(11)
    drawn: list = []
    draw_panel(drawn)
    assert ("label", "Neutral: frame 6 of take_with_rest.avi") in drawn
    seconds = calibrate(ops, source="FOOTAGE")
    assert not ops.STATE.error, ops.STATE.error
    assert f"calibrated on frame 6 of {path.name} at scene frame 11: at rest it now reads" in ops.STATE.activity
    after = main_weights(oracle.solve_motion(rest, rig.avatar_id))
    opened = main_weights(oracle.solve_motion(jaw, rig.avatar_id))
    print(f"\ncalibrate on footage frame 6 ({seconds * 1000:.0f} ms): before {before}\n  after {after}\n"
          f"  frame 1 (jawOpen 0.7) now {opened}")
    assert max(after.values()) < 0.15, after
    assert opened["jawOpen"] > 0.3  # motion still reads, relative to the new rest

    scene.frame_set(40)  # past the footage: nothing is sent, the report says why
    with pytest.raises(RuntimeError, match="scene frame 40 is frame 21 of take_with_rest.avi, which has frames 1-8"):
        bpy.ops.avatar_runtime.calibrate_neutral(source="FOOTAGE")
    assert "calibrate" not in ops.STATE.tasks
    scene.frame_set(1)


def test_calibration_errors_are_reported_not_raised(ops, rig, oracle, runtime, tmp_path, uncalibrated):
    grey = tmp_path / "empty_wall.png"
    grey.write_bytes(png_of(np.full((256, 256, 3), 128, np.uint8)))
    calibrate(ops, source="FILE", filepath=str(grey))  # the operator itself finishes
    print(f"\nno face: {ops.STATE.error}")
    assert ops.STATE.error.startswith("Calibrate neutral: FAILED_PRECONDITION: no face found in empty_wall.png;")
    assert bpy.ops.avatar_runtime.calibrate_neutral.poll()  # still usable
    drawn: list = []
    draw_panel(drawn)
    assert ("label", ops.STATE.error) in drawn

    # Nothing to calibrate on: said at once, nothing sent.
    with pytest.raises(RuntimeError, match="cannot read .*missing.png"):
        bpy.ops.avatar_runtime.calibrate_neutral(source="FILE", filepath=str(tmp_path / "missing.png"))
    saved = ops.STATE.footage
    try:
        ops.STATE.footage = ops.Footage(tmp_path / "take.csv", take=True)
        with pytest.raises(RuntimeError, match="Live Link Face take .take.csv., which has no pixels"):
            bpy.ops.avatar_runtime.calibrate_neutral(source="FOOTAGE")
        ops.STATE.footage = None
        with pytest.raises(RuntimeError, match="no drive footage yet: drive from a video first"):
            bpy.ops.avatar_runtime.calibrate_neutral(source="FOOTAGE")
    finally:
        ops.STATE.footage = saved

    # Another runtime, with a token and without this avatar.
    photo = tmp_path / "rest.png"
    photo.write_bytes(png_of(render_rgb(oracle, rig.avatar_id, AT_REST, 256)))
    guarded = start_runtime(tmp_path / "data", tmp_path / "serve.log", "--token", "s3cret")
    try:
        set_address(guarded.address, "wrong")
        calibrate(ops, source="FILE", filepath=str(photo))
        assert ops.STATE.error.startswith("Calibrate neutral: UNAUTHENTICATED: the runtime refused the token")
        assert ops.STATE.connection.startswith("token refused by")
        set_address(guarded.address, "s3cret")
        reset(ops)
        print(f"unknown avatar: {ops.STATE.error}")
        assert ops.STATE.error.startswith(f"Reset neutral: NOT_FOUND: the runtime at {guarded.address} has no "
                                          f"avatar {rig.avatar_id} ({rig.armature.name})")
    finally:
        guarded.stop()
        set_address(runtime.address)
    calibrate(ops, source="FILE", filepath=str(photo))  # the add-on's own runtime: fine again
    assert not ops.STATE.error, ops.STATE.error


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

    def label(self, text="", icon="NONE", icon_value=0):
        self.drawn.append(("label", text))

    def operator(self, idname, text="", icon="NONE"):
        self.drawn.append(("operator", idname))
        return SimpleNamespace()

    def progress(self, factor=0.0, type="BAR", text=""):
        assert 0.0 <= factor <= 1.0
        self.drawn.append(("progress", text))

    def template_list(self, list_type, list_id, data, prop, active_data, active_prop, rows=5):
        items = getattr(data, prop)
        assert 0 <= getattr(active_data, active_prop) <= max(len(items) - 1, 0)
        ui_list = getattr(bpy.types, list_type)
        for item in items:  # what Blender does per visible row
            ui_list.draw_item(None, bpy.context, self, data, item, 0, active_data, active_prop)
        self.drawn.append(("list", list_type))

    def enum_item_name(self, data, prop, identifier):
        return bpy.types.UILayout.enum_item_name(data, prop, identifier)


def draw_panel(drawn: list) -> None:
    from avatar_runtime_blender import panel

    panel.AVATAR_RUNTIME_PT_main.draw(SimpleNamespace(layout=FakeLayout(drawn)), bpy.context)


def test_panel_draws_status_and_every_action(ops, rig):
    drawn: list = []
    draw_panel(drawn)
    operators = {name for kind, name in drawn if kind == "operator"}
    assert {"avatar_runtime.create_avatar", "avatar_runtime.drive", "avatar_runtime.bake",
            "avatar_runtime.render_from_server", "avatar_runtime.check_connection",
            "avatar_runtime.refresh_avatars", "avatar_runtime.import_avatar",
            "avatar_runtime.calibrate_neutral", "avatar_runtime.reset_neutral"} <= operators
    assert ("list", "AVATAR_RUNTIME_UL_avatars") in drawn
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


def test_check_connection_checks_the_token(ops, runtime, tmp_path):
    guarded = start_runtime(tmp_path / "data", tmp_path / "serve.log", "--token", "s3cret")
    try:
        for token, fragment in (("wrong", "refused the token in the add-on preferences"),
                                ("", "refused no token")):
            set_address(guarded.address, token)
            assert bpy.ops.avatar_runtime.check_connection() == {"FINISHED"}
            pump(ops, lambda: "check" not in ops.STATE.tasks, 5)
            assert ops.STATE.connected is False and ops.STATE.connection.startswith("token refused by")
            assert ops.STATE.error.startswith("Check connection: UNAUTHENTICATED: ")
            assert fragment in ops.STATE.error and "--token" in ops.STATE.error
        set_address(guarded.address, "s3cret")
        assert bpy.ops.avatar_runtime.check_connection() == {"FINISHED"}
        pump(ops, lambda: "check" not in ops.STATE.tasks, 5)
        assert ops.STATE.connected is True and not ops.STATE.error
        assert ops.STATE.connection == f"connected to {guarded.address} (serving, 0 avatars)"
    finally:
        guarded.stop()
        set_address(runtime.address)


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
        seconds = time.monotonic() - killed
        print(f"\ndrive stopped {seconds * 1000:.0f} ms after the runtime was killed")
        assert seconds < 2.0
        assert "lost the connection to avatar-runtime" in ops.STATE.error  # the socket monitor saw it
        # Blender and the add-on carry on: what arrived can be baked, other calls work.
        assert 5 <= len(ops.STATE.recording.samples) < VIDEO_FRAMES
        assert bpy.ops.avatar_runtime.bake() == {"FINISHED"}
        assert "face" not in ops.STATE.activity  # unsolved frames are not faceless ones
        rig.mesh.data.shape_keys.animation_data_clear()
        rig.armature.animation_data_clear()
    finally:
        doomed.stop()
        set_address(runtime.address)
    assert bpy.ops.avatar_runtime.check_connection() == {"FINISHED"}
    pump(ops, lambda: "check" not in ops.STATE.tasks, 5)
    assert ops.STATE.connected is True
