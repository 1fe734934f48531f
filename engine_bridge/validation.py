"""Request checks both transports share, run before any work is done.

A request either becomes runtime objects (Camera, MotionFrame, RenderOptions, Smoothing)
that the service can use as they are, or fails here with an `AvatarError` whose message
says what was wrong and what is allowed. The limits agree with each other: a frame size is
accepted only if the largest frame it can produce fits the message cap of the transport.
"""

from __future__ import annotations

import math

from avatar_runtime.errors import InvalidArgument, LimitExceeded
from avatar_runtime.render.camera import Camera
from avatar_runtime.service import AvatarService, Smoothing

from .config import BridgeLimits
from .convert import RenderOptions, camera_from_proto
from .generated import pb

# Bytes a Frame needs besides its pixel planes (fields, tags, envelope): generous.
FRAME_OVERHEAD_BYTES = 64 * 1024
MAX_SMOOTHING_CUTOFF_HZ = 1000.0
MAX_SMOOTHING_BETA = 1000.0


def frame_bytes_bound(width: int, height: int, options: RenderOptions) -> int:
    """Most bytes a rendered frame can take on the wire, whatever its encoding.

    An encoded (PNG/JPEG) frame is bounded by its raw size here: the check must hold before
    the image exists, and for noise-like images PNG is no smaller than raw.
    """
    per_pixel = 4 + (4 if options.depth else 0) + (12 if options.normals else 0)
    return width * height * per_pixel + FRAME_OVERHEAD_BYTES


def _passes(options: RenderOptions) -> str:
    names = ["rgba"] + (["depth"] if options.depth else []) + (["normals"] if options.normals else [])
    return " + ".join(names)


def check_frame_fits(camera: Camera, options: RenderOptions, limits: BridgeLimits) -> None:
    """LimitExceeded unless a frame of this size and these passes fits `max_message_bytes`."""
    need = frame_bytes_bound(camera.width, camera.height, options)
    if need <= limits.max_message_bytes:
        return
    per_pixel = (need - FRAME_OVERHEAD_BYTES) / (camera.width * camera.height)
    side = int(math.sqrt(max(0, limits.max_message_bytes - FRAME_OVERHEAD_BYTES) / per_pixel))
    raise LimitExceeded(
        f"a {camera.width}x{camera.height} frame with {_passes(options)} can take up to {need} bytes, "
        f"more than max_message_bytes={limits.max_message_bytes}; the largest square frame with "
        f"these passes is {side}x{side}")


def render_target(service: AvatarService, limits: BridgeLimits, camera_msg: pb.Camera | None,
                  options_msg: pb.RenderOptions | None) -> tuple[Camera, RenderOptions]:
    """The camera and output options of a RenderFrame or Drive request, fully checked."""
    options = RenderOptions.from_proto(options_msg)
    if options.encoding not in (pb.ENCODING_RAW, pb.ENCODING_PNG, pb.ENCODING_JPEG):
        raise InvalidArgument(f"options.encoding {options.encoding} is not one of "
                              "ENCODING_RAW, ENCODING_PNG, ENCODING_JPEG")
    camera = camera_from_proto(camera_msg)
    service.check_camera(camera)
    check_frame_fits(camera, options, limits)
    return camera, options


def smoothing(msg: pb.Smoothing | None) -> Smoothing:
    """One-Euro settings of a Drive header (0 = default)."""
    default = Smoothing()
    if msg is None:
        return default
    cutoff, beta = float(msg.min_cutoff), float(msg.beta)
    if not (math.isfinite(cutoff) and 0.0 <= cutoff <= MAX_SMOOTHING_CUTOFF_HZ):
        raise InvalidArgument(f"smoothing.min_cutoff must be in 0..{MAX_SMOOTHING_CUTOFF_HZ:g} Hz "
                              f"(0 = default {default.min_cutoff:g}), got {cutoff:g}")
    if not (math.isfinite(beta) and 0.0 <= beta <= MAX_SMOOTHING_BETA):
        raise InvalidArgument(f"smoothing.beta must be in 0..{MAX_SMOOTHING_BETA:g} "
                              f"(0 = default {default.beta:g}), got {beta:g}")
    return Smoothing(bool(msg.enabled), cutoff or default.min_cutoff, beta or default.beta)


def drive_header(service: AvatarService, limits: BridgeLimits,
                 header: pb.DriveHeader) -> tuple[Camera, RenderOptions, Smoothing]:
    """Everything a Drive header asks for, checked before DriveStarted is sent."""
    if not header.avatar_id:
        raise InvalidArgument("the Drive header needs an avatar_id")
    camera, options = render_target(service, limits,
                                    header.camera if header.HasField("camera") else None,
                                    header.options if header.HasField("options") else None)
    settings = smoothing(header.smoothing if header.HasField("smoothing") else None)
    service.get(header.avatar_id)  # NOT_FOUND before the session starts
    return camera, options, settings
