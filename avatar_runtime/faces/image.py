"""Decode and validate user images before anything else touches them."""

from __future__ import annotations

import struct
from dataclasses import dataclass

import cv2
import numpy as np

from ..errors import InvalidImage, LimitExceeded


PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"


@dataclass(frozen=True)
class ImageLimits:
    max_bytes: int = 40 * 1024 * 1024
    max_side: int = 8192


def decode_image(data: bytes, limits: ImageLimits = ImageLimits()) -> np.ndarray:
    """Image file bytes (PNG, JPEG, WebP, BMP, TIFF) -> RGB uint8 [H, W, 3].

    Raises LimitExceeded for oversized files or images, InvalidImage for anything that
    does not decode completely.
    """
    if not isinstance(data, (bytes, bytearray, memoryview)):
        raise InvalidImage(f"image must be bytes, got {type(data).__name__}")
    if len(data) == 0:
        raise InvalidImage("image is empty (0 bytes); send a PNG or JPEG file's bytes")
    if len(data) > limits.max_bytes:
        raise LimitExceeded(
            f"image is {len(data) / 1e6:.1f} MB; the limit max_image_bytes is "
            f"{limits.max_bytes / 1e6:.1f} MB")
    buf = np.frombuffer(bytes(data), np.uint8)
    _check_header_size(buf, limits)
    try:
        image = cv2.imdecode(buf, cv2.IMREAD_UNCHANGED)
    except cv2.error as exc:  # OpenCV's own size checks on headers PIL could not read
        if "MAX_IMAGE" in str(exc):
            raise LimitExceeded(f"image declares a size over OpenCV's limit; the limit "
                                f"max_image_side is {limits.max_side} px per side") from None
        raise InvalidImage("bytes are not a decodable image (the decoder refused them); "
                           "supported: PNG, JPEG, WebP, BMP, TIFF") from None
    if image is None:
        raise InvalidImage("bytes are not a decodable image (or the file is truncated); "
                           "supported: PNG, JPEG, WebP, BMP, TIFF")
    return _to_rgb8(image)


def _check_header_size(buf: np.ndarray, limits: ImageLimits) -> None:
    """Reject images whose declared size is over the limit before decoding them."""
    from PIL import Image, UnidentifiedImageError
    import io

    try:
        with Image.open(io.BytesIO(buf.tobytes())) as im:
            width, height, kind = *im.size, im.format
            if kind == "PNG":
                _verify_png(im)
    except Image.DecompressionBombError as exc:
        raise LimitExceeded(f"image declares too many pixels ({exc}); the limit max_image_side is "
                            f"{limits.max_side} px per side") from None
    except (UnidentifiedImageError, OSError, ValueError, SyntaxError, struct.error) as exc:
        if buf[:8].tobytes() == PNG_SIGNATURE:  # a PNG whose chunks PIL cannot read: corrupt
            raise InvalidImage(f"the PNG is corrupt ({type(exc).__name__}); send the file's "
                               "complete bytes") from None
        return  # cv2.imdecode reports undecodable input below
    if max(width, height) > limits.max_side:
        raise LimitExceeded(f"image is {width}x{height} px; the limit max_image_side is "
                            f"{limits.max_side} px per side")


def _verify_png(im) -> None:
    """Chunk lengths and CRCs, read without decoding: a corrupt length would have the decoder
    allocate gigabytes (and spend seconds) before it fails."""
    try:
        im.verify()
    except Exception as exc:  # noqa: BLE001 - PIL raises many kinds on corrupt chunk streams
        reason = f"{type(exc).__name__}: {exc}"[:200]
        raise InvalidImage(f"the PNG is corrupt ({reason}); send the file's complete bytes") from None


def _to_rgb8(image: np.ndarray) -> np.ndarray:
    if image.dtype == np.uint16:
        image = (image >> 8).astype(np.uint8)
    elif image.dtype != np.uint8:
        raise InvalidImage(f"unsupported pixel type {image.dtype}; use 8 or 16 bits per channel")
    if image.ndim == 2:
        return cv2.cvtColor(image, cv2.COLOR_GRAY2RGB)
    if image.shape[2] == 4:
        return cv2.cvtColor(image, cv2.COLOR_BGRA2RGB)
    return cv2.cvtColor(image, cv2.COLOR_BGR2RGB)


def fit_within(rgb: np.ndarray, max_side: int) -> np.ndarray:
    """The image scaled down (area filter) so its longer side is at most `max_side`;
    smaller images pass unchanged."""
    side = max(rgb.shape[:2])
    if side <= max_side:
        return rgb
    s = max_side / side
    return cv2.resize(rgb, (round(rgb.shape[1] * s), round(rgb.shape[0] * s)), interpolation=cv2.INTER_AREA)


def encode_png(rgba: np.ndarray) -> bytes:
    """RGB(A) uint8 -> PNG bytes."""
    code = cv2.COLOR_RGBA2BGRA if rgba.shape[2] == 4 else cv2.COLOR_RGB2BGR
    ok, out = cv2.imencode(".png", cv2.cvtColor(rgba, code))
    assert ok
    return out.tobytes()
