"""`avatar-runtime demo`: start the runtime, then as its client: photo -> avatar -> driven
frames, preview, turntable, contact sheet and the rigged .glb."""

from __future__ import annotations

import argparse
import logging
import sys
import time
from pathlib import Path

import cv2
import imageio.v3 as iio
import numpy as np
from tqdm import tqdm

from avatar_runtime.faces.image import encode_png
from avatar_runtime.motion.clips import builtin_clip
from avatar_runtime.motion.frame import MotionFrame
from avatar_runtime.render.camera import BUST_RADIUS_M, BUST_TARGET, Camera

BACKDROP = (40, 44, 52)


def add_parser(subparsers) -> None:
    p = subparsers.add_parser("demo", help="create an avatar from a portrait and drive it")
    p.add_argument("--image", type=Path, help="portrait photo (default: the bundled sample)")
    p.add_argument("--out", type=Path, default=Path("demo_out"), help="output folder")
    p.add_argument("--size", type=int, default=512, help="frame width and height in pixels")
    p.add_argument("--clip", default="demo", help="built-in motion clip")
    p.add_argument("--data-dir", type=Path, help="avatar store (default: OUT/store)")
    p.add_argument("--reconstructor", default="fit", choices=("fit", "portrait4d"))
    p.add_argument("--weights", type=Path, help="portrait4d checkpoint folder")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    """Start the runtime (ZeroMQ on a free loopback port), then do everything as a client."""
    from avatar_runtime.service import AvatarService

    from .client import BridgeError, connect
    from .zmq_server import create_server

    try:  # read before the runtime starts: a wrong path should cost nothing
        image = args.image.read_bytes() if args.image else sample_portrait()
    except OSError as err:
        print(f"error: cannot read image {str(args.image)!r}: {_reason(err)}", file=sys.stderr)
        return 2
    out: Path = args.out
    if not getattr(args, "verbose", False):
        # The runtime runs in this process: its per-call log would interleave with the
        # progress bars (`-v` shows it).
        logging.getLogger("avatar_runtime.requests").setLevel(logging.WARNING)
    (out / "frames").mkdir(parents=True, exist_ok=True)
    stage("starting the runtime")
    service = AvatarService(args.data_dir or out / "store", portrait4d_weights=args.weights)
    service.warm_up()
    server, endpoint = create_server(service, "tcp://127.0.0.1:0")
    server.start()
    stage(f"runtime listening on {endpoint}")
    try:
        with connect(endpoint) as client:
            return _session(client, args, image, out)
    except BridgeError as err:
        print(f"error ({err.code}): {err.message}")
        return 2
    finally:
        server.stop(2.0)


def _reason(err: OSError) -> str:
    if isinstance(err, FileNotFoundError):
        return "file not found"
    if isinstance(err, IsADirectoryError):
        return "is a directory, not an image file"
    return err.strerror or str(err)


def _session(client, args: argparse.Namespace, image: bytes, out: Path) -> int:
    stage("creating the avatar")
    started = time.perf_counter()
    with tqdm(total=100, desc="create", unit="%", leave=False) as bar:
        summary = client.create_avatar(image, name="demo", reconstructor=args.reconstructor,
                                       progress=lambda s, f: _advance(bar, s, f))
    stage(f"avatar {summary['id']} in {time.perf_counter() - started:.2f} s "
          f"(landmark error {summary['meta'].get('landmark_error_px_median', float('nan')):.2f} px)")

    clip = builtin_clip(args.clip)
    camera = Camera.orbit(width=args.size, height=args.size)
    driven = []
    started = time.perf_counter()
    for i, frame in enumerate(tqdm(client.drive(summary["id"], clip, camera, window=2),
                                   total=len(clip), desc="drive", unit="frame")):
        write_rgba(out / "frames" / f"frame_{i:04d}.png", frame.rgba)
        driven.append(frame.rgba)
    stage(f"drove {len(driven)} frames at {len(driven) / (time.perf_counter() - started):.1f} fps "
          f"(through ZeroMQ, PNG writing included)")
    # The turntable frames the whole bust: hair volume and shoulders show as it turns.
    turntable = [client.render_frame(summary["id"], MotionFrame.neutral(), Camera.orbit(
        yaw, 0, BUST_RADIUS_M, BUST_TARGET, width=args.size, height=args.size))
        for yaw in tqdm(np.linspace(-60, 60, 33), desc="turntable", unit="view")]

    stage("writing preview, turntable, contact sheet and mesh")
    fps = 1.0 / (clip[1].timecode - clip[0].timecode) if len(clip) > 1 else 30.0
    write_mp4(out / "preview.mp4", driven, fps)
    write_mp4(out / "turntable.mp4", turntable + turntable[::-1], 20)
    write_gif(out / "turntable.gif", [half(f) for f in turntable + turntable[::-1]], 20)
    picks = [driven[int(i)] for i in np.linspace(0, len(driven) - 1, 8)] + turntable[::8][:4]
    cv2.imwrite(str(out / "contact_sheet.png"), cv2.cvtColor(contact_sheet(picks, 4), cv2.COLOR_RGB2BGR))
    (out / "avatar.glb").write_bytes(client.export_mesh(summary["id"]))
    stage(f"done: {len(driven)} frames in {out / 'frames'}, preview.mp4, turntable.mp4/.gif, "
          f"contact_sheet.png, avatar.glb in {out}")
    return 0


def sample_portrait() -> bytes:
    """The bundled sample portrait (scikit-image's astronaut), as PNG bytes."""
    from skimage import data

    return encode_png(data.astronaut())


def stage(message: str) -> None:
    tqdm.write(f"[demo] {message}")


def _advance(bar: tqdm, stage_name: str, fraction: float) -> None:
    bar.set_postfix_str(stage_name)
    bar.update(round(fraction * 100) - bar.n)


def write_rgba(path: Path, rgba: np.ndarray) -> None:
    cv2.imwrite(str(path), cv2.cvtColor(rgba, cv2.COLOR_RGBA2BGRA))


def over_backdrop(rgba: np.ndarray) -> np.ndarray:
    alpha = rgba[..., 3:4].astype(np.float32) / 255
    return (rgba[..., :3] * alpha + np.array(BACKDROP) * (1 - alpha)).astype(np.uint8)


def write_mp4(path: Path, frames: list[np.ndarray], fps: float) -> None:
    """RGBA frames over the backdrop as an MPEG-4 video (OpenCV's bundled FFmpeg)."""
    h, w = frames[0].shape[:2]
    video = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"mp4v"), fps, (w, h))
    for frame in frames:
        video.write(cv2.cvtColor(over_backdrop(frame), cv2.COLOR_RGB2BGR))
    video.release()


def half(rgba: np.ndarray) -> np.ndarray:
    """Half-size frame: GIF quantisation is slow, and a GIF is for a quick look."""
    return cv2.resize(rgba, (rgba.shape[1] // 2, rgba.shape[0] // 2), interpolation=cv2.INTER_AREA)


def write_gif(path: Path, frames: list[np.ndarray], fps: float) -> None:
    iio.imwrite(path, np.stack([over_backdrop(f) for f in frames]), duration=1000 / fps, loop=0)


def contact_sheet(frames: list[np.ndarray], columns: int) -> np.ndarray:
    """RGBA frames -> one RGB grid image, `columns` wide."""
    tiles = [over_backdrop(f) for f in frames]
    while len(tiles) % columns:
        tiles.append(np.full_like(tiles[0], BACKDROP))
    rows = [np.concatenate(tiles[i:i + columns], 1) for i in range(0, len(tiles), columns)]
    return np.concatenate(rows, 0)
