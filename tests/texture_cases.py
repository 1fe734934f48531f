"""Altered portraits for the texture-bake and long-hair tests and benchmark: letterbox
bands, a hand over the jaw, long hair hanging beside the neck, made from a clean photo
and its landmarks (no downloaded images)."""

from __future__ import annotations

import cv2
import numpy as np

HAND_TONE = (224, 172, 146)  # a light skin tone, as a hand in front of a face shows


def with_top_band(rgb: np.ndarray, covered: int, added: int) -> np.ndarray:
    """Black letterbox band at the top: `added` black rows above the photo and its own top
    `covered` rows blacked out (a band that cuts into the crown), with a little noise as
    a video frame's band has."""
    out = np.concatenate([np.zeros((added, rgb.shape[1], 3), np.uint8), rgb], 0)
    out[:added + covered] = np.random.default_rng(0).integers(0, 6, out[:added + covered].shape)
    return out


def hand_mask(shape: tuple[int, int], landmarks: np.ndarray) -> np.ndarray:
    """[H, W] float32 in [0, 1], anti-aliased: a palm under the chin with four fingers up
    over the subject's right jaw and a thumb along the chin, sized by the face's width."""
    scale = 16
    big = np.zeros((shape[0] * scale, shape[1] * scale), np.uint8)
    chin, jaw_r, jaw_l = landmarks[152, :2], landmarks[172, :2], landmarks[397, :2]
    width = float(np.linalg.norm(jaw_l - jaw_r))
    palm = chin + np.array([-0.22, 0.12]) * width

    def pt(p):
        return tuple(int(v) for v in np.round(np.asarray(p) * scale))

    cv2.ellipse(big, pt(palm), pt((0.27 * width, 0.22 * width)), -15, 0, 360, 255, -1)
    up = np.array([np.sin(np.radians(-12)), -np.cos(np.radians(-12))])  # leaning toward the jaw corner
    for k, length in enumerate((0.36, 0.42, 0.44, 0.38)):
        base = palm + np.array([(k - 1.5) * 0.12 * width, -0.1 * width])
        tip = base + length * width * up
        cv2.line(big, pt(base), pt(tip), 255, int(0.11 * width * scale))
        cv2.circle(big, pt(tip), int(0.055 * width * scale), 255, -1)
    thumb = palm + np.array([0.42, -0.12]) * width
    cv2.line(big, pt(palm), pt(thumb), 255, int(0.12 * width * scale))
    cv2.circle(big, pt(thumb), int(0.06 * width * scale), 255, -1)
    return cv2.resize(big, shape[::-1], interpolation=cv2.INTER_AREA).astype(np.float32) / 255


def with_hand(rgb: np.ndarray, landmarks: np.ndarray, tone=HAND_TONE) -> tuple[np.ndarray, np.ndarray]:
    """(photo with a skin-coloured hand pasted over the jaw, the hand's mask [H, W]).
    The hand is shaded as a rounded thing is: lit from above, darker toward its rim."""
    mask = hand_mask(rgb.shape[:2], landmarks)
    inside = (mask > 0.5).astype(np.uint8)
    rim = cv2.distanceTransform(inside, cv2.DIST_L2, 5)
    rim = np.clip(rim / max(rim.max() * 0.5, 1.0), 0, 1)
    rows = np.linspace(1.05, 0.85, rgb.shape[0])[:, None]
    shade = (0.8 + 0.2 * rim) * rows
    hand = np.asarray(tone, np.float32) * shade[..., None]
    hand += np.random.default_rng(1).normal(0, 3, hand.shape)
    out = rgb.astype(np.float32) * (1 - mask[..., None]) + hand * mask[..., None]
    return np.clip(out, 0, 255).astype(np.uint8), mask


def with_long_hair(rgb: np.ndarray, landmarks: np.ndarray, hair: np.ndarray,
                   sides: tuple[int, ...] = (-1, 1)) -> tuple[np.ndarray, np.ndarray]:
    """(photo whose own hair falls from the temples over the ears to below the chin on
    `sides` (-1 the subject's right, 1 the left), widening as it falls; the added hair's
    mask [H, W] bool). `hair` [H, W] bool is the photo's hair: a strip of its crown,
    stretched downward, is the strands."""
    h, w = rgb.shape[:2]
    right, left = landmarks[234, :2], landmarks[454, :2]
    chin, top = landmarks[152, :2], landmarks[10, :2]
    face_h = float(chin[1] - top[1])
    crown = np.flatnonzero(hair.sum(1) > 0.6 * (left[0] - right[0]))[0]
    cols = np.flatnonzero(hair[crown + 5])
    strip = rgb[crown + 2:crown + 2 + int(0.25 * face_h), cols[0] + 5:cols[-1] - 5]
    start, bottom = int(top[1] + 0.35 * face_h), int(min(h - 1, chin[1] + face_h))
    strands = cv2.resize(strip.transpose(1, 0, 2), (bottom - start, int(0.45 * face_h))).transpose(1, 0, 2)
    out, added = rgb.astype(np.float32), np.zeros((h, w), bool)
    fall = np.sqrt(np.linspace(0, 1, bottom - start))
    for edge, side in ((right, -1), (left, 1)):
        if side not in sides:
            continue
        mask = np.zeros((h, w), np.float32)
        inner = edge[0] - side * 0.02 * face_h
        outer = edge[0] + side * (0.12 + 0.25 * fall) * face_h
        for y, x in zip(range(start, bottom), outer):
            lo, hi = sorted((int(inner), int(x)))
            mask[y, max(lo, 0):min(hi, w)] = 1
        added |= mask > 0
        mask = cv2.GaussianBlur(mask, (0, 0), 1.5)[..., None]
        canvas = np.zeros_like(out)
        x0 = int(min(inner, edge[0] + side * 0.37 * face_h))
        width = min(strands.shape[1], w - x0)
        canvas[start:bottom, x0:x0 + width] = strands[:, :width]
        out = out * (1 - mask) + canvas * mask
    return np.clip(out, 0, 255).astype(np.uint8), added
