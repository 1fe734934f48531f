"""Operators, and the main-thread half of background work.

Network calls run on worker threads (`tasks.Task`, `drive.SolvePipeline`); their results
reach Blender through `STATE.mailbox`, drained by `tick`, the add-on's one `bpy.app.timers`
function, which also advances a running drive. Operators start work and return at once;
failures are reported from the timer and never leave the operators unusable.
"""

from __future__ import annotations

import contextlib
import shutil
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

import bpy
import numpy as np
from bpy.props import CollectionProperty, EnumProperty, FloatProperty, StringProperty
from bpy_extras.io_utils import ImportHelper

from . import convert, prefs
from .client import CANCELLED, UNAUTHENTICATED, UNAVAILABLE, Client, RenderedImage, ServerError, Settings
from .drive import Finished, Playback, Skipped, SolvePipeline, png_level
from .imaging import blender_pixels_to_rgb8, encode_png, rgba8_to_blender_pixels
from .motion import ARKIT_NAMES, MotionFileError, MotionSample, read_livelink_csv, resample
from .tasks import Mailbox, Task

AVATAR_ID_PROP = "avatar_runtime_id"  # custom property on the imported armature and mesh
HEAD_BONE = "head"
RENDER_IMAGE = "Avatar Runtime Render"
TICK_S = 0.01
TAKE_SUFFIXES = (".csv",)
MOVIE_SUFFIXES = (".mp4", ".mov", ".avi", ".mkv", ".webm", ".m4v")
MOVIE_GLOB = ";".join(f"*{suffix}" for suffix in MOVIE_SUFFIXES)
IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".webp", ".bmp", ".tif", ".tiff")
# What a neutral calibration is judged by in its report (the channels a face at rest moves most).
MAIN_CHANNELS = ("eyeBlinkLeft", "eyeBlinkRight", "jawOpen", "mouthSmileLeft", "mouthSmileRight",
                 "browInnerUp", "browDownLeft", "browDownRight", "browOuterUpLeft", "browOuterUpRight")


# -- state shared by the operators, the timer and the panel ------------------------------
@dataclass
class Recording:
    """Motion applied during a drive, kept for baking, on the footage's clock: timecode 0 is
    the footage's first frame, whether or not it had a face."""

    armature: str
    mesh: str
    source: str
    samples: list[MotionSample] = field(default_factory=list)
    missing: list[float] = field(default_factory=list)  # timecodes of footage frames without a face
    end: float | None = None  # timecode of the last footage frame answered (faced or not)


@dataclass(frozen=True)
class Footage:
    """What the last drive ran from: a movie (its frames are on the footage clock, frame i at
    i / fps, which the bake puts on scene frame start + i at the footage's rate), or a take."""

    path: Path
    fps: float = 0.0
    count: int = 0
    take: bool = False

    def frame_at(self, scene: bpy.types.Scene) -> int:
        """The footage frame shown at the scene's current frame (the bake's clock)."""
        scene_fps = scene.render.fps / scene.render.fps_base
        return round((scene.frame_current - scene.frame_start) * self.fps / scene_fps)


@dataclass
class State:
    mailbox: Mailbox = field(default_factory=Mailbox)
    connection: str = "not checked"
    connected: bool | None = None
    activity: str = ""
    error: str = ""
    tasks: dict[str, Task] = field(default_factory=dict)
    progress: dict[str, tuple[str, float]] = field(default_factory=dict)  # task -> (stage, 0..1)
    drive: "DriveSession | None" = None
    recording: Recording | None = None
    footage: Footage | None = None  # the last drive's source, for "calibrate on the current frame"
    last_neutral: MotionSample | None = None  # the last calibrated neutral as the runtime solves it


STATE = State()


def tick() -> float | None:
    """The add-on's timer: run what worker threads posted and advance a running drive.

    Blender calls it every TICK_S seconds while there is work (it unregisters itself when
    idle by returning None). Without Blender's event loop (a script, a test) call it directly.
    """
    STATE.mailbox.drain()
    if STATE.drive is not None:
        try:
            STATE.drive.tick()
        except Exception as exc:  # noqa: BLE001 - end the drive, keep the timer alive
            STATE.drive.stop(f"{type(exc).__name__}: {exc}", failed=True)
    STATE.tasks = {name: task for name, task in STATE.tasks.items() if not task.finished}
    STATE.progress = {name: value for name, value in STATE.progress.items() if name in STATE.tasks}
    _redraw_panels()
    busy = STATE.drive is not None or STATE.tasks or not STATE.mailbox.empty()
    return TICK_S if busy else None


def _ensure_ticking() -> None:
    if not bpy.app.timers.is_registered(tick):
        # Persistent: work started before a file load still reports when it ends.
        bpy.app.timers.register(tick, first_interval=0.0, persistent=True)


@bpy.app.handlers.persistent
def stop_drive_on_load(*_args) -> None:
    """A drive cannot follow its avatar into another file (load_pre handler)."""
    if STATE.drive is not None:
        STATE.drive.stop("stopped (another file was loaded)", report=False)
    STATE.recording = None


def shutdown() -> None:
    """Stop all work (on unregister)."""
    if STATE.drive is not None:
        STATE.drive.stop("stopped (add-on disabled)", report=False)
    for task in STATE.tasks.values():
        task.cancel()
    if bpy.app.timers.is_registered(tick):
        bpy.app.timers.unregister(tick)


def _start_task(name: str, work, on_done, settings: Settings, label: str | None = None) -> Task:
    """Run `work(task)` on a worker thread; `on_done(result)` on the main thread. A cancelled
    task (`cancel_task`) ends with an INFO report, not an error."""
    label = label or name

    def on_error(exc: BaseException) -> None:
        if isinstance(exc, ServerError) and exc.code == CANCELLED:
            STATE.activity = f"{label} cancelled"
            _report("INFO", STATE.activity)
        else:
            _fail(f"{label}: {_call_failed(exc, settings)}")

    STATE.error = ""
    task = Task(name, work, STATE.mailbox, on_done=on_done, on_error=on_error).start()
    STATE.tasks[name] = task
    _ensure_ticking()
    return task


def _call_failed(exc: BaseException, settings: Settings) -> str:
    """Note what a failed call says about the connection; returns the message to show."""
    if isinstance(exc, ServerError) and exc.code == UNAVAILABLE:
        STATE.connected = False
        STATE.connection = f"no answer from {settings.address}"
        return exc.message
    if isinstance(exc, ServerError) and exc.code == UNAUTHENTICATED:
        STATE.connected = False
        STATE.connection = f"token refused by {settings.address}"
        what = "the token in the add-on preferences" if settings.token else "no token"
        return (f"UNAUTHENTICATED: the runtime refused {what} ({exc.message}); set Token in the "
                "add-on preferences to the runtime's --token")
    if isinstance(exc, ServerError):
        return f"{exc.code}: {exc.message}"
    return f"{type(exc).__name__}: {exc}"


def _set_progress(name: str, stage: str, fraction: float) -> None:
    if name in STATE.tasks:
        STATE.progress[name] = (stage, min(max(fraction, 0.0), 1.0))


def _set_activity(text: str) -> None:
    STATE.activity = text


def _mark_connected(settings: Settings) -> None:
    STATE.connected = True
    STATE.connection = f"connected to {settings.address}"


def _fail(message: str) -> None:
    STATE.error = message
    STATE.activity = ""
    _report("ERROR", message)


def _report(level: str, message: str) -> None:
    """Report from the timer (no operator of ours is running) through an internal operator,
    so the message shows in the status bar and the Info editor like any operator report."""
    try:
        bpy.ops.avatar_runtime.report(level=level, message=message)
    except RuntimeError as exc:
        # Called from Python, an operator's ERROR report also comes back as an exception.
        if message not in str(exc):
            print(f"avatar-runtime {level}: {message}")
    except AttributeError:  # the operator is gone (during unregister)
        print(f"avatar-runtime {level}: {message}")


def _redraw_panels() -> None:
    wm = bpy.context.window_manager
    for window in wm.windows if wm else ():
        for area in window.screen.areas:
            if area.type == "VIEW_3D":
                area.tag_redraw()


def _ui_context():
    """A context override with a window and a 3D view, for operators called from the timer."""
    wm = bpy.context.window_manager
    if not wm or not wm.windows:
        return contextlib.nullcontext()
    window = wm.windows[0]
    area = next((a for a in window.screen.areas if a.type == "VIEW_3D"), None)
    if area is None:
        return bpy.context.temp_override(window=window, screen=window.screen)
    return bpy.context.temp_override(window=window, screen=window.screen, area=area)


# -- avatars in the scene ----------------------------------------------------------------
@dataclass(frozen=True)
class Rig:
    """An imported avatar: its armature, its mesh with the ARKit shape keys, its runtime id."""

    armature: bpy.types.Object
    mesh: bpy.types.Object
    avatar_id: str

    @property
    def head(self) -> bpy.types.PoseBone | None:
        return self.armature.pose.bones.get(HEAD_BONE)


def find_rig(context: bpy.types.Context) -> Rig | None:
    """The active object's avatar, else the first avatar in the scene."""
    candidates = [context.active_object, *context.scene.objects]
    for obj in candidates:
        if obj is not None and AVATAR_ID_PROP in obj:
            rig = _rig_of(obj)
            if rig is not None:
                return rig
    return None


def rig_by_names(armature: str, mesh: str) -> Rig | None:
    """Look a rig up again (across timer ticks objects may have been deleted)."""
    arm, obj = bpy.data.objects.get(armature), bpy.data.objects.get(mesh)
    if arm is None or obj is None or AVATAR_ID_PROP not in arm:
        return None
    return Rig(arm, obj, str(arm[AVATAR_ID_PROP]))


def _rig_of(obj: bpy.types.Object) -> Rig | None:
    avatar_id = str(obj[AVATAR_ID_PROP])
    if obj.type == "ARMATURE":
        meshes = [c for c in obj.children if c.type == "MESH" and c.data.shape_keys]
        return Rig(obj, meshes[0], avatar_id) if meshes else None
    if obj.type == "MESH" and obj.parent is not None and obj.parent.type == "ARMATURE":
        return Rig(obj.parent, obj, avatar_id)
    return None


def apply_sample(rig: Rig, sample: MotionSample) -> None:
    """Set the 52 ARKit shape keys and the head bone from one motion sample."""
    blocks = rig.mesh.data.shape_keys.key_blocks
    for name, value in zip(ARKIT_NAMES, sample.arkit):
        block = blocks.get(name)
        if block is not None:
            block.value = value
    head = rig.head
    if head is not None:
        head.rotation_mode = "QUATERNION"
        head.rotation_quaternion = convert.head_pose_rotation(sample.head_rotation, head.bone.matrix_local)


def current_motion(rig: Rig) -> dict:
    """The rig's current expression and head rotation as a runtime MotionFrame map."""
    blocks = rig.mesh.data.shape_keys.key_blocks
    arkit = [float(blocks[name].value) if name in blocks else 0.0 for name in ARKIT_NAMES]
    motion = {"arkit": arkit}
    head = rig.head
    if head is not None:  # whatever its rotation mode
        pose = head.matrix_basis.to_quaternion()
        motion["head_rotation"] = list(convert.head_rotation_from_pose(pose, head.bone.matrix_local))
    return motion


def import_avatar(avatar: dict, files: dict[str, bytes]) -> Rig:
    """Import an ExportMesh .glb of `avatar` (a runtime Avatar map) as a tagged rig (+ undo step)."""
    rig = _import_glb(avatar, files)
    with contextlib.suppress(RuntimeError):
        bpy.ops.ed.undo_push(message="Import Avatar")
    return rig


def _import_glb(avatar: dict, files: dict[str, bytes]) -> Rig:
    glb = next((name for name in files if name.endswith(".glb")), None)
    if glb is None:
        raise RuntimeError(f"ExportMesh sent no .glb file (got {', '.join(files) or 'nothing'})")
    folder = Path(tempfile.mkdtemp(prefix="avatar_runtime_"))
    try:
        path = folder / Path(glb).name
        path.write_bytes(files[glb])
        before = set(bpy.data.objects)
        options = bpy.ops.import_scene.gltf.get_rna_type().properties
        extra = {"disable_bone_shape": True} if "disable_bone_shape" in options else {}
        with _ui_context():
            result = bpy.ops.import_scene.gltf(filepath=str(path), **extra)
        if "FINISHED" not in result:
            raise RuntimeError(f"Blender's glTF importer could not read {path.name}")
        new = [obj for obj in bpy.data.objects if obj not in before]
        for image in bpy.data.images:  # textures must not point into the folder removed below
            if image.filepath and Path(bpy.path.abspath(image.filepath)).parent == folder and not image.packed_file:
                image.pack()
    finally:
        shutil.rmtree(folder, ignore_errors=True)
    armature = next((obj for obj in new if obj.type == "ARMATURE"), None)
    mesh = next((obj for obj in new if obj.type == "MESH" and obj.data.shape_keys), None)
    if armature is None or mesh is None:
        raise RuntimeError("the exported glTF has no armature with a shape-keyed mesh")
    for obj in new:  # the armature, the head and its layers (hair, body)
        obj[AVATAR_ID_PROP] = avatar["id"]
    armature.name = f"{avatar.get('name') or mesh.name} rig"
    return Rig(armature, mesh, avatar["id"])


# -- driving -----------------------------------------------------------------------------
class DriveSession:
    """Samples from a source applied to a rig as they come, and recorded for baking."""

    def __init__(self, rig: Rig, source: str):
        self.recording = Recording(rig.armature.name, rig.mesh.name, source)
        self.started = time.monotonic()
        self.last_applied = self.started
        self.skipped = 0

    @property
    def applied(self) -> int:
        return len(self.recording.samples)

    @property
    def fps(self) -> float:
        elapsed = self.last_applied - self.started
        return self.applied / elapsed if elapsed > 0 else 0.0

    def apply(self, sample: MotionSample) -> None:
        rig = rig_by_names(self.recording.armature, self.recording.mesh)
        if rig is None:
            self.stop("the avatar was deleted", failed=True)
            return
        apply_sample(rig, sample)
        self.recording.samples.append(sample)
        self.last_applied = time.monotonic()
        STATE.activity = f"Driving: {self.applied} frames, {self.fps:.1f} fps"

    def tick(self) -> None:
        raise NotImplementedError

    def stop(self, reason: str, failed: bool = False, report: bool = True) -> None:
        """End the session; what was applied so far stays recorded for baking."""
        if STATE.drive is self:
            STATE.drive = None
        self._release()
        STATE.recording = self.recording if self.recording.samples else STATE.recording
        if failed:
            _fail(f"Drive stopped after {self.applied} frames: {reason}")
        else:
            STATE.activity = f"Drive {reason}: {self.applied} frames at {self.fps:.1f} fps"
            if self.skipped:
                STATE.activity += f" ({self.skipped} without a face skipped)"
            if report:
                _report("INFO", STATE.activity)

    def _release(self) -> None:
        pass


class TakeDrive(DriveSession):
    """A Live Link Face take played back in real time (no runtime needed)."""

    def __init__(self, rig: Rig, source: str, samples: list[MotionSample]):
        super().__init__(rig, source)
        self.playback = Playback(samples)
        self.recording.end = max((s.timecode for s in samples), default=None)

    def tick(self) -> None:
        for sample in self.playback.poll():
            self.apply(sample)
            if STATE.drive is not self:
                return
        if self.playback.done:
            self.stop("finished")


class MovieFrames:
    """A movie read frame by frame with Blender's own decoder (an Image of source MOVIE).

    `Image.scale(w, h, frame=n)` loads frame n of the movie into the image buffer (scaled),
    where `Image.pixels` can read it: no extra dependency, works without a display.
    """

    def __init__(self, path: Path, max_side: int):
        if "frame" not in bpy.types.Image.bl_rna.functions["scale"].parameters:
            raise ValueError("this Blender version cannot read movie frames from Python "
                             "(Image.scale has no frame argument); drive from a Live Link Face take")
        try:
            self.image = bpy.data.images.load(str(path), check_existing=False)
        except RuntimeError as exc:
            raise ValueError(f"cannot open {path.name} as a movie: {exc}") from None
        if self.image.source != "MOVIE" or self.image.frame_duration < 1:
            bpy.data.images.remove(self.image)
            raise ValueError(f"{path.name} is not a movie file Blender can decode")
        self.image.name = f"{path.name} (avatar-runtime source)"
        self.count = self.image.frame_duration
        width, height = self.image.size
        scale = min(1.0, max_side / max(width, height))
        self.width, self.height = max(1, round(width * scale)), max(1, round(height * scale))
        self.fps = _movie_fps(path) or bpy.context.scene.render.fps / bpy.context.scene.render.fps_base

    def read(self, index: int) -> np.ndarray:
        """Frame `index` (0-based) as flat float RGBA pixels, row 0 = bottom."""
        self.image.scale(self.width, self.height, frame=index + 1)
        pixels = np.empty(self.width * self.height * 4, np.float32)
        self.image.pixels.foreach_get(pixels)
        return pixels

    def close(self) -> None:
        if self.image is not None:
            bpy.data.images.remove(self.image)
            self.image = None


def _movie_fps(path: Path) -> float:
    clip = bpy.data.movieclips.load(str(path), check_existing=False)
    try:
        return float(clip.fps)
    finally:
        bpy.data.movieclips.remove(clip)


class VideoDrive(DriveSession):
    """Movie frames solved on the runtime (SolveMotion), applied in frame order as they arrive."""

    def __init__(self, rig: Rig, source: str, frames: MovieFrames, pipeline: SolvePipeline):
        super().__init__(rig, source)
        self.frames = frames
        self.pipeline = pipeline
        self.next_frame = 0  # frame i is at timecode i / fps

    def tick(self) -> None:
        for event in self.pipeline.poll():
            if isinstance(event, MotionSample):
                self.apply(event)
                self.recording.end = event.timecode
            elif isinstance(event, Skipped):
                self.skipped += 1
                self.recording.missing.append(event.sequence / self.frames.fps)
                self.recording.end = event.sequence / self.frames.fps  # answered in frame order
            elif isinstance(event, Finished):
                self.stop("finished")
            elif isinstance(event, ServerError):
                self.stop(_call_failed(event, self.pipeline.settings), failed=True)
            if STATE.drive is not self:
                return
        # One frame per tick: decoding takes milliseconds of the main thread, so the UI stays
        # responsive; ticks come far more often than the runtime solves frames.
        if self.pipeline.room > 0 and self.next_frame < self.frames.count:
            index = self.next_frame
            self.pipeline.push(index, index / self.frames.fps, self.frames.read(index),
                               self.frames.width, self.frames.height)
            self.next_frame += 1
            if self.next_frame == self.frames.count:
                self.pipeline.close()

    def _release(self) -> None:
        self.pipeline.cancel()
        self.frames.close()


# -- baking ------------------------------------------------------------------------------
def _fcurve(action: bpy.types.Action, owner: bpy.types.ID, data_path: str, index: int, group: str):
    if hasattr(action, "fcurve_ensure_for_datablock"):  # Blender 4.4+: slotted actions
        return action.fcurve_ensure_for_datablock(owner, data_path, index=index, group_name=group)
    fcurve = action.fcurves.find(data_path, index=index)
    return fcurve or action.fcurves.new(data_path, index=index, action_group=group)


def _write_keys(fcurve: bpy.types.FCurve, frames: np.ndarray, values: np.ndarray) -> None:
    points = fcurve.keyframe_points
    points.clear()
    points.add(len(frames))
    co = np.empty(2 * len(frames), np.float32)
    co[0::2], co[1::2] = frames, values
    points.foreach_set("co", co)
    fcurve.update()


def _new_action(owner: bpy.types.ID, name: str) -> bpy.types.Action:
    action = bpy.data.actions.new(name)
    if owner.animation_data is None:
        owner.animation_data_create()
    owner.animation_data.action = action
    return action


@dataclass(frozen=True)
class Baked:
    """What `bake` keyed, in scene frames."""

    first: int
    last: int
    keyed: int
    held: list[int]  # keyed frames in a faceless stretch of footage (the last pose held)
    unkeyed_before: int  # faceless frames at the footage start: not keyed
    unkeyed_after: int  # faceless frames at the footage end: not keyed

    def summary(self) -> str:
        parts = [f"frames {self.first}-{self.last}"]
        if self.unkeyed_before:
            parts.append(_span(self.first - self.unkeyed_before, self.first - 1) + " not keyed (no face)")
        if self.held:
            parts.append(f"{len(self.held)} frames without a face hold the last pose")
        if self.unkeyed_after:
            parts.append(_span(self.last + 1, self.last + self.unkeyed_after) + " not keyed (no face)")
        return "; ".join(parts)


def _span(first: int, last: int) -> str:
    return f"frame {first}" if first == last else f"frames {first}-{last}"


def bake(rig: Rig, recording: Recording, scene: bpy.types.Scene) -> Baked:
    """Key the shape keys and the head bone from a recording, one key per scene frame.

    The footage's first frame (timecode 0) lands on the scene's start frame and timecode t on
    frame start + t * scene fps, whether or not the first frames had a face: faceless footage
    never shifts the timeline (see `motion.resample`).
    """
    fps = scene.render.fps / scene.render.fps_base
    result = resample(recording.samples, fps, origin=0.0, missing=recording.missing, end=recording.end)
    keyed = result.keyed
    frames = scene.frame_start + np.array([offset for offset, _ in keyed], np.float32)
    weights = np.array([sample.arkit for _, sample in keyed], np.float32)
    key = rig.mesh.data.shape_keys
    face = _new_action(key, f"{rig.mesh.name} ARKit")
    for i, name in enumerate(ARKIT_NAMES):
        if name in key.key_blocks:
            _write_keys(_fcurve(face, key, f'key_blocks["{name}"].value', 0, "ARKit"), frames, weights[:, i])
    head = rig.head
    if head is not None:
        rest = head.bone.matrix_local
        rotations = np.array([convert.head_pose_rotation(s.head_rotation, rest) for _, s in keyed])
        for k in range(1, len(rotations)):  # keep neighbours in one hemisphere: no flips
            if np.dot(rotations[k], rotations[k - 1]) < 0:
                rotations[k] = -rotations[k]
        head.rotation_mode = "QUATERNION"
        motion = _new_action(rig.armature, f"{rig.armature.name} head")
        path = f'pose.bones["{HEAD_BONE}"].rotation_quaternion'
        for i in range(4):
            _write_keys(_fcurve(motion, rig.armature, path, i, HEAD_BONE), frames, rotations[:, i])
    first, last = int(frames[0]), int(frames[-1])
    scene.frame_end = max(scene.frame_end, last)
    return Baked(first, last, len(keyed), [scene.frame_start + f for f in result.held],
                 result.unkeyed_before, result.unkeyed_after)


# -- operators ---------------------------------------------------------------------------
class AVATAR_RUNTIME_OT_report(bpy.types.Operator):
    """Show a message from background work as an operator report"""

    bl_idname = "avatar_runtime.report"
    bl_label = "Avatar Runtime Report"
    bl_options = {"INTERNAL"}

    level: EnumProperty(items=[(x, x.title(), "") for x in ("INFO", "WARNING", "ERROR")])
    message: StringProperty()

    def execute(self, context):
        self.report({self.level}, self.message)
        return {"FINISHED"}


class AVATAR_RUNTIME_OT_check_connection(bpy.types.Operator):
    """Ask the runtime whether it is serving and whether it accepts the token"""

    bl_idname = "avatar_runtime.check_connection"
    bl_label = "Check Connection"

    @classmethod
    def poll(cls, context):
        return "check" not in STATE.tasks

    def execute(self, context):
        settings = prefs.get(context).settings()
        STATE.connection = f"checking {settings.address}..."

        def work(task: Task) -> tuple[str, int]:
            with Client(settings) as client:
                status = client.health()  # answers without a token: is anything there
                return status, len(client.list_avatars())  # needs the token

        def done(result: tuple[str, int]) -> None:
            status, avatars = result
            _mark_connected(settings)
            STATE.connection += f" ({status.lower().replace('_', ' ')}, {avatars} avatars)"

        _start_task("check", work, done, settings, label="Check connection")
        return {"FINISHED"}


class AVATAR_RUNTIME_OT_cancel_task(bpy.types.Operator):
    """Stop waiting for this call; nothing is imported (the runtime may still finish creating
    the avatar, which then shows in the avatar list)"""

    bl_idname = "avatar_runtime.cancel_task"
    bl_label = "Cancel"

    task: StringProperty(name="Task", default="create", options={"SKIP_SAVE"})

    @classmethod
    def poll(cls, context):
        return bool(STATE.tasks)

    def execute(self, context):
        task = STATE.tasks.get(self.task)
        if task is None:
            self.report({"WARNING"}, f"Nothing to cancel ({self.task} is not running)")
            return {"CANCELLED"}
        task.cancel()
        STATE.activity = f"Cancelling {self.task}..."
        return {"FINISHED"}


class AVATAR_RUNTIME_OT_create_avatar(bpy.types.Operator, ImportHelper):
    """Create an avatar from a portrait photo (or several photos and/or a short video of
    the same person) on the runtime and import it (armature, head with the 52 ARKit shape
    keys, hair and body, textured materials)"""

    bl_idname = "avatar_runtime.create_avatar"
    bl_label = "Create Avatar from Images"
    bl_options = {"REGISTER"}

    filter_glob: StringProperty(default="*.png;*.jpg;*.jpeg;*.webp;*.bmp;*.tif;*.tiff;" + MOVIE_GLOB,
                                options={"HIDDEN"})
    # Several files may be picked: the active one is the main photo, the others more views.
    files: CollectionProperty(type=bpy.types.OperatorFileListElement, options={"HIDDEN", "SKIP_SAVE"})
    directory: StringProperty(subtype="DIR_PATH", options={"HIDDEN", "SKIP_SAVE"})

    @classmethod
    def poll(cls, context):
        return "create" not in STATE.tasks

    def execute(self, context):
        path = Path(bpy.path.abspath(self.filepath))
        picked = [Path(bpy.path.abspath(self.directory)) / f.name for f in self.files if f.name]
        try:
            inputs = _create_inputs(path, picked)
        except OSError as exc:
            self.report({"ERROR"}, f"Cannot read {exc.filename}: {exc.strerror}")
            return {"CANCELLED"}
        image, more_images, video = inputs
        settings = prefs.get(context).settings()
        views = 1 + len(more_images) if image else len(more_images)
        STATE.activity = f"Creating avatar from {path.name}" + (
            f" and {views - 1 + bool(video)} more" if views > 1 or video else "")

        def work(task: Task) -> tuple[dict, dict[str, bytes]]:
            # Progress: the runtime's stages take 0..90 %, the mesh export the rest.
            def progress(stage: str, fraction: float) -> None:
                task.post(_set_progress, "create", stage, 0.9 * fraction)
                task.post(_set_activity, f"Creating avatar: {stage} ({fraction:.0%})")

            task.post(_set_progress, "create", "sending", 0.0)
            with Client(settings) as client:
                avatar = client.create_avatar(image, path.stem, progress, task.cancelled,
                                              more_images=more_images, video=video)
                task.post(_mark_connected, settings)
                task.post(_set_progress, "create", "export", 0.9)
                task.post(_set_activity, "Exporting the avatar's mesh")
                files = client.export_mesh(avatar["id"], "glb", task.cancelled)
                if task.cancelled():
                    raise ServerError(CANCELLED, "CreateAvatar was cancelled")
                return avatar, files

        def done(result: tuple[dict, dict[str, bytes]]) -> None:
            if task.cancelled():  # cancelled after the last reply: still import nothing
                raise ServerError(CANCELLED, "CreateAvatar was cancelled")
            rig = import_avatar(*result)
            STATE.activity = f"Created {rig.armature.name}"
            _report("INFO", STATE.activity)

        task = _start_task("create", work, done, settings, label="Create avatar")
        return {"FINISHED"}


def _create_inputs(main: Path, picked: list[Path]) -> tuple[bytes, list[bytes], bytes]:
    """(main photo, more photos, video) from the file browser's pick: the active file is
    the main photo unless it is a video (then the photos are all "more")."""
    paths = [main] + [p for p in picked if p != main]
    videos = [p for p in paths if p.suffix.lower() in MOVIE_SUFFIXES]
    photos = [p for p in paths if p not in videos]
    image = photos[0].read_bytes() if photos and photos[0] == main else b""
    more = [p.read_bytes() for p in photos if p != main or not image]
    return image, more, videos[0].read_bytes() if videos else b""


class AVATAR_RUNTIME_OT_drive(bpy.types.Operator, ImportHelper):
    """Drive the avatar from a video (solved on the runtime frame by frame) or a Live Link
    Face take (.csv)"""

    bl_idname = "avatar_runtime.drive"
    bl_label = "Drive from Video or Take"

    filter_glob: StringProperty(default=MOVIE_GLOB + ";*.csv", options={"HIDDEN"})
    take_fps: FloatProperty(
        name="Take Frame Rate",
        description="Frame rate of a Live Link Face take (its timecodes count frames at this rate)",
        default=60.0, min=1.0, max=240.0,
    )

    @classmethod
    def poll(cls, context):
        return find_rig(context) is not None

    def execute(self, context):
        rig = find_rig(context)
        path = Path(bpy.path.abspath(self.filepath))
        if STATE.drive is not None:
            STATE.drive.stop("stopped (replaced by a new drive)")
        STATE.error = ""
        try:
            if path.suffix.lower() in TAKE_SUFFIXES:
                session = TakeDrive(rig, path.name, read_livelink_csv(path, self.take_fps))
                footage = Footage(path, take=True)
            else:
                preferences = prefs.get(context)
                frames = MovieFrames(path, preferences.max_frame_side)
                footage = Footage(path, frames.fps, frames.count)
                pipeline = SolvePipeline(preferences.settings(), rig.avatar_id, preferences.solve_window)
                session = VideoDrive(rig, path.name, frames, pipeline.start())
        except (MotionFileError, ValueError, ServerError) as exc:
            self.report({"ERROR"}, str(exc))
            return {"CANCELLED"}
        STATE.drive = session
        STATE.footage = footage
        STATE.activity = f"Driving from {path.name}"
        _ensure_ticking()
        return {"FINISHED"}


class AVATAR_RUNTIME_OT_stop_drive(bpy.types.Operator):
    """Stop driving; what was applied so far can be baked"""

    bl_idname = "avatar_runtime.stop_drive"
    bl_label = "Stop Drive"

    @classmethod
    def poll(cls, context):
        return STATE.drive is not None

    def execute(self, context):
        STATE.drive.stop("stopped")
        return {"FINISHED"}


class AVATAR_RUNTIME_OT_bake(bpy.types.Operator):
    """Key the driven shape keys and head rotation into Actions at the scene frame rate: the
    footage's first frame on the scene's start frame, each frame where its timecode puts it"""

    bl_idname = "avatar_runtime.bake"
    bl_label = "Bake to Keyframes"
    bl_options = {"REGISTER", "UNDO"}

    @classmethod
    def poll(cls, context):
        return STATE.drive is None and STATE.recording is not None and bool(STATE.recording.samples)

    def execute(self, context):
        recording = STATE.recording
        rig = rig_by_names(recording.armature, recording.mesh)
        if rig is None:
            self.report({"ERROR"}, f"The driven avatar ({recording.armature}) is gone")
            return {"CANCELLED"}
        baked = bake(rig, recording, context.scene)
        level = "WARNING" if baked.held or baked.unkeyed_before or baked.unkeyed_after else "INFO"
        STATE.activity = f"Baked {len(recording.samples)} samples from {recording.source} to {baked.summary()}"
        self.report({level}, STATE.activity)
        return {"FINISHED"}


class AVATAR_RUNTIME_OT_render_from_server(bpy.types.Operator):
    """Render the avatar on the runtime from the active camera, into an image"""

    bl_idname = "avatar_runtime.render_from_server"
    bl_label = "Render from Server"

    @classmethod
    def poll(cls, context):
        return context.scene.camera is not None and "render" not in STATE.tasks and find_rig(context) is not None

    def execute(self, context):
        scene, rig = context.scene, find_rig(context)
        camera = scene.camera
        if camera.data.type != "PERSP":
            self.report({"ERROR"}, "The runtime renders perspective cameras only")
            return {"CANCELLED"}
        if camera.data.shift_x or camera.data.shift_y:
            self.report({"WARNING"}, "Camera lens shift is ignored by the runtime")
        scale = scene.render.resolution_percentage / 100
        width = max(1, int(scene.render.resolution_x * scale))
        height = max(1, int(scene.render.resolution_y * scale))
        lens = camera.data
        fov = convert.fov_y_deg(lens.lens, lens.sensor_width, lens.sensor_height, lens.sensor_fit, width, height)
        view = convert.camera_to_runtime(rig.armature.matrix_world.inverted() @ camera.matrix_world,
                                         fov, width, height)
        motion = current_motion(rig)
        settings = prefs.get(context).settings()
        avatar_id = rig.avatar_id
        STATE.activity = f"Rendering {width}x{height} on the runtime"

        def work(task: Task) -> RenderedImage:
            with Client(settings) as client:
                return client.render_frame(avatar_id, view.c2w, view.fov_y_deg, width, height, motion)

        def done(frame: RenderedImage) -> None:
            _mark_connected(settings)
            image = _show_render(frame)
            STATE.activity = f"Rendered {image.name} ({frame.width}x{frame.height}, {frame.render_ms:.0f} ms)"

        _start_task("render", work, done, settings)
        return {"FINISHED"}


def _show_render(frame: RenderedImage) -> bpy.types.Image:
    image = bpy.data.images.get(RENDER_IMAGE)
    if image is None:
        image = bpy.data.images.new(RENDER_IMAGE, frame.width, frame.height, alpha=True)
    elif tuple(image.size) != (frame.width, frame.height):
        image.scale(frame.width, frame.height)
    image.alpha_mode = "STRAIGHT"
    image.pixels.foreach_set(rgba8_to_blender_pixels(frame.rgba, frame.width, frame.height))
    image.update()
    wm = bpy.context.window_manager
    for window in wm.windows if wm else ():
        for area in window.screen.areas:
            if area.type == "IMAGE_EDITOR":
                area.spaces.active.image = image
    return image



# -- neutral calibration ---------------------------------------------------------------------
class NeutralSourceError(ValueError):
    """No frame to calibrate on; the message says what to do instead."""


@dataclass(frozen=True)
class Neutral:
    """The face at rest to send: a file's bytes, or a movie frame as Blender decoded it."""

    what: str  # for reports: "frame 46 of drive.avi", "rest.png"
    data: bytes = b""
    pixels: np.ndarray | None = None  # Blender float RGBA, row 0 = bottom
    width: int = 0
    height: int = 0

    def image(self, address: str) -> bytes:
        """PNG/JPEG bytes for the runtime (movie frames encoded like drive frames)."""
        if self.pixels is None:
            return self.data
        return encode_png(blender_pixels_to_rgb8(self.pixels, self.width, self.height), png_level(address))


def movie_neutral(path: Path, index: int | None, scene: bpy.types.Scene, max_side: int,
                  where: str = "") -> Neutral:
    """Frame `index` (0-based; None = the one at the scene's current frame) of a movie, read
    and scaled as a drive reads it, so the neutral is the pixels a drive would send."""
    try:
        frames = MovieFrames(path, max_side)
    except ValueError as exc:
        raise NeutralSourceError(str(exc)) from None
    try:
        if index is None:
            index = Footage(path, frames.fps, frames.count).frame_at(scene)
            where = f" at scene frame {scene.frame_current}"
            if not 0 <= index < frames.count:
                raise NeutralSourceError(
                    f"scene frame {scene.frame_current} is frame {index + 1} of {path.name}, which has "
                    f"frames 1-{frames.count} (its frame 1 is on scene frame {scene.frame_start}); go to "
                    "a frame of the footage where the face is at rest")
        if not 0 <= index < frames.count:
            raise NeutralSourceError(f"{path.name} has no frame {index + 1} (it has {frames.count})")
        return Neutral(f"frame {index + 1} of {path.name}{where}", pixels=frames.read(index),
                       width=frames.width, height=frames.height)
    finally:
        frames.close()


def footage_neutral(context: bpy.types.Context) -> Neutral:
    """The current frame of the drive footage: while a drive runs, the frame the rig shows;
    otherwise the footage frame at the scene's current frame, on the bake's clock (footage
    frame 1 on the scene's start frame, at the footage's frame rate)."""
    footage = STATE.footage
    if footage is None:
        raise NeutralSourceError("no drive footage yet: drive from a video first, or calibrate "
                                 "from an image of the performer's face at rest")
    if footage.take:
        raise NeutralSourceError(f"the last drive was a Live Link Face take ({footage.path.name}), "
                                 "which has no pixels (Live Link Face calibrates on the phone); "
                                 "drive from a video, or calibrate from an image")
    if not footage.path.is_file():
        raise NeutralSourceError(f"the drive footage {footage.path} is gone; drive from a video "
                                 "again, or calibrate from an image")
    max_side = prefs.get(context).max_frame_side
    drive = STATE.drive
    if isinstance(drive, VideoDrive) and drive.recording.samples:
        index = drive.recording.samples[-1].sequence
        return movie_neutral(footage.path, index, context.scene, max_side, " (on the rig now)")
    return movie_neutral(footage.path, None, context.scene, max_side)


def file_neutral(path: Path, context: bpy.types.Context) -> Neutral:
    """An image file as it is (the runtime decodes it), or a movie's frame at the current
    scene frame."""
    if path.suffix.lower() in MOVIE_SUFFIXES:
        return movie_neutral(path, None, context.scene, prefs.get(context).max_frame_side)
    try:
        return Neutral(path.name, data=path.read_bytes())
    except OSError as exc:
        raise NeutralSourceError(f"cannot read {path}: {exc.strerror}") from None


def _explain_calibration(exc: ServerError, what: str, rig_name: str, avatar_id: str,
                         address: str) -> ServerError:
    """The runtime's error, said in the terms of the button that was pressed."""
    if exc.code == "FAILED_PRECONDITION" and "face" in exc.message.lower():
        message = (f"no face found in {what}; use a frame or an image where the performer's face "
                   f"is clearly visible, at rest (runtime: {exc.message})")
    elif exc.code == "NOT_FOUND":
        message = (f"the runtime at {address} has no avatar {avatar_id} ({rig_name}): it was "
                   "deleted there, or this is another runtime; import the avatar from this runtime "
                   f"or create it again (runtime: {exc.message})")
    elif exc.code == "INVALID_ARGUMENT" and what:
        message = f"the runtime cannot use {what}: {exc.message}"
    else:
        return exc
    return ServerError(exc.code, message, exc.request_id)


def _calibration_summary(sample: MotionSample) -> str:
    values = dict(zip(ARKIT_NAMES, sample.arkit))
    channel = max(MAIN_CHANNELS, key=lambda name: values[name])
    if values[channel] < 0.005:
        return "0.00 on blink, jaw, smile and brows"
    return f"{values[channel]:.2f} at most on blink, jaw, smile and brows ({channel})"


def start_calibration(rig: Rig, settings: Settings, neutral: Neutral | None) -> Task:
    """CalibrateNeutral for the rig's avatar on a worker thread: on `neutral`, or reset (None)."""
    avatar_id, name = rig.avatar_id, rig.armature.name
    what = neutral.what if neutral is not None else ""
    STATE.activity = f"Calibrating the neutral of {name} on {what}" if neutral else f"Resetting the neutral of {name}"

    def work(task: Task) -> MotionSample:
        with Client(settings) as client:
            try:
                if neutral is None:
                    return client.calibrate_neutral(avatar_id, reset=True)
                return client.calibrate_neutral(avatar_id, image=neutral.image(settings.address))
            except ServerError as exc:
                raise _explain_calibration(exc, what, name, avatar_id, settings.address) from None

    def done(sample: MotionSample) -> None:
        _mark_connected(settings)
        if neutral is None:
            STATE.activity = f"Neutral of {name} reset to the one estimated from its source photo"
        else:
            STATE.activity = f"Neutral of {name} calibrated on {what}: at rest it now reads {_calibration_summary(sample)}"
        STATE.last_neutral = sample
        _report("INFO", STATE.activity)

    return _start_task("calibrate", work, done, settings,
                       label="Reset neutral" if neutral is None else "Calibrate neutral")


class AVATAR_RUNTIME_OT_calibrate_neutral(bpy.types.Operator):
    """Take the performer's face at rest as the avatar's neutral, as Live Link Face's
    calibrate does: from then on the runtime reads every solve for this avatar relative to it"""

    bl_idname = "avatar_runtime.calibrate_neutral"
    bl_label = "Calibrate Neutral"

    source: EnumProperty(
        name="Source",
        items=[("FOOTAGE", "Current Frame", "The drive footage's frame at the scene's current frame "
                "(while driving: the frame on the rig)"),
               ("FILE", "Image File", "A photo of the performer's face at rest (or a movie: its frame "
                "at the scene's current frame)")],
        default="FOOTAGE", options={"SKIP_SAVE"},
    )
    filepath: StringProperty(name="File", subtype="FILE_PATH", options={"SKIP_SAVE"})
    filter_glob: StringProperty(default=";".join(f"*{s}" for s in IMAGE_SUFFIXES + MOVIE_SUFFIXES),
                                options={"HIDDEN"})

    @classmethod
    def description(cls, context, properties):
        if properties.source == "FILE":
            return ("Calibrate the avatar's neutral on a photo of the performer's face at rest "
                    "(or a movie's frame at the current scene frame)")
        return ("Calibrate the avatar's neutral on the current frame of the drive footage (the "
                "performer's face at rest): from then on the avatar reads motion relative to it")

    @classmethod
    def poll(cls, context):
        if find_rig(context) is None:
            cls.poll_message_set("Create or import an avatar first")
            return False
        return "calibrate" not in STATE.tasks

    def invoke(self, context, event):
        if self.source == "FILE" and not self.filepath:
            context.window_manager.fileselect_add(self)
            return {"RUNNING_MODAL"}
        return self.execute(context)

    def execute(self, context):
        rig = find_rig(context)
        try:
            if self.source == "FILE":
                if not self.filepath:
                    raise NeutralSourceError("pick an image of the performer's face at rest")
                neutral = file_neutral(Path(bpy.path.abspath(self.filepath)), context)
            else:
                neutral = footage_neutral(context)
        except NeutralSourceError as exc:
            STATE.error = f"Calibrate neutral: {exc}"
            self.report({"ERROR"}, STATE.error)
            return {"CANCELLED"}
        start_calibration(rig, prefs.get(context).settings(), neutral)
        return {"FINISHED"}


class AVATAR_RUNTIME_OT_reset_neutral(bpy.types.Operator):
    """Forget the calibrated neutral: back to the one the runtime estimated from the avatar's
    source photo"""

    bl_idname = "avatar_runtime.reset_neutral"
    bl_label = "Reset Neutral"

    @classmethod
    def poll(cls, context):
        return AVATAR_RUNTIME_OT_calibrate_neutral.poll(context)

    def execute(self, context):
        start_calibration(find_rig(context), prefs.get(context).settings(), None)
        return {"FINISHED"}


def neutral_hint(context: bpy.types.Context) -> str:
    """What Calibrate Neutral would take now, for the panel."""
    if "calibrate" in STATE.tasks:
        return "Neutral: calibrating..."
    footage = STATE.footage
    if footage is None or footage.take:
        return "Neutral: drive from a video, or pick an image"
    drive = STATE.drive
    if isinstance(drive, VideoDrive) and drive.recording.samples:
        return f"Neutral: frame {drive.recording.samples[-1].sequence + 1} of {footage.path.name} (on the rig)"
    index = footage.frame_at(context.scene)
    if not 0 <= index < footage.count:
        return f"Neutral: scene frame {context.scene.frame_current} is outside {footage.path.name}"
    return f"Neutral: frame {index + 1} of {footage.path.name}"
