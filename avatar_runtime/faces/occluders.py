"""Where hands cover the photo: a soft mask drawn from MediaPipe's 21 hand landmarks.

A hand in front of the face has the skin's colour and the matte's "person" label, so
neither tells it from the jaw behind it; the hand detector does. The mask is the palm
polygon plus each finger as a thick stroke, sized by the hand's own palm width, grown a
little past the landmarks (they sit inside the hand's outline) and feathered.
"""

from __future__ import annotations

import cv2
import numpy as np

PALM = (0, 1, 5, 9, 13, 17)                     # wrist, thumb base, finger bases
FINGERS = ((1, 2, 3, 4), (5, 6, 7, 8), (9, 10, 11, 12), (13, 14, 15, 16), (17, 18, 19, 20))
FINGER_WIDTH = 0.28   # of the palm width (index base to little-finger base)
GROW = 0.12           # of the palm width: how far the outline lies past the landmarks


def hands_mask(shape: tuple[int, int], hands: list[np.ndarray]) -> np.ndarray:
    """[H, W] float32 in [0, 1]: 1 on the hands whose landmarks [21, 2] (pixels) are given."""
    h, w = shape
    mask = np.zeros((h, w), np.uint8)
    grow = 1
    for points in hands:
        palm_width = float(np.linalg.norm(points[5] - points[17]))
        thick = max(int(round(FINGER_WIDTH * palm_width)), 2)
        grow = max(grow, int(round(GROW * palm_width)))
        pts = np.round(points).astype(np.int32)
        cv2.fillConvexPoly(mask, cv2.convexHull(pts[list(PALM)]), 255)
        for finger in FINGERS:
            cv2.polylines(mask, [pts[list(finger)]], False, 255, thick)
            cv2.circle(mask, tuple(int(v) for v in pts[finger[-1]]), thick // 2, 255, -1)
    if not mask.any():
        return mask.astype(np.float32)
    kernel = cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (2 * grow + 1, 2 * grow + 1))
    mask = cv2.dilate(mask, kernel)
    soft = cv2.GaussianBlur(mask.astype(np.float32) / 255, (0, 0), max(grow / 2, 1.0))
    return np.maximum(soft, mask.astype(np.float32) / 255)
