"""Pixels between Blender images and the runtime: PNG encoding, row order, byte/float.

Blender's `Image.pixels` are float RGBA with row 0 at the bottom; the runtime takes image
files (PNG) and returns RGBA8 with row 0 at the top. No bpy here.
"""

from __future__ import annotations

import struct
import zlib

import numpy as np

PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"


def encode_png(image: np.ndarray, level: int = 1) -> bytes:
    """uint8 [H, W, 3] RGB or [H, W, 4] RGBA (row 0 = top) -> PNG bytes.

    `level` is zlib's: 0 stores the pixels (fastest, for loopback), 1 compresses quickly.
    """
    if image.dtype != np.uint8 or image.ndim != 3 or image.shape[2] not in (3, 4):
        raise ValueError(f"expected uint8 [H, W, 3|4], got {image.dtype} {image.shape}")
    height, width, channels = image.shape
    rows = np.empty((height, 1 + width * channels), np.uint8)
    rows[:, 0] = 0  # filter type None on every row
    rows[:, 1:] = image.reshape(height, -1)
    colour_type = 2 if channels == 3 else 6
    header = struct.pack(">IIBBBBB", width, height, 8, colour_type, 0, 0, 0)
    return b"".join((PNG_SIGNATURE, _chunk(b"IHDR", header),
                     _chunk(b"IDAT", zlib.compress(rows.tobytes(), level)), _chunk(b"IEND", b"")))


def _chunk(kind: bytes, data: bytes) -> bytes:
    return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))


def blender_pixels_to_rgb8(pixels: np.ndarray, width: int, height: int) -> np.ndarray:
    """Blender float RGBA pixels (flat, row 0 = bottom) -> uint8 [H, W, 3], row 0 = top."""
    rgb = np.asarray(pixels, np.float32).reshape(height, width, 4)[::-1, :, :3]
    scaled = np.clip(rgb, 0.0, 1.0)
    scaled *= 255.0
    scaled += 0.5  # round half up, then truncate: cheaper than np.rint
    return scaled.astype(np.uint8)


def rgba8_to_blender_pixels(rgba: bytes, width: int, height: int) -> np.ndarray:
    """RGBA8 bytes (row 0 = top) -> flat float32 pixels for `Image.pixels` (row 0 = bottom)."""
    image = np.frombuffer(rgba, np.uint8).reshape(height, width, 4)[::-1]
    return (image.astype(np.float32) * (1.0 / 255.0)).ravel()
