"""Where the hair is in a portrait: the person matte minus face, skin and clothes.

MediaPipe's wheel has no hair segmenter, so the hair region is read from what it does give:
inside the person matte, outside the face's landmark hull, near the head, and coloured
like the hair just above the forehead rather than like the cheeks (a two-class colour
model in Lab). Only pieces connected to the crown count, so a dark collar or a
hair-coloured background seen through the matte's edge is not hair.
"""

from __future__ import annotations

from dataclasses import dataclass

import cv2
import numpy as np

FOREHEAD_TOP, CHIN, RIGHT_CHEEK_EDGE, LEFT_CHEEK_EDGE = 10, 152, 234, 454
CHEEKS = (50, 280)  # mid-cheek landmarks: skin samples
# The head's silhouette takes hair down to this far below the chin (in face heights);
# long hair is followed further down, in unbroken runs (the curtain's fit).
BELOW_CHIN = 0.35
HANGING_BELOW_CHIN = 1.6


@dataclass(frozen=True)
class HairMatte:
    mask: np.ndarray        # [H, W] bool: hair pixels, long hair included
    head: np.ndarray        # [H, W] bool: face, or hair down to BELOW_CHIN (the head's silhouette)
    colour: np.ndarray      # [3] RGB median of the hair (the skin's when bald)
    present: bool           # False: bald or shaved, or no hair could be seen


def hair_matte(rgb: np.ndarray, landmarks: np.ndarray, person: np.ndarray) -> HairMatte:
    """rgb [H, W, 3] uint8, landmarks [478, 3] pixels, person matte [H, W] in [0, 1]."""
    h, w = rgb.shape[:2]
    pts = landmarks[:, :2]
    face = np.zeros((h, w), np.uint8)
    cv2.fillConvexPoly(face, cv2.convexHull(pts.astype(np.int32)), 1)
    face = face.astype(bool)
    top, chin = pts[FOREHEAD_TOP], pts[CHIN]
    face_h = max(float(chin[1] - top[1]), 1.0)
    face_w = max(float(pts[LEFT_CHEEK_EDGE, 0] - pts[RIGHT_CHEEK_EDGE, 0]), 1.0)
    lab = cv2.cvtColor(rgb, cv2.COLOR_RGB2LAB).astype(np.float32)
    inside = person > 0.5

    yy, xx = np.mgrid[0:h, 0:w]
    skin_px = np.zeros((h, w), bool)
    for k in CHEEKS:
        skin_px |= (xx - pts[k, 0]) ** 2 + (yy - pts[k, 1]) ** 2 < (0.07 * face_h) ** 2
    band = (inside & ~face & (np.abs(xx - top[0]) < 0.25 * face_w)
            & (yy > top[1] - 0.35 * face_h) & (yy < top[1] - 0.04 * face_h))
    skin_model = _colour_model(lab[skin_px & inside])
    hair_model = _colour_model(lab[band])
    head = face & inside
    if hair_model is None or skin_model is None:
        return HairMatte(np.zeros((h, w), bool), head, _median(rgb, skin_px), False)
    if _distance(hair_model[0][None], skin_model)[0] < 1.0:  # the crown shows skin: bald
        return HairMatte(np.zeros((h, w), bool), head, _median(rgb, skin_px), False)

    near = ((np.abs(xx - top[0]) < 1.3 * face_w) & (yy < chin[1] + HANGING_BELOW_CHIN * face_h))
    candidates = inside & near & ~face
    d_hair, d_skin = _distance(lab[candidates], hair_model), _distance(lab[candidates], skin_model)
    hair = np.zeros((h, w), bool)
    hair[candidates] = (d_hair < d_skin) & (d_hair < 4.0)
    kernel = cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (5, 5))
    hair = cv2.morphologyEx(hair.astype(np.uint8), cv2.MORPH_CLOSE, kernel).astype(bool) & inside
    hair = _hanging(_connected_to(hair, band), int(chin[1] - 0.3 * face_h))
    short = hair & (yy < chin[1] + BELOW_CHIN * face_h)
    return HairMatte(hair, head | short, _median(rgb, hair), bool(hair.sum() > 0.02 * face_h * face_w))


def _hanging(mask: np.ndarray, row: int) -> np.ndarray:
    """Below `row` (mouth height), only hair that hangs from above it in an unbroken run
    down its column: a dark collar reached through the shadow under the jaw is clothes."""
    row = int(np.clip(row, 0, len(mask) - 1))
    out = mask.copy()
    out[row:] = np.cumprod(mask[row:], axis=0).astype(bool)
    return out


def _colour_model(samples: np.ndarray):
    """(mean [3], std [3]) of Lab samples [N, 3]; None when there are too few."""
    if len(samples) < 30:
        return None
    return samples.mean(0), np.maximum(samples.std(0), (4.0, 3.0, 3.0))


def _distance(lab: np.ndarray, model) -> np.ndarray:
    mean, std = model
    return np.sqrt((((lab - mean) / std) ** 2).mean(1))


def _connected_to(mask: np.ndarray, seed: np.ndarray) -> np.ndarray:
    """The pieces of `mask` that touch `seed`."""
    n, labels = cv2.connectedComponents(mask.astype(np.uint8), connectivity=8)
    keep = np.unique(labels[seed & mask])
    return np.isin(labels, keep[keep > 0])


def _median(rgb: np.ndarray, where: np.ndarray) -> np.ndarray:
    return (np.median(rgb[where], 0) if where.any() else np.array([90.0, 70, 60])).astype(np.float32)
