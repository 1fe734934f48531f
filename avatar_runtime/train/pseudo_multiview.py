"""Pseudo multi-view videos from monocular ones, for stage-2 cross-view self-reenactment.

Portrait4D-v2's idea: a static 3D head synthesiser lifts each frame of a monocular real
video into 3D, so the video can be seen from other cameras; the 4D model then learns by
cross-view self-reenactment on these pseudo multi-view videos. Here the synthesiser is the
`fit` reconstructor. Per video:

* the avatar (identity + baked texture) is created from one frame (the first with a face,
  or `fit_frame`);
* every used frame gets its motion (52 ARKit weights + head pose) from `MotionSolver`
  with that identity (warm-started from the previous frame), the face crop the encoders
  read (`face_crop`), a person matte (`FaceAnalyzer.matte`), and its own camera: the head
  pose turned into a camera in the head's frame (where the synthetic cameras live), looking
  at the head and zoomed so the head is framed like the synthetic views. The real view is
  the frame resampled into that camera (a pure rotation of the photo camera about its
  centre, so the resampling is exact), alpha is the matte resampled likewise, and depth
  is the fitted mesh rendered from that camera;
* `views` cameras drawn from `SyntheticHeads.camera` (the synthetic camera distribution)
  form the video's multi-view rig; the synthesised view of frame t at camera k is the
  avatar with frame t's expression rendered by `MeshRenderer` (over the video's background
  colour), in the same `View` format as the synthetic data.

What is expensive (detection, matting, solving, fitting, resampling) is cached on disk per
video (a folder of .npy arrays, memory-mapped when read); the synthesised views are cheap
and rendered on demand (memoised).

`PseudoMultiView.example(rng, real_source, real_target)` builds one cross-view
self-reenactment example: source = frame s at rig view p (or the real frame s' crop),
target = frame d at rig view q (or the real frame d at its own camera), driving motion =
frame d's motion. `StageSampler` draws the two substitutions (10% / 80% by default).

    python -m avatar_runtime.train.pseudo_multiview --cache DIR [--image-size 64] VIDEO...

prepares the caches ahead of training (one process per video shard runs in parallel).
"""

from __future__ import annotations

import argparse
import hashlib
import json
import logging
import math
import os
import shutil
from collections import OrderedDict
from collections.abc import Iterator, Sequence
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path

import cv2
import numpy as np
from tqdm import tqdm

from avatar_runtime.avatar import Avatar
from avatar_runtime.errors import NoFaceFound
from avatar_runtime.faces.detector import FaceAnalyzer, shared_analyzer
from avatar_runtime.faces.image import fit_within
from avatar_runtime.head.model import HeadModel, load_head_model
from avatar_runtime.motion.frame import MotionFrame
from avatar_runtime.motion.solver import SOLVER_FOV_DEG, MotionSolver
from avatar_runtime.reconstruct.fit import photo_camera
from avatar_runtime.reconstruct.fit_reconstructor import FitReconstructor
from avatar_runtime.reconstruct.portrait4d.motion import motion_vector
from avatar_runtime.reconstruct.portrait4d_source import face_crop
from avatar_runtime.render.camera import DEFAULT_TARGET, Camera
from avatar_runtime.render.mesh_renderer import MeshRenderer
from avatar_runtime.train.data import Example
from avatar_runtime.train.synthetic import SyntheticConfig, SyntheticHeads, View

log = logging.getLogger(__name__)

IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".bmp", ".webp", ".tif", ".tiff")
CACHE_VERSION = 2
_LOOK_AT = np.array(DEFAULT_TARGET, np.float64)  # where the synthetic cameras look (head frame)


@dataclass(frozen=True)
class PseudoMultiViewConfig:
    """Configuration of `PseudoMultiView` (sizes must match the network being trained)."""

    image_size: int = 64
    """Source crops and full-size targets (the encoder's input size)."""
    low_size: int = 32
    """Low-resolution targets (the volume render size)."""
    views: int = 4
    """Synthesised cameras per video (its multi-view rig; at least 2)."""
    frame_step: int = 1
    """Use every n-th frame of a video."""
    max_frames: int | None = None
    """Use at most this many frames per video (after `frame_step`)."""
    fit_frame: int | None = None
    """Frame (index into the video) the avatar is created from; None = first with a face."""
    max_side: int = 1024
    """Frames are reduced to this many pixels per side before analysis."""
    calibrate: bool = True
    """Measure the avatar's expression response before solving (~5 s per video; the
    solver reads expressions better with it)."""
    reading: str = "features"
    """How expressions are read (motion/solver.py READINGS): "features" for real video,
    "fit" for videos rendered from our own avatars (the detector under-reads those)."""
    max_error_percent: float = 4.0
    """Frames whose median landmark error exceeds this (per cent of the face size) are
    dropped as failed tracks."""
    max_outside: float = 0.2
    """Frames whose own view reaches this far outside the picture (fraction of its pixels;
    the head near the frame's edge) are dropped."""
    seed: int = 0
    """Seed of the rig cameras (mixed with the video's path)."""
    camera: SyntheticConfig = field(default_factory=SyntheticConfig)
    """Camera distribution of the rig (its image_size is replaced by `image_size`)."""

    def cache_key(self) -> dict:
        return {**asdict(self), "version": CACHE_VERSION}


@dataclass
class VideoData:
    """One prepared video (arrays may be memory-mapped). F used frames, V rig views.

    frames [F] int (index in the video); arkit [F, 52]; rotation [F, 4] (x, y, z, w)
    head-to-camera; crops [F, S, S, 3] uint8; real_rgb [F, S, S, 3] uint8, real_alpha
    [F, S, S] uint8, real_depth [F, S, S] float32 and the same at the low size; real_c2w
    [F, 4, 4] and real_fov [F] (the frame's own camera in the head's frame); rig_c2w
    [V, 4, 4]; identity [K]; texture [T, T, 3] uint8; background [3] in [0, 1].
    """

    path: str
    frames: np.ndarray
    arkit: np.ndarray
    rotation: np.ndarray
    crops: np.ndarray
    real_rgb: np.ndarray
    real_alpha: np.ndarray
    real_depth: np.ndarray
    real_rgb_low: np.ndarray
    real_alpha_low: np.ndarray
    real_depth_low: np.ndarray
    real_c2w: np.ndarray
    real_fov: np.ndarray
    rig_c2w: np.ndarray
    rig_fov: float
    identity: np.ndarray
    texture: np.ndarray
    background: np.ndarray

    def __len__(self) -> int:
        return len(self.frames)

    def motion(self, i: int, pose: bool = True) -> MotionFrame:
        """Frame i's motion; pose=False keeps the expression only (head facing forward)."""
        arkit = np.clip(self.arkit[i], 0.0, 1.0)
        return MotionFrame(arkit, head_rotation=self.rotation[i]) if pose else MotionFrame(arkit)

    def real_camera(self, i: int, size: int) -> Camera:
        return Camera(np.array(self.real_c2w[i]), float(self.real_fov[i]), size, size)

    def rig_camera(self, k: int, size: int) -> Camera:
        return Camera(np.array(self.rig_c2w[k]), self.rig_fov, size, size)


# -- reading videos ----------------------------------------------------------------------

def list_videos(paths: Sequence[str | Path]) -> list[Path]:
    """Videos named by `paths`: video files, folders of images (one video each), or folders
    of those (searched one level down)."""
    out: list[Path] = []
    for p in map(Path, paths):
        if p.is_file():
            out.append(p)
        elif p.is_dir():
            if any(f.suffix.lower() in IMAGE_SUFFIXES for f in p.iterdir()):
                out.append(p)
            else:
                out.extend(sorted(c for c in p.iterdir()
                                  if c.is_file() or (c.is_dir() and _has_images(c))))
        else:
            raise FileNotFoundError(f"no video or image folder at {p}")
    return out


def _has_images(folder: Path) -> bool:
    return any(f.suffix.lower() in IMAGE_SUFFIXES for f in folder.iterdir())


def count_frames(path: Path) -> int | None:
    if path.is_dir():
        return sum(f.suffix.lower() in IMAGE_SUFFIXES for f in path.iterdir())
    cap = cv2.VideoCapture(str(path))
    n = int(cap.get(cv2.CAP_PROP_FRAME_COUNT)) if cap.isOpened() else 0
    cap.release()
    return n or None


def read_frames(path: Path) -> Iterator[tuple[int, np.ndarray]]:
    """(index, RGB uint8 [H, W, 3]) for each frame of a video file or image folder."""
    if path.is_dir():
        import imageio.v3 as iio

        files = sorted(f for f in path.iterdir() if f.suffix.lower() in IMAGE_SUFFIXES)
        for i, f in enumerate(files):
            yield i, _rgb8(iio.imread(f))
        return
    cap = cv2.VideoCapture(str(path))
    if cap.isOpened():
        try:
            i = 0
            while True:
                ok, bgr = cap.read()
                if not ok:
                    break
                yield i, np.ascontiguousarray(bgr[..., ::-1])
                i += 1
        finally:
            cap.release()
        if i > 0:
            return
    import imageio.v3 as iio  # formats OpenCV cannot open (animated GIF/WebP, ...)

    for i, frame in enumerate(iio.imiter(path)):
        yield i, _rgb8(frame)


def _rgb8(image: np.ndarray) -> np.ndarray:
    image = np.asarray(image)
    if image.dtype != np.uint8:
        image = np.clip(image.astype(np.float32) * (255.0 / max(float(image.max()), 1.0)), 0, 255).astype(np.uint8)
    if image.ndim == 2:
        image = np.repeat(image[..., None], 3, -1)
    return np.ascontiguousarray(image[..., :3])


# -- geometry ----------------------------------------------------------------------------

def real_camera(rotation: np.ndarray, translation: np.ndarray,
                camera_config: SyntheticConfig) -> tuple[Camera, Camera]:
    """The frame's own view from a solved head pose (head -> photo camera: x -> R x + t).

    Returns (virtual, head_frame): a camera at the photo camera's centre looking at the
    head's look-at point, its FOV set so the head is framed like a synthetic view at the
    mean synthetic radius (photo-camera frame, used to resample the image); and the same
    camera expressed in the head's frame (what the renderer and the model use).
    """
    pose = np.eye(4)
    pose[:3, :3], pose[:3, 3] = rotation, translation
    target = rotation @ _LOOK_AT + translation
    distance = float(np.linalg.norm(target))
    radius = float(np.mean(camera_config.radius)) * camera_config.head_unit_m
    fov = 2 * math.degrees(math.atan(math.tan(math.radians(camera_config.fov_deg) / 2) * radius / distance))
    up = np.array([0.0, 1.0, 0.0]) if abs(target[1]) < 0.99 * distance else np.array([0.0, 0.0, 1.0])
    virtual = Camera.look_at(np.zeros(3), target, up, fov, 1, 1)
    return virtual, Camera(np.linalg.inv(pose) @ virtual.c2w, fov, 1, 1)


def photo_coords(photo: Camera, virtual: Camera) -> np.ndarray:
    """[H, W, 2] where each pixel centre of `virtual` lands in `photo` (continuous pixel
    coordinates, (0, 0) = the top-left corner); the cameras must share their centre."""
    _, dirs = virtual.rays()
    xy, _ = photo.project(dirs.reshape(-1, 3) + photo.position)
    return xy.reshape(virtual.height, virtual.width, 2)


def outside_fraction(photo: Camera, virtual: Camera) -> float:
    """Fraction of `virtual`'s pixels that fall outside the photo."""
    xy = photo_coords(photo, virtual)
    inside = (xy[..., 0] >= 0) & (xy[..., 0] <= photo.width) & (xy[..., 1] >= 0) & (xy[..., 1] <= photo.height)
    return 1.0 - float(inside.mean())


def resample(image: np.ndarray, photo: Camera, virtual: Camera) -> np.ndarray:
    """`image` (seen by `photo`) as `virtual` sees it; both cameras share their centre, so
    this is an exact homography. Prefiltered (area) when `virtual` has fewer pixels per
    radian, bilinear otherwise; outside the photo: edge pixels repeated."""
    xy = photo_coords(photo, virtual)
    ratio = virtual.focal_px / photo.focal_px
    src = image
    if ratio < 1.0:
        w = max(1, round(image.shape[1] * ratio))
        h = max(1, round(image.shape[0] * ratio))
        src = cv2.resize(image, (w, h), interpolation=cv2.INTER_AREA)
        xy = xy * np.array([w / image.shape[1], h / image.shape[0]])
    maps = (xy - 0.5).astype(np.float32)
    out = cv2.remap(src, maps[..., 0], maps[..., 1], cv2.INTER_LINEAR, borderMode=cv2.BORDER_REPLICATE)
    return out


# -- preparation -------------------------------------------------------------------------

class VideoPreparer:
    """Turns one monocular video into a cached `VideoData`."""

    def __init__(self, config: PseudoMultiViewConfig, analyzer: FaceAnalyzer | None = None,
                 head: HeadModel | None = None):
        self.config = config
        self.head = head or load_head_model()
        self.analyzer = analyzer or shared_analyzer()
        self._reconstructor: FitReconstructor | None = None
        self._solver: MotionSolver | None = None
        self.cameras = SyntheticHeads(_camera_config(config), self.head)
        self._depth = MeshRenderer(self.head.faces, self.head.face_uvs, np.zeros((4, 4, 3), np.uint8),
                                   aa_samples=0)

    @property
    def reconstructor(self) -> FitReconstructor:
        if self._reconstructor is None:
            self._reconstructor = FitReconstructor(self.analyzer, self.head)
        return self._reconstructor

    @property
    def solver(self) -> MotionSolver:
        if self._solver is None:
            self._solver = MotionSolver(self.analyzer, self.head)
        return self._solver

    def cache_dir(self, video: Path, root: Path) -> Path:
        st = video.stat()
        key = json.dumps({"path": str(video.resolve()), "size": st.st_size if video.is_file() else None,
                          "mtime": st.st_mtime_ns, **self.config.cache_key()}, sort_keys=True, default=str)
        digest = hashlib.sha256(key.encode()).hexdigest()[:16]
        return root / f"{video.stem}-{digest}"

    def load_or_prepare(self, video: Path, root: Path) -> VideoData | None:
        """The cached preparation of `video` under `root` (made first if missing); None
        when no frame of it could be used (also cached)."""
        folder = self.cache_dir(video, root)
        if not (folder / "meta.json").is_file():
            _save(folder, self.prepare(video), video)
        return _load(folder)

    def prepare(self, video: Path) -> VideoData | None:
        cfg = self.config
        found = self._avatar(video)
        if found is None:
            log.warning("%s: no frame with a face; skipped", video)
            return None
        avatar, background = found
        identity, texture, bias = (avatar.tensors[k] for k in ("identity", "texture", "landmark_bias"))
        response = self._response(identity, texture) if cfg.calibrate else None
        rows: dict[str, list] = {k: [] for k in (
            "frames", "arkit", "rotation", "crops", "real_rgb", "real_alpha", "real_depth",
            "real_rgb_low", "real_alpha_low", "real_depth_low", "real_c2w", "real_fov")}
        total = count_frames(video)
        total = None if total is None else -(-total // cfg.frame_step)
        if total is not None and cfg.max_frames is not None:
            total = min(total, cfg.max_frames)
        previous, dropped = None, {"no face": 0, "bad fit": 0, "out of picture": 0}
        with tqdm(total=total, desc=f"pseudo multi-view {video.name}", unit="frame") as bar:
            for index, rgb in self._used_frames(video):
                bar.update()
                try:
                    landmarks = self.analyzer.landmarks(rgb).landmarks
                except NoFaceFound:
                    dropped["no face"] += 1
                    previous = None
                    continue
                h, w = rgb.shape[:2]
                motion, fit = self.solver.solve_landmarks(landmarks, w, h, identity, previous=previous,
                                                          bias=bias, response=response,
                                                          reading=cfg.reading)
                face = max(np.ptp(landmarks[:468, :2], axis=0).max(), 1.0)
                if 100 * float(np.median(fit.error_px)) / face > cfg.max_error_percent:
                    dropped["bad fit"] += 1
                    previous = None
                    continue
                previous = fit
                if not self._add_frame(rows, index, rgb, landmarks, motion, fit, identity):
                    dropped["out of picture"] += 1
        if any(dropped.values()):
            log.info("%s: dropped frames: %s", video, dropped)
        if not rows["frames"]:
            log.warning("%s: no usable frame; skipped", video)
            return None
        name_hash = int(hashlib.sha256(video.name.encode()).hexdigest()[:8], 16)
        rng = np.random.default_rng([cfg.seed, name_hash])  # the rig depends on the name, not the folder
        rig = np.stack([self.cameras.camera(rng).c2w for _ in range(max(cfg.views, 2))])
        arrays = {k: np.stack(v) for k, v in rows.items()}
        return VideoData(path=str(video), rig_c2w=rig, rig_fov=cfg.camera.fov_deg, identity=identity,
                         texture=texture, background=background, **arrays)

    def _used_frames(self, video: Path) -> Iterator[tuple[int, np.ndarray]]:
        cfg, used = self.config, 0
        for index, rgb in read_frames(video):
            if index % cfg.frame_step:
                continue
            if cfg.max_frames is not None and used >= cfg.max_frames:
                return
            used += 1
            yield index, fit_within(rgb, cfg.max_side)

    def _avatar(self, video: Path) -> tuple[Avatar, np.ndarray] | None:
        """The `fit` avatar of the chosen frame and the video's background colour [3]."""
        for index, rgb in read_frames(video):
            if self.config.fit_frame is not None and index != self.config.fit_frame:
                continue
            rgb = fit_within(rgb, self.config.max_side)
            try:
                avatar = self.reconstructor.create(rgb, f"video-{index}")
            except NoFaceFound:
                if self.config.fit_frame is not None:
                    return None
                continue
            matte = self.analyzer.matte(rgb)
            outside = rgb[matte < 0.1]
            colour = np.median(outside, 0) / 255 if len(outside) > 16 else np.full(3, 0.5)
            log.info("%s: avatar created from frame %d", video, index)
            return avatar, colour.astype(np.float32)
        return None

    def _response(self, identity: np.ndarray, texture: np.ndarray):
        return self.solver.measure_response(identity, texture)

    def _add_frame(self, rows: dict, index: int, rgb: np.ndarray, landmarks: np.ndarray,
                   motion: MotionFrame, fit, identity: np.ndarray) -> bool:
        """Append frame `index`'s arrays to `rows`; False if its view leaves the picture."""
        cfg = self.config
        h, w = rgb.shape[:2]
        photo = photo_camera(w, h, SOLVER_FOV_DEG)
        virtual, head_cam = real_camera(fit.rotation, fit.translation, cfg.camera)
        if outside_fraction(photo, virtual.with_size(16, 16)) > cfg.max_outside:
            return False
        matte = self.analyzer.matte(rgb)
        verts = self.head.shape(identity, motion.arkit)
        for size, suffix in ((cfg.image_size, ""), (cfg.low_size, "_low")):
            rows["real_rgb" + suffix].append(resample(rgb, photo, virtual.with_size(size, size)))
            alpha = resample(matte, photo, virtual.with_size(size, size))
            rows["real_alpha" + suffix].append(np.clip(alpha * 255 + 0.5, 0, 255).astype(np.uint8))
            rows["real_depth" + suffix].append(self._depth.render(verts, head_cam.with_size(size, size)).depth)
        rows["frames"].append(index)
        rows["arkit"].append(motion.arkit)
        rows["rotation"].append(motion.head_rotation)
        rows["crops"].append(face_crop(rgb, landmarks, cfg.image_size))
        rows["real_c2w"].append(head_cam.c2w)
        rows["real_fov"].append(head_cam.fov_y_deg)
        return True


def _camera_config(config: PseudoMultiViewConfig) -> SyntheticConfig:
    return replace(config.camera, image_size=config.image_size)


_SCALARS = ("path", "rig_fov")


def _save(folder: Path, data: VideoData | None, video: Path) -> None:
    tmp = folder.with_name(folder.name + f".tmp{os.getpid()}")
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir(parents=True)
    meta = {"video": str(video), "usable": data is not None}
    if data is not None:
        for name, value in vars(data).items():
            if name in _SCALARS:
                meta[name] = value
            else:
                np.save(tmp / f"{name}.npy", np.ascontiguousarray(value))
        meta["frames"] = len(data)
    (tmp / "meta.json").write_text(json.dumps(meta, indent=1))
    shutil.rmtree(folder, ignore_errors=True)
    os.replace(tmp, folder)


def _load(folder: Path) -> VideoData | None:
    meta = json.loads((folder / "meta.json").read_text())
    if not meta["usable"]:
        return None
    arrays = {f.stem: np.load(f, mmap_mode="r") for f in folder.glob("*.npy")}
    return VideoData(path=meta["path"], rig_fov=float(meta["rig_fov"]), **arrays)


# -- examples ----------------------------------------------------------------------------

class PseudoMultiView:
    """Cross-view self-reenactment examples from pseudo multi-view videos (a `RealFrames`).

    `PseudoMultiView.from_videos(paths, cache_dir, config)` prepares (or loads) each video.
    Videos are drawn in proportion to their used frames.
    """

    def __init__(self, videos: Sequence[VideoData], config: PseudoMultiViewConfig,
                 head: HeadModel | None = None, render_cache: int = 4096):
        self.videos = [v for v in videos if v is not None and len(v) > 0]
        if not self.videos:
            raise ValueError("no usable video frames (no face found in any video)")
        self.config = config
        self.head = head or load_head_model()
        self._renderers: dict[int, MeshRenderer] = {}
        sizes = np.array([len(v) for v in self.videos], np.float64)
        self._video_p = sizes / sizes.sum()
        self._renders: OrderedDict[tuple, tuple[View, View]] = OrderedDict()
        self._render_cache = render_cache

    @classmethod
    def from_videos(cls, paths: Sequence[str | Path], cache_dir: str | Path,
                    config: PseudoMultiViewConfig = PseudoMultiViewConfig(),
                    analyzer: FaceAnalyzer | None = None, head: HeadModel | None = None) -> PseudoMultiView:
        head = head or load_head_model()
        preparer = VideoPreparer(config, analyzer, head)
        videos = list_videos(paths)
        data = [preparer.load_or_prepare(v, Path(cache_dir)) for v in
                tqdm(videos, desc="videos", unit="video", disable=len(videos) < 2)]
        usable = [d for d in data if d is not None]
        log.info("pseudo multi-view: %d of %d videos usable, %d frames", len(usable), len(videos),
                 sum(len(d) for d in usable))
        return cls(usable, config, head)

    def __len__(self) -> int:
        return sum(len(v) for v in self.videos)

    # views ------------------------------------------------------------------------------
    def synthesised(self, v: int, t: int, k: int) -> tuple[View, View]:
        """(full, low) render of video v's avatar with frame t's expression at rig view k."""
        key = (v, t, k)
        if key in self._renders:
            self._renders.move_to_end(key)
            return self._renders[key]
        video, cfg = self.videos[v], self.config
        if v not in self._renderers:  # SyntheticHeads.render's renderer, kept per video
            self._renderers[v] = MeshRenderer(self.head.faces, self.head.face_uvs, np.asarray(video.texture))
        verts = self.head.shape(np.asarray(video.identity), np.clip(np.asarray(video.arkit[t]), 0.0, 1.0))
        cameras = [video.rig_camera(k, size) for size in (cfg.image_size, cfg.low_size)]
        background = np.asarray(video.background, np.float32)
        out = tuple(_view(r, background, cam) for r, cam in
                    zip(self._renderers[v].render_batch([verts, verts], cameras), cameras))
        self._renders[key] = out
        while len(self._renders) > self._render_cache:
            self._renders.popitem(last=False)
        return out

    def real(self, v: int, t: int) -> tuple[View, View]:
        """(full, low) real frame t of video v at its own camera."""
        video, cfg = self.videos[v], self.config
        views = []
        for size, suffix in ((cfg.image_size, ""), (cfg.low_size, "_low")):
            rgb = np.asarray(getattr(video, "real_rgb" + suffix)[t], np.float32) / 255
            alpha = np.asarray(getattr(video, "real_alpha" + suffix)[t], np.float32) / 255
            depth = np.array(getattr(video, "real_depth" + suffix)[t], np.float32)
            views.append(View(rgb, alpha, depth, video.real_camera(t, size)))
        return views[0], views[1]

    def source_crop(self, v: int, t: int) -> np.ndarray:
        """[S, S, 3] float in [0, 1]: frame t's face crop as the encoders see it."""
        return np.asarray(self.videos[v].crops[t], np.float32) / 255

    # examples ---------------------------------------------------------------------------
    def example(self, rng: np.random.Generator, real_source: bool, real_target: bool) -> Example:
        """Source frame s at rig view p (or the real frame s), target frame d at rig view q
        (or the real frame d at its own camera), driving motion = frame d's motion."""
        v = int(rng.choice(len(self.videos), p=self._video_p))
        video = self.videos[v]
        s, d = (int(x) for x in rng.integers(len(video), size=2))
        p, q = (int(x) for x in rng.choice(len(video.rig_c2w), 2, replace=False))
        return self.make(v, s, d, p, q, real_source, real_target)

    def make(self, v: int, s: int, d: int, p: int, q: int, real_source: bool,
             real_target: bool) -> Example:
        video = self.videos[v]
        source = self.source_crop(v, s) if real_source else self.synthesised(v, s, p)[0].rgb
        full, low = self.real(v, d) if real_target else self.synthesised(v, d, q)
        # The source motion is expression only, as the runtime encodes an avatar's photo;
        # the driving motion carries the head pose too (the target camera is in the head's frame).
        return Example(source, motion_vector(video.motion(s, pose=False)), motion_vector(video.motion(d)),
                       full, low, source_real=real_source, target_real=real_target)


def _view(out, background: np.ndarray, camera: Camera) -> View:
    """A render as a `View`, composited as `SyntheticHeads.render` does."""
    rgba = out.rgba.astype(np.float32) / 255
    alpha = rgba[..., 3]
    rgb = rgba[..., :3] * alpha[..., None] + background * (1 - alpha[..., None])
    return View(rgb, alpha, out.depth, camera)


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(prog="python -m avatar_runtime.train.pseudo_multiview",
                                description="Prepare the pseudo multi-view caches of videos.")
    p.add_argument("videos", nargs="+", help="video files, image folders, or folders of those")
    p.add_argument("--cache", required=True, help="cache directory (shared with training)")
    p.add_argument("--image-size", type=int, default=64, help="encoder input size of the network")
    p.add_argument("--low-size", type=int, default=32, help="volume render size of the network")
    p.add_argument("--views", type=int, default=4)
    p.add_argument("--frame-step", type=int, default=1)
    p.add_argument("--max-frames", type=int)
    p.add_argument("--no-calibrate", action="store_true", help="skip the expression response measurement")
    p.add_argument("--seed", type=int, default=0, help="rig camera seed (the training run's --seed)")
    a = p.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    config = PseudoMultiViewConfig(image_size=a.image_size, low_size=a.low_size, views=a.views,
                                   frame_step=a.frame_step, max_frames=a.max_frames,
                                   calibrate=not a.no_calibrate, seed=a.seed)
    data = PseudoMultiView.from_videos(a.videos, a.cache, config)
    print(f"{len(data.videos)} videos, {len(data)} frames ready in {a.cache}")


if __name__ == "__main__":
    main()
