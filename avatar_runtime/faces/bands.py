"""Letterbox / pillarbox bands and image borders: the parts of a photo that show nothing.

A band is a run of near-uniform rows (or columns) at an image edge: a video frame's black
bars, a padded square crop. Nothing in them is the person, so texture baking must not
count them as seen (a black band over the crown would otherwise bake a black skull cap).
"""

from __future__ import annotations

from dataclasses import dataclass

import cv2
import numpy as np

FLAT_SPREAD = 14.0    # a band row's 2nd..98th percentile luma spread stays under this
TONE_DRIFT = 10.0     # ... and its median stays this close to the outermost row's
MAX_FRACTION = 0.3    # a band covers at most this much of the image's height or width
BORDER_PX = 2         # the outermost pixels of any photo are left out (resampling rims)


@dataclass(frozen=True)
class Bands:
    """Band thickness in pixels at each edge (0: none)."""

    top: int = 0
    bottom: int = 0
    left: int = 0
    right: int = 0


def find_bands(rgb: np.ndarray) -> Bands:
    """The flat bands at the edges of `rgb` [H, W, 3] uint8."""
    luma = cv2.cvtColor(rgb, cv2.COLOR_RGB2GRAY).astype(np.float32)
    return Bands(top=_run(luma), bottom=_run(luma[::-1]),
                 left=_run(luma.T), right=_run(luma.T[::-1]))


def _run(luma: np.ndarray) -> int:
    """How many rows from the top of `luma` [H, W] form one flat band (0 if under 2)."""
    limit = int(len(luma) * MAX_FRACTION)
    low, mid, high = np.percentile(luma[:limit], (2, 50, 98), axis=1)
    flat = (high - low < FLAT_SPREAD) & (np.abs(mid - mid[0]) < TONE_DRIFT)
    rows = limit if flat.all() else int(np.argmin(flat))
    return rows if rows >= 2 else 0


def content_mask(rgb: np.ndarray, bands: Bands | None = None, feather_px: int = 3) -> np.ndarray:
    """[H, W] float32: 1 on the photo's content, falling to 0 over `feather_px` pixels
    toward the bands and the image border, 0 in them (a soft edge, no seam in the bake)."""
    b = find_bands(rgb) if bands is None else bands
    h, w = rgb.shape[:2]
    # Distance inward from the nearest excluded edge, per row and per column.
    rows = np.arange(h, dtype=np.float32)
    cols = np.arange(w, dtype=np.float32)
    top, bottom = b.top + BORDER_PX, b.bottom + BORDER_PX
    left, right = b.left + BORDER_PX, b.right + BORDER_PX
    dy = np.minimum(rows - top + 1, h - bottom - rows)
    dx = np.minimum(cols - left + 1, w - right - cols)
    d = np.minimum(dy[:, None], dx[None, :])
    return np.clip(d / feather_px, 0.0, 1.0).astype(np.float32)
