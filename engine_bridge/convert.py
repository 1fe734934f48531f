"""Proto messages <-> runtime objects (Camera, MotionFrame, avatar summaries, rendered frames).

Pure translation: validation of values is the runtime's (`MotionFrame.validate`,
`AvatarService._check_camera`); this module only checks shapes it must know to build them.
"""

from __future__ import annotations

import json
import math
import time
from dataclasses import dataclass

import cv2
import numpy as np

from avatar_runtime.errors import InvalidArgument, InvalidMotion
from avatar_runtime.motion.frame import MotionFrame
from avatar_runtime.motion.solver import SOLVER_FOV_DEG
from avatar_runtime.render.camera import DEFAULT_FOV_DEG, Camera
from avatar_runtime.render.mesh_renderer import RenderOutput

from .generated import pb

DEFAULT_SIZE = 512
DEFAULT_JPEG_QUALITY = 90


# -- camera ------------------------------------------------------------------------------
def camera_from_proto(msg: pb.Camera | None) -> Camera:
    """Proto camera -> Camera; unset fields take the portrait defaults (frontal orbit, 512^2)."""
    width = int(msg.width) if msg is not None and msg.width else DEFAULT_SIZE
    height = int(msg.height) if msg is not None and msg.height else DEFAULT_SIZE
    fov = float(msg.fov_y_deg) if msg is not None and msg.fov_y_deg else DEFAULT_FOV_DEG
    if msg is None or not len(msg.c2w):
        return Camera.orbit(fov_y_deg=fov, width=width, height=height)
    if len(msg.c2w) != 16:
        raise InvalidArgument(f"camera.c2w must have 16 values (4x4 row-major), got {len(msg.c2w)}")
    return Camera(np.asarray(msg.c2w, np.float64).reshape(4, 4), fov, width, height)


def camera_to_proto(camera: Camera) -> pb.Camera:
    return pb.Camera(c2w=np.asarray(camera.c2w, np.float64).ravel().tolist(),
                     fov_y_deg=float(camera.fov_y_deg), width=int(camera.width),
                     height=int(camera.height))


# -- motion ------------------------------------------------------------------------------
@dataclass(frozen=True)
class SourceMotion:
    """A frame whose motion is still to be worked out from an image, landmarks or a motion
    code (after latest-wins picked it: solving costs time). Shapes are checked already."""

    kind: str                   # "image", "landmarks" or "embedding"
    payload: bytes | np.ndarray  # image bytes, landmarks [478, 3] pixels, or the code
    sequence: int
    timecode: float
    width: int = 0              # landmarks: the image they are in
    height: int = 0


NUM_LANDMARKS = 478
LANDMARK_MARGIN = 0.05  # a face at the frame's edge puts a few landmarks just outside it
MAX_LANDMARK_IMAGE_SIDE = 16384
NUM_FACE_LANDMARKS = 468  # the face mesh without the irises: what the pose solve uses
# OpenCV's pose solver (SQPnP) needs the face points to spread (RMS distance from their
# centre) by at least sqrt(1e-5) focal lengths of the solver's camera; a margin on top.
MIN_LANDMARK_SPREAD = 1.25 * math.sqrt(1e-5)


def motion_or_source_from_proto(msg: pb.MotionFrame | None) -> MotionFrame | SourceMotion:
    """Proto motion -> MotionFrame (weights), or a checked SourceMotion (InvalidMotion)."""
    source = msg.WhichOneof("source") if msg is not None else None
    if source is None:
        return motion_from_proto(msg)
    sequence, timecode = int(msg.sequence), float(msg.timecode)
    if not math.isfinite(timecode):
        raise InvalidMotion(f"timecode must be finite, got {timecode}")
    if source == "image":
        return SourceMotion("image", msg.image, sequence, timecode)
    if source == "embedding":
        code = np.asarray(msg.embedding.values, np.float32)
        MotionFrame.from_code(code)  # length and finiteness, before latest-wins
        return SourceMotion("embedding", code, sequence, timecode)
    marks = msg.landmarks
    width, height = int(marks.width), int(marks.height)
    if not (1 <= width <= MAX_LANDMARK_IMAGE_SIDE and 1 <= height <= MAX_LANDMARK_IMAGE_SIDE):
        raise InvalidMotion(f"landmarks.width and height must be 1..{MAX_LANDMARK_IMAGE_SIDE} (the "
                            f"image the landmarks are in, pixels), got {width}x{height}")
    if len(marks.xyz) != NUM_LANDMARKS * 3:
        raise InvalidMotion(f"landmarks.xyz must have {NUM_LANDMARKS * 3} values ({NUM_LANDMARKS} "
                            f"MediaPipe face-mesh points x, y, z in pixels), got {len(marks.xyz)}")
    xyz = np.asarray(marks.xyz, np.float64).reshape(NUM_LANDMARKS, 3)
    if not np.isfinite(xyz).all():
        raise InvalidMotion("landmarks.xyz must be finite numbers")
    margin_x, margin_y = LANDMARK_MARGIN * width, LANDMARK_MARGIN * height
    outside = ((xyz[:, 0] < -margin_x) | (xyz[:, 0] > width + margin_x)
               | (xyz[:, 1] < -margin_y) | (xyz[:, 1] > height + margin_y))
    if outside.any():
        i = int(np.flatnonzero(outside)[0])
        raise InvalidMotion(
            f"landmark {i} at ({xyz[i, 0]:g}, {xyz[i, 1]:g}) px is outside the {width}x{height} "
            f"image; x must be in 0..width and y in 0..height (within {LANDMARK_MARGIN:.0%})")
    face = xyz[:NUM_FACE_LANDMARKS, :2]
    spread = float(np.sqrt(face.var(axis=0).sum()))
    need = MIN_LANDMARK_SPREAD * 0.5 * height / math.tan(math.radians(SOLVER_FOV_DEG) / 2)
    if spread < need:
        raise InvalidMotion(
            f"landmarks.xyz: the face points lie within {spread:.3g} px of their centre (RMS), too "
            f"close together for a face in a {width}x{height} image (at least {need:.3g} px); "
            "landmarks.width and height must be the size of the image they were found in")
    return SourceMotion("landmarks", xyz, sequence, timecode, width, height)


def motion_from_proto(msg: pb.MotionFrame | None) -> MotionFrame:
    """Proto motion (weights form) -> MotionFrame; empty vectors take neutral values."""
    if msg is None:
        return MotionFrame.neutral()
    source = msg.WhichOneof("source")
    if source is not None:
        raise InvalidMotion(f"this call takes motion as weights, not {source!r}")
    kwargs = {"sequence": int(msg.sequence), "timecode": float(msg.timecode)}
    if len(msg.head_rotation):
        kwargs["head_rotation"] = list(msg.head_rotation)
    if len(msg.head_translation):
        kwargs["head_translation"] = list(msg.head_translation)
    if len(msg.eye_gaze):
        kwargs["eye_gaze"] = list(msg.eye_gaze)
    arkit = list(msg.arkit) if len(msg.arkit) else np.zeros(52, np.float32)
    return MotionFrame(arkit, **kwargs)


def motion_to_proto(frame: MotionFrame) -> pb.MotionFrame:
    msg = pb.MotionFrame(arkit=frame.arkit.tolist(), head_rotation=frame.head_rotation.tolist(),
                         head_translation=frame.head_translation.tolist(),
                         sequence=int(frame.sequence), timecode=float(frame.timecode))
    if frame.eye_gaze is not None:
        msg.eye_gaze.extend(frame.eye_gaze.tolist())
    return msg


# -- avatars -----------------------------------------------------------------------------
def avatar_to_proto(summary: dict) -> pb.Avatar:
    return pb.Avatar(id=summary["id"], name=summary.get("name", ""),
                     reconstructor=summary.get("reconstructor", ""),
                     created_at=float(summary.get("created_at", 0.0)),
                     meta_json=json.dumps(summary.get("meta", {}), sort_keys=True))


def avatar_from_proto(msg: pb.Avatar) -> dict:
    """The same dict `AvatarService.get` returns."""
    return {"id": msg.id, "name": msg.name, "reconstructor": msg.reconstructor,
            "created_at": msg.created_at, "meta": json.loads(msg.meta_json or "{}")}


# -- frames ------------------------------------------------------------------------------
@dataclass(frozen=True)
class RenderOptions:
    encoding: int = pb.ENCODING_RAW
    depth: bool = False
    normals: bool = False
    jpeg_quality: int = DEFAULT_JPEG_QUALITY

    @classmethod
    def from_proto(cls, msg: pb.RenderOptions | None) -> "RenderOptions":
        if msg is None:
            return cls()
        quality = int(msg.jpeg_quality) or DEFAULT_JPEG_QUALITY
        if not 1 <= quality <= 100:
            raise InvalidArgument(f"jpeg_quality must be 1..100, got {quality}")
        return cls(int(msg.encoding), bool(msg.depth), bool(msg.normals), quality)


def frame_to_proto(out: RenderOutput, options: RenderOptions, sequence: int = 0,
                   timecode: float = 0.0, render_ms: float = 0.0) -> pb.Frame:
    """RenderOutput -> wire Frame with the requested encoding and passes."""
    t0 = time.perf_counter()
    height, width = out.rgba.shape[:2]
    frame = pb.Frame(sequence=sequence, timecode=timecode, width=width, height=height,
                     encoding=options.encoding, render_ms=render_ms)
    if options.encoding == pb.ENCODING_RAW:
        frame.rgba = np.ascontiguousarray(out.rgba, np.uint8).tobytes()
    elif options.encoding == pb.ENCODING_PNG:
        frame.rgba = _imencode(".png", cv2.cvtColor(out.rgba, cv2.COLOR_RGBA2BGRA))
    elif options.encoding == pb.ENCODING_JPEG:
        params = [cv2.IMWRITE_JPEG_QUALITY, options.jpeg_quality]
        frame.rgba = _imencode(".jpg", cv2.cvtColor(out.rgba, cv2.COLOR_RGBA2BGR), params)
        frame.alpha = _imencode(".png", np.ascontiguousarray(out.rgba[..., 3]))
    else:
        raise InvalidArgument(f"unknown encoding {options.encoding}")
    if options.depth:
        frame.depth = np.ascontiguousarray(out.depth, "<f4").tobytes()
    if options.normals:
        frame.normals = np.ascontiguousarray(out.normals, "<f4").tobytes()
    frame.encode_ms = (time.perf_counter() - t0) * 1e3
    return frame


def _imencode(ext: str, image: np.ndarray, params: list[int] | None = None) -> bytes:
    ok, buf = cv2.imencode(ext, image, params or [])
    if not ok:  # pragma: no cover - OpenCV fails only on unsupported arrays
        raise InvalidArgument(f"could not encode the frame as {ext}")
    return buf.tobytes()


@dataclass
class DecodedFrame:
    """A frame as a client sees it: arrays decoded from the wire."""

    sequence: int
    timecode: float
    rgba: np.ndarray                 # [H, W, 4] uint8
    depth: np.ndarray | None = None  # [H, W] float32
    normals: np.ndarray | None = None  # [H, W, 3] float32
    render_ms: float = 0.0
    encode_ms: float = 0.0


def frame_from_proto(msg: pb.Frame) -> DecodedFrame:
    """Wire Frame -> arrays (decodes PNG / JPEG + alpha)."""
    h, w = int(msg.height), int(msg.width)
    if msg.encoding == pb.ENCODING_RAW:
        rgba = np.frombuffer(msg.rgba, np.uint8).reshape(h, w, 4)
    elif msg.encoding == pb.ENCODING_PNG:
        rgba = cv2.cvtColor(_imdecode(msg.rgba), cv2.COLOR_BGRA2RGBA)
    else:
        rgb = cv2.cvtColor(_imdecode(msg.rgba), cv2.COLOR_BGR2RGB)
        alpha = _imdecode(msg.alpha) if msg.alpha else np.full((h, w), 255, np.uint8)
        rgba = np.dstack([rgb, alpha.reshape(h, w)])
    depth = np.frombuffer(msg.depth, "<f4").reshape(h, w) if msg.depth else None
    normals = np.frombuffer(msg.normals, "<f4").reshape(h, w, 3) if msg.normals else None
    return DecodedFrame(int(msg.sequence), float(msg.timecode), rgba, depth, normals,
                        float(msg.render_ms), float(msg.encode_ms))


def _imdecode(data: bytes) -> np.ndarray:
    image = cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_UNCHANGED)
    if image is None:
        raise ValueError("frame image bytes do not decode")
    return image
