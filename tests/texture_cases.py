"""Degraded portraits for the texture-bake tests and benchmark: letterbox bands and a hand
over the jaw, made from a clean photo and its landmarks (no downloaded images)."""

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
