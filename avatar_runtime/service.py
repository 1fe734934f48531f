"""`AvatarService`: the one object every transport calls (create, get, list, delete,
render, drive, solve_motion). No sockets here; errors are `AvatarError`s."""

from __future__ import annotations

import hashlib
import logging
import math
import os
import threading
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Callable, Iterable, Iterator, Sequence

import numpy as np

from .avatar import Avatar
from .errors import AvatarError, AvatarNotFound, FailedPrecondition, InvalidArgument, LimitExceeded
from .faces.detector import FaceAnalyzer, shared_analyzer
from .faces.image import decode_image
from .head.model import HeadModel, load_head_model
from .limits import Limits
from .lru import LruCache
from .mesh.export import mesh_files
from .mesh.inputs import check_expression
from .motion.calibration import ResponseCalibration
from .motion.features import NUM_FEATURES, rendered_rest
from .motion.frame import MotionFrame
from .motion.pose import quat_to_matrix
from .motion.response import ExpressionResponse
from .motion.smoothing import MotionSmoother
from .motion.solver import MotionSolver, Neutral
from .reconstruct.fit_reconstructor import FitReconstructor, avatar_mesh
from .render.avatar_mesh import AvatarMesh
from .render.camera import Camera
from .render.mesh_renderer import MeshRenderer, RenderOutput
from .store import AvatarStore

log = logging.getLogger(__name__)
Progress = Callable[[str, float], None]
RECONSTRUCTORS = ("fit", "portrait4d")
REFINE_MODES = ("", "volume", "volume-tiny")
# Tensors of an avatar's neutral: features at rest (estimated from the source photo, or a
# calibrated neutral frame's), that estimate kept, and a calibrated frame's fitted weights.
# The avatar's render at rest as the detector reads it (features), and a calibration
# frame's features and fitted weights when a client sent one.
REST_FEATURES, NEUTRAL_FEATURES, NEUTRAL_WEIGHTS = "rest_features", "neutral_features", "neutral_weights"


@dataclass(frozen=True)
class Smoothing:
    """One-Euro parameters for a drive session; `enabled=False` passes motion through."""

    enabled: bool = False
    min_cutoff: float = 1.5
    beta: float = 0.3

    def filter(self) -> Callable[[MotionFrame], MotionFrame]:
        """A fresh per-session filter: One-Euro when enabled, else frames pass unchanged."""
        if not self.enabled:
            return lambda frame: frame
        return MotionSmoother(self.min_cutoff, self.beta)


@dataclass(frozen=True)
class _Rig:
    renderer: object       # MeshRenderer, or a Portrait4DDriver for learned avatars
    identity: np.ndarray   # [K] the fitted head's identity
    mesh: AvatarMesh | None = None  # head + hair + bust (fit avatars)


class AvatarService:
    """Thread-safe facade over reconstructor, store, solver and renderer."""

    def __init__(self, data_dir: Path | str, limits: Limits = Limits(),
                 analyzer: FaceAnalyzer | None = None, renderer_cache: int = 8,
                 portrait4d_weights: Path | str | None = None, calibrate_after_create: bool = True,
                 store: AvatarStore | None = None):
        """calibrate_after_create: measure a new avatar's expression response (what the
        motion solver reads it with, ~5 s) in the background right away, not on first solve.
        store: the avatar store to use instead of an `AvatarStore` on `data_dir` (e.g. a
        `SharedAvatarStore` that other processes open too)."""
        self.limits = limits
        self.head: HeadModel = load_head_model()
        self.analyzer = analyzer or shared_analyzer()
        if store is None:
            store = AvatarStore(Path(data_dir), max_avatars=limits.max_avatars)
        self.store = store
        self.reconstructor = FitReconstructor(self.analyzer, self.head)
        self.solver = MotionSolver(self.analyzer, self.head)
        self.calibration = ResponseCalibration(self.store, self._measure_response)
        self._calibrate_after_create = calibrate_after_create
        self._rigs: LruCache[_Rig] = LruCache(renderer_cache)
        self._portrait4d_weights = portrait4d_weights
        self._portrait4d = None
        self._lock = threading.Lock()

    def warm_up(self) -> None:
        """Build MediaPipe's graphs now (~1.5 s) rather than inside the first request."""
        self.analyzer.all_landmarks(np.zeros((64, 64, 3), np.uint8))
        self.analyzer.matte(np.zeros((64, 64, 3), np.uint8))

    def store_ok(self) -> bool:
        """The avatar store can take writes (readiness): its folder is there and writable."""
        return self.store.root.is_dir() and os.access(self.store.root, os.W_OK | os.X_OK)

    # -- avatars ---------------------------------------------------------------------
    def create(self, image: bytes, name: str = "", reconstructor: str = "fit",
               progress: Progress = lambda stage, fraction: None,
               more_images: Sequence[bytes] = (), video: bytes = b"", refine: str = "") -> dict:
        """Image bytes -> stored avatar summary. Same photo, reconstructor and name -> the same
        avatar (nothing recomputed); another name -> another avatar (see `avatar_id_for`).

        more_images / video: more views of the same person (few-shot): the usable views are
        fitted jointly (`reconstruct/views.py` picks them; meta "views" / "skipped" says
        which). `image` may be empty when a video is given.
        refine: "volume" (or "volume-tiny", a seconds-long CPU check) also fits a per-person
        radiance field to the views (`reconstruct/volume_refine.py`; exported by
        `export_mesh(source="volume")`; minutes on a CPU, meant for a GPU).
        """
        if refine not in REFINE_MODES:
            raise InvalidArgument(f"unknown refine mode {refine!r}; allowed: "
                                  f"{', '.join(repr(m) for m in REFINE_MODES)}")
        if reconstructor not in RECONSTRUCTORS:
            raise InvalidArgument(f"unknown reconstructor {reconstructor!r}; available: "
                                  f"{', '.join(RECONSTRUCTORS)}")
        progress("decode", 0.0)
        avatar_id = avatar_id_for(image, reconstructor + (f"+{refine}" if refine else ""), name,
                                  more_images, video)
        if avatar_id in self.store:
            progress("done", 1.0)
            return self.store.get(avatar_id).summary()
        rgb, views = self._views(image, more_images, video, progress)
        # A learned avatar keeps the fitted head (mesh export, sampling band) plus the face
        # crop its encoders read; its weights are checked before any work is done.
        crop = self._portrait4d_model().config.encoder.image_size if reconstructor == "portrait4d" else None
        avatar = self.reconstructor.create(rgb, avatar_id, name or f"avatar-{avatar_id[:6]}", progress,
                                           crop_size=crop, more_views=views.views[1:] if views else (),
                                           refine=_refine_config(refine))
        if views:
            avatar.meta.update(views.report())
        avatar.reconstructor = reconstructor
        avatar.tensors[REST_FEATURES] = _rest_features(avatar.tensors)
        self.store.put(avatar)
        if self._calibrate_after_create:
            self.calibration.start(avatar_id)
        return avatar.summary()

    def _views(self, image: bytes, more_images: Sequence[bytes], video: bytes, progress: Progress):
        """(main RGB, the ViewSet) of a few-shot create; (RGB, None) for one photo."""
        if not more_images and not video:
            return decode_image(image, self.limits.image), None
        from .reconstruct.fit_reconstructor import WORK_SIDE
        from .faces.image import fit_within
        from .reconstruct.views import choose_views, video_frames

        def decoded(data: bytes, source: str) -> np.ndarray:
            try:
                return fit_within(decode_image(data, self.limits.image), WORK_SIDE)
            except AvatarError as error:  # say which of the images it was
                raise type(error)(f"{source}: {error.message}") from None

        candidates = []
        if image:
            candidates.append(("image", decoded(image, "image")))
        for k, data in enumerate(more_images, start=2):
            candidates.append((f"image {k}", decoded(data, f"image {k}")))
        if video:
            progress("video frames", 0.02)
            candidates += [(f"video frame {i}", rgb) for i, rgb in
                           video_frames(video, self.limits.max_video_bytes, WORK_SIDE)]
        progress("choosing views", 0.05)
        views = choose_views(candidates, self.analyzer, "image" if image else None)
        log.info("few-shot create: %d views kept, %d skipped", len(views.views), len(views.skipped))
        return views.views[0].rgb, views

    def get(self, avatar_id: str) -> dict:
        return self.store.get(avatar_id).summary()

    def avatar(self, avatar_id: str) -> Avatar:
        return self.store.get(avatar_id)

    def list(self) -> list[dict]:
        return self.store.list()

    def delete(self, avatar_id: str) -> None:
        self.store.delete(avatar_id)
        self.forget(avatar_id)

    def forget(self, avatar_id: str) -> None:
        """Drop what this process holds of an avatar (its renderer, its response): e.g. once
        another process sharing the store deleted it."""
        self.calibration.forget(avatar_id)
        self._rigs.pop(avatar_id)

    def prepare(self, avatar_id: str) -> None:
        """Load what rendering the avatar needs (store read, renderer) now, so that its
        first frame does not pay for it."""
        self._rig(avatar_id)

    # -- motion + rendering ------------------------------------------------------------
    def vertices(self, avatar_id: str, motion: MotionFrame) -> np.ndarray:
        """[V, 3] the avatar's head deformed and posed by `motion` (world, metres)."""
        return self._posed(self._rig(avatar_id).identity, motion)

    def _posed(self, identity: np.ndarray, motion: MotionFrame) -> np.ndarray:
        shaped = self.head.shape(identity, motion.arkit, motion.eye_gaze)
        return self.head.pose(shaped, quat_to_matrix(motion.head_rotation), motion.head_translation)

    def render(self, avatar_id: str, motion: MotionFrame | None = None,
               camera: Camera | None = None, depth: bool = True, normals: bool = True) -> RenderOutput:
        """One frame: RGBA (straight alpha), depth and normals; a pass not asked for is None
        (so a frame sent between processes carries only what the caller uses)."""
        motion = motion or MotionFrame.neutral()
        camera = camera or Camera.orbit()
        self.check_camera(camera)
        rig = self._rig(avatar_id)
        if not isinstance(rig.renderer, MeshRenderer):  # a learned avatar renders its own volume
            out = rig.renderer.render(motion, camera)
        else:
            out = rig.renderer.render(rig.mesh.vertices(motion), camera)
        if depth and normals:
            return out
        return replace(out, depth=out.depth if depth else None, normals=out.normals if normals else None)

    def drive(self, avatar_id: str, frames: Iterable[MotionFrame], camera: Camera | None = None,
              smoothing: Smoothing = Smoothing()) -> Iterator[tuple[MotionFrame, RenderOutput]]:
        """Render each incoming frame (after optional smoothing); yields (frame, render)."""
        self.store.get(avatar_id)  # unknown ids fail before the first frame arrives
        smooth = smoothing.filter()
        for frame in frames:
            frame = smooth(frame)
            yield frame, self.render(avatar_id, frame, camera)

    def solve_motion(self, image: bytes, avatar_id: str | None = None, sequence: int = 0,
                     timecode: float = 0.0, reading: str = "features") -> MotionFrame:
        """Image bytes -> ARKit weights + head pose (identity of `avatar_id` if given).
        reading: "features" for real faces, "fit" for the avatar's own renders (motion/solver.py)."""
        rgb = decode_image(image, self.limits.image)
        if avatar_id is None:
            return self.solver.solve_image(rgb, None, sequence, timecode, reading=reading)
        tensors = self.store.get(avatar_id).tensors
        return self.solver.solve_image(rgb, tensors["identity"], sequence, timecode,
                                       bias=tensors.get("landmark_bias"),
                                       response=self.calibration.get(avatar_id),
                                       neutral=_neutral_of(tensors), reading=reading)

    def solve_landmarks(self, avatar_id: str, landmarks: np.ndarray, width: int, height: int,
                        sequence: int = 0, timecode: float = 0.0) -> MotionFrame:
        """MediaPipe's 478 landmarks [478, 3] in pixels of a width x height image -> ARKit +
        head pose with the avatar's identity (detection skipped)."""
        tensors = self.store.get(avatar_id).tensors
        return self.solver.solve_landmarks(landmarks, width, height, tensors["identity"], sequence,
                                           timecode, bias=tensors.get("landmark_bias"),
                                           response=self.calibration.get(avatar_id),
                                           neutral=_neutral_of(tensors))[0]

    def calibrate_neutral(self, avatar_id: str, image: bytes | None = None,
                          landmarks: np.ndarray | None = None, width: int = 0,
                          height: int = 0) -> MotionFrame:
        """Take one frame of the driving face at rest (image bytes, or MediaPipe landmarks
        [478, 3] in pixels of a width x height image) as the avatar's neutral, as Live Link
        Face's calibration does: from now on every solve for this avatar reads motion
        relative to it (kept with the avatar). Returns that frame as now solved: all zero,
        up to the channels no feature or fit explains."""
        if (image is None) == (landmarks is None):
            raise InvalidArgument("calibrate_neutral takes one neutral frame: an image or landmarks")
        if image is not None:
            rgb = decode_image(image, self.limits.image)
            landmarks, height, width = self.analyzer.landmarks(rgb).landmarks, *rgb.shape[:2]
        response = self.calibration.get(avatar_id)  # stored first: its write keeps ours
        avatar = self.store.get(avatar_id)
        t = avatar.tensors
        _, fit = self.solver.solve_landmarks(landmarks, width, height, t["identity"],
                                             bias=t.get("landmark_bias"), response=response)
        tensors = {**t, NEUTRAL_FEATURES: self.solver.observe(landmarks, fit).astype(np.float32),
                   NEUTRAL_WEIGHTS: fit.expression.astype(np.float32)}
        if not self.store.put(replace(avatar, tensors=tensors), replace_only=True):
            raise AvatarNotFound(f"avatar {avatar_id!r} was deleted")
        return self.solve_landmarks(avatar_id, landmarks, width, height)

    def reset_neutral(self, avatar_id: str) -> None:
        """Forget a calibrated neutral: back to the avatar's own render at rest."""
        avatar = self.store.get(avatar_id)
        tensors = {k: v for k, v in avatar.tensors.items() if k not in (NEUTRAL_FEATURES, NEUTRAL_WEIGHTS)}
        self.store.put(replace(avatar, tensors=tensors), replace_only=True)

    def motion_from_code(self, avatar_id: str, code: np.ndarray, sequence: int = 0,
                         timecode: float = 0.0) -> MotionFrame:
        """An `embedding` motion source: the motion code of `MotionFrame.code` (63 values),
        which every avatar takes; a learned model trained on opaque embeddings is refused."""
        avatar = self.store.get(avatar_id)
        if avatar.reconstructor == "portrait4d":
            size = self._portrait4d_model().config.motion.embedding_dim
            if size:
                raise FailedPrecondition(
                    f"this portrait4d model takes opaque {size}-value embeddings, which the runtime "
                    "cannot drive yet; send arkit, image or landmarks motion")
        return MotionFrame.from_code(code, sequence, timecode)

    def export_mesh(self, avatar_id: str, format: str = "glb",
                    expression: np.ndarray | None = None, source: str = "mesh") -> dict[str, bytes]:
        """The avatar's mesh as {file name: bytes} (glb/ply: one file; obj: + .mtl + .png).

        source="volume": a portrait4d avatar's learned field, animated to `expression`
        (neutral by default), as an extracted surface (glb only).
        """
        avatar = self.store.get(avatar_id)
        field = None
        if source == "volume" and avatar.reconstructor == "portrait4d":
            field = self._portrait4d_field(avatar_id, expression)
        elif source == "volume":
            from .reconstruct.volume_refine import stored_field

            field = stored_field(avatar.tensors)  # refined at create (refine="volume")
        return mesh_files(avatar, self.head, format, f"avatar-{avatar_id}", expression,
                          source=source, field=field)

    # -- internals ---------------------------------------------------------------------
    def _rig(self, avatar_id: str) -> "_Rig":
        """What rendering an avatar needs, cached per avatar (no store read per frame)."""
        return self._rigs.get_or_make(avatar_id, lambda: self._make_rig(avatar_id))

    def _make_rig(self, avatar_id: str) -> _Rig:
        avatar = self.store.get(avatar_id)
        if avatar.reconstructor == "portrait4d":
            renderer = self._portrait4d_driver(avatar)
        else:
            # 4 sub-pixel rays per edge pixel (D3D 4x MSAA pattern): 8 cost 2-3 ms more at 512^2.
            mesh = avatar_mesh(self.head, avatar.tensors, avatar.meta)
            renderer = MeshRenderer(mesh.faces, mesh.face_uvs, mesh.texture,
                                    aa_samples=4, glossy=mesh.glossy_faces)
            return _Rig(renderer, avatar.tensors["identity"], mesh)
        return _Rig(renderer, avatar.tensors["identity"])

    def _portrait4d_model(self):
        """The learned reconstructor, loaded once; FailedPrecondition when no weights exist."""
        from .reconstruct.portrait4d import load_checkpoint

        with self._lock:
            if self._portrait4d is None:
                self._portrait4d = load_checkpoint(self._portrait4d_weights)
            return self._portrait4d

    def _portrait4d_driver(self, avatar: Avatar):
        from .reconstruct.portrait4d import Portrait4DDriver

        source = MotionFrame(avatar.tensors["source_expression"])
        return Portrait4DDriver(self._portrait4d_model(), avatar.tensors["source_image"], source,
                                head=self.head, identity=avatar.tensors["identity"])

    def _portrait4d_field(self, avatar_id: str, expression: np.ndarray | None):
        """The avatar's TriplaneField for `expression` (head pose neutral), from its driver."""
        import torch

        from .reconstruct.portrait4d.motion import motion_batch

        driver = self._rig(avatar_id).renderer
        motion = MotionFrame(check_expression(expression))  # None -> neutral
        with torch.no_grad():
            planes = driver.model.animate(driver.cache, motion_batch([motion], driver.device))
        return driver.model.field(planes[0])

    def _measure_response(self, avatar: Avatar, stop: threading.Event) -> ExpressionResponse | None:
        mesh = avatar_mesh(self.head, avatar.tensors, avatar.meta) if avatar.reconstructor == "fit" else None
        return self.solver.measure_response(avatar.tensors["identity"], avatar.tensors["texture"], stop,
                                            mesh=mesh)

    def check_camera(self, camera: Camera) -> None:
        """InvalidArgument / LimitExceeded unless `camera` can be rendered (before any work)."""
        check_camera(camera, self.limits)


def check_camera(camera: Camera, limits: Limits) -> None:
    """InvalidArgument / LimitExceeded unless `camera` can be rendered within `limits`."""
    side = limits.max_render_side
    if not (1 <= camera.width <= side and 1 <= camera.height <= side):
        raise LimitExceeded(f"render size {camera.width}x{camera.height} is outside 1..{side} "
                            f"px per side (limit max_render_side)")
    if not math.isfinite(camera.fov_y_deg) or not 1.0 <= camera.fov_y_deg <= 120.0:
        raise InvalidArgument(f"camera fov_y_deg must be in 1..120 deg, got {camera.fov_y_deg:g}")
    c2w = np.asarray(camera.c2w, np.float64)
    if c2w.shape != (4, 4) or not np.isfinite(c2w).all():
        raise InvalidArgument("camera c2w must be 16 finite numbers (4x4 row-major)")
    rotation = c2w[:3, :3]
    rigid = (np.allclose(c2w[3], (0, 0, 0, 1), atol=1e-6)
             and np.allclose(rotation @ rotation.T, np.eye(3), atol=1e-3)
             and np.linalg.det(rotation) > 0)
    if not rigid:
        raise InvalidArgument("camera c2w must be a rigid camera-to-world transform: its upper-left "
                              "3x3 a rotation (orthonormal, det +1, within 1e-3) and its bottom "
                              "row 0 0 0 1")


def _refine_config(mode: str):
    """The VolumeRefineConfig of a refine mode (None: no refinement)."""
    if not mode:
        return None
    from .reconstruct.volume_refine import VolumeRefineConfig

    return VolumeRefineConfig.tiny() if mode == "volume-tiny" else VolumeRefineConfig()


def _neutral_of(tensors: dict) -> Neutral:
    """The avatar's neutral: the calibration frame's, else its render at rest (computed
    here for avatars stored without it, or with the features of an older release)."""
    calibrated = tensors.get(NEUTRAL_FEATURES)
    if calibrated is not None and len(calibrated) == NUM_FEATURES:
        return Neutral(np.asarray(calibrated, np.float64), tensors.get(NEUTRAL_WEIGHTS))
    rest = tensors.get(REST_FEATURES)
    if rest is None or len(rest) != NUM_FEATURES:
        rest = _rest_features(tensors)
    return Neutral(np.asarray(rest, np.float64))


def _rest_features(tensors: dict) -> np.ndarray:
    return rendered_rest(tensors.get("identity"), tensors.get("landmark_bias")).astype(np.float32)


def avatar_id_for(image: bytes, reconstructor: str, name: str = "", more_images: Sequence[bytes] = (),
                  video: bytes = b"") -> str:
    """Content-hash id: photo + reconstructor, plus the name when one is given, so one photo
    created under two names is two avatars (each keeps its name) instead of one renamed;
    more photos and a video are part of it too."""
    if more_images or video:
        image = b"\0".join([bytes(image), *map(bytes, more_images), bytes(video)])
    key = reconstructor.encode() + b"\0" + bytes(image)
    if name:
        key = name.encode() + b"\0" + key
    return hashlib.sha256(key).hexdigest()[:16]
