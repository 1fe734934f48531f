"""What a `portrait4d` avatar keeps of its photo: the face crop its encoders see."""

from __future__ import annotations

import cv2
import numpy as np

CROP_SCALE = 1.8  # the crop spans this many face-box sizes: hair, ears and chin included


def face_crop(rgb: np.ndarray, landmarks: np.ndarray, size: int) -> np.ndarray:
    """[size, size, 3] uint8: a square crop centred on the landmarks' box, replicated edges."""
    lo, hi = landmarks[:, :2].min(0), landmarks[:, :2].max(0)
    centre, half = (lo + hi) / 2, CROP_SCALE * (hi - lo).max() / 2
    scale = size / (2 * half)
    affine = np.array([[scale, 0, size / 2 - scale * centre[0]],
                       [0, scale, size / 2 - scale * centre[1]]], np.float32)
    return cv2.warpAffine(rgb, affine, (size, size), flags=cv2.INTER_AREA,
                          borderMode=cv2.BORDER_REPLICATE)
