"""Fit the long-hair curtain (head/hair_curtain.py) to a photo, and bake its texture.

Width: along lines across the head's ear plane, every centimetre of height from above the
ears down, how far the photo's hair reaches out on each side (the hair matte sampled
through the photo's camera). Only a photo whose hair hangs beside the neck on both sides,
below the ears, gets a curtain; it ends at the lowest height where the hair still does.
Texture: the photo where the curtain is seen (hair pixels, not hidden by the head, the
bust or itself), the rest filled outward from what was seen, relaxing to the hair's colour.
"""

from __future__ import annotations

import cv2
import numpy as np

from ..faces.hair_matte import HairMatte
from ..mesh.geometry import joined
from ..head.hair_curtain import COLUMNS, NECK_HALF_WIDTH, ROWS, TOP_Y, curtain_ring, grid_faces
from ..render.camera import Camera
from .texture import _sample, hidden

STEP_M = 0.01
LOWEST_Y = -0.40          # mid-chest: further down, hair and dark clothes run together
MAX_HALF_WIDTH = 0.25
# Hair is long where, below the ears, it reaches this far beyond the head (and its shell)
# over at least LONG_HEIGHTS heights, and over SIDE_HEIGHTS on each side: hair seen on one
# side only is the nape of a turned head or dark clothes, not hair hanging down.
BELOW_EARS_Y, BEYOND_HEAD_M, LONG_HEIGHTS, SIDE_HEIGHTS = -0.04, 0.012, 3, 2
NECK_HALF_WIDTH_M = 0.05  # the head's half-width below its mesh (the bust's neck)
OUT_OF_FRAME_M = 0.06     # hair running out of the photo's bottom hangs on this much further
CURTAIN_TEXTURE_SIZE = 256
MAX_LIGHTNESS_STEP = 30.0  # L* from the hair's median colour that a hair sample may be


def hair_reach(hair: np.ndarray, rotation: np.ndarray, translation: np.ndarray, camera: Camera,
               heights: np.ndarray) -> np.ndarray:
    """[len(heights), 2] how far (metres) `hair` [H, W] bool reaches out from the head's
    midline in its ear plane at each height: (toward the subject's right, toward the left)."""
    xs = np.arange(0.0, MAX_HALF_WIDTH, 0.0015)
    reach = np.zeros((len(heights), 2))
    h, w = hair.shape
    for s, side in enumerate((-1.0, 1.0)):
        points = np.zeros((len(heights), len(xs), 3))
        points[..., 0] = side * xs
        points[..., 1] = heights[:, None]
        pixels, _ = camera.project((points.reshape(-1, 3) @ rotation.T + translation))
        col, row = np.floor(pixels[:, 0]).astype(int), np.floor(pixels[:, 1]).astype(int)
        inside = (col >= 0) & (col < w) & (row >= 0) & (row < h)
        on = np.zeros(len(pixels), bool)
        on[inside] = hair[row[inside], col[inside]]
        on = on.reshape(len(heights), len(xs))
        enough = on.sum(1) >= 3
        far = len(xs) - 1 - np.argmax(on[:, ::-1], axis=1)
        reach[:, s] = np.where(enough, xs[far], 0.0)
    return reach


def fit_curtain(lifted: np.ndarray, rotation: np.ndarray, translation: np.ndarray, camera: Camera,
                hair: HairMatte) -> np.ndarray | None:
    """[ROWS, COLUMNS, 3] the curtain's rest vertices for the head at rest with its hair
    raised, `lifted` [V, 3] (head frame), placed by rotation / translation in `camera`'s
    frame; None when the photo's hair does not hang beside the head below the ears."""
    if not hair.present:
        return None
    rotation, translation = np.asarray(rotation, np.float64), np.asarray(translation, np.float64)
    heights = np.arange(TOP_Y, LOWEST_Y - 1e-9, -STEP_M)
    reach = hair_reach(hair.mask, rotation, translation, camera, heights)
    head_half = _half_widths(lifted, heights)
    long = (heights[:, None] <= BELOW_EARS_Y) & (reach > head_half + BEYOND_HEAD_M)
    if long.any(1).sum() < LONG_HEIGHTS or long.sum(0).min() < SIDE_HEIGHTS:
        return None
    bottom = heights[np.flatnonzero(long.any(1)).max()]
    for side, sign in enumerate((-1.0, 1.0)):
        # Where a side's hair runs out of the photo's bottom, it goes on below as it was.
        last = np.flatnonzero(long[:, side]).max()
        below = np.array([[sign * reach[last, side], heights[last] - STEP_M, 0.0]])
        if camera.project(below @ rotation.T + translation)[0][0, 1] >= camera.height - 1:
            reach[last + 1:, side] = reach[last, side]
            head_half[last + 1:, side] = head_half[last, side]
            bottom = min(bottom, max(heights[last] - OUT_OF_FRAME_M, LOWEST_Y))
    # The top row sits just inside the shell: its width and depth there.
    near_top = lifted[np.abs(lifted[:, 1] - TOP_Y) < 0.01]
    top_half = 0.97 * np.array([-near_top[:, 0].min(), near_top[:, 0].max()])
    top_depth = 0.97 * -near_top[:, 2].min()
    rows = []
    for k, y in enumerate(np.linspace(TOP_Y, bottom, ROWS)):
        measured = np.array([np.interp(-y, -heights, reach[:, s]) for s in range(2)])
        beside = np.array([np.interp(-y, -heights, head_half[:, s]) for s in range(2)])
        # Where no hair reaches past the head on a side, that side tucks in behind the neck.
        half = np.where(measured > beside + BEYOND_HEAD_M / 2, measured, NECK_HALF_WIDTH)
        if k == 0:
            half = np.minimum(np.maximum(half, NECK_HALF_WIDTH), top_half)
        rows.append(curtain_ring(tuple(half), top_depth + 0.015 * k / (ROWS - 1), y))
    grid = np.array(rows)
    # Neighbouring rows agree: a one-row spike of the matte is no lock of hair.
    grid[1:-1, :, [0, 2]] = (grid[:-2, :, [0, 2]] + 2 * grid[1:-1, :, [0, 2]] + grid[2:, :, [0, 2]]) / 4
    return grid.astype(np.float32)


def _half_widths(vertices: np.ndarray, heights: np.ndarray) -> np.ndarray:
    """[len(heights), 2] the head's reach toward the subject's right and left at each
    height (NECK_HALF_WIDTH_M below the head's mesh)."""
    out = np.full((len(heights), 2), NECK_HALF_WIDTH_M)
    for i, y in enumerate(heights):
        near = vertices[np.abs(vertices[:, 1] - y) < STEP_M / 2]
        if len(near):
            out[i] = max(-near[:, 0].min(), NECK_HALF_WIDTH_M), max(near[:, 0].max(), NECK_HALF_WIDTH_M)
    return out


def bake_curtain(grid: np.ndarray, rotation: np.ndarray, translation: np.ndarray,
                 occluders: list[tuple[np.ndarray, np.ndarray]], photo: np.ndarray, camera: Camera,
                 hair: HairMatte, size: int = CURTAIN_TEXTURE_SIZE) -> np.ndarray:
    """The curtain's texture [size, size, 3] uint8 for its rest `grid` placed by rotation /
    translation in `camera`'s frame; `occluders`: other placed (vertices, faces)."""
    placed = (grid.reshape(-1, 3) @ np.asarray(rotation, np.float64).T + translation).reshape(grid.shape)
    # Texel centres -> grid coordinates (column j along u, row k down v).
    centres = (np.arange(size) + 0.5) / size
    j = np.broadcast_to(centres[None, :] * (COLUMNS - 1), (size, size)).astype(np.float32)
    k = np.broadcast_to(centres[:, None] * (ROWS - 1), (size, size)).astype(np.float32)
    points = np.stack([cv2.remap(placed[..., c].astype(np.float32), j, k, cv2.INTER_LINEAR,
                                 borderMode=cv2.BORDER_REPLICATE) for c in range(3)], -1).reshape(-1, 3)
    du, dv = np.gradient(placed, axis=1), np.gradient(placed, axis=0)
    normal_grid = np.cross(du, dv)
    normals = np.stack([cv2.remap(normal_grid[..., c].astype(np.float32), j, k, cv2.INTER_LINEAR,
                                  borderMode=cv2.BORDER_REPLICATE) for c in range(3)], -1).reshape(-1, 3)
    normals /= np.linalg.norm(normals, axis=1, keepdims=True) + 1e-12
    to_camera = camera.position - points
    dist = np.linalg.norm(to_camera, axis=1)
    pixels, _ = camera.project(points)
    h, w = photo.shape[:2]
    # Double-sided: either face may be the one seen; edge-on texels smear.
    weight = np.clip((np.abs((normals * to_camera).sum(1)) / dist - 0.15) / 0.25, 0, 1)
    weight *= (pixels[:, 0] >= 0) & (pixels[:, 0] < w - 1) & (pixels[:, 1] >= 0) & (pixels[:, 1] < h - 1)
    candidates = np.flatnonzero(weight > 0)
    everything = joined([(placed.reshape(-1, 3), grid_faces()[0])] + occluders)
    weight[candidates[hidden(camera, points[candidates], *everything, 3e-3)]] = 0.0
    seen = np.flatnonzero(weight > 0)
    # Off the matte's edge: strands there are mixed with the background behind them.
    inner = cv2.erode(hair.mask.astype(np.uint8), cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (9, 9)))
    weight[seen] *= _sample(inner.astype(np.float32)[..., None], pixels[seen])[:, 0] > 0.5
    colours = np.zeros((len(points), 3), np.float32)
    colours[weight > 0] = _sample(photo, pixels[weight > 0])
    # The matte's colour model lets some pale clothes through where the hair ends on them.
    weight[np.abs(_lightness(colours) - _lightness(np.asarray(hair.colour, np.float32)[None])) > MAX_LIGHTNESS_STEP] = 0
    return _fill(colours.reshape(size, size, 3), weight.reshape(size, size), np.asarray(hair.colour, np.float32))


def _lightness(rgb: np.ndarray) -> np.ndarray:
    """[N] CIE L* (0..100) of RGB [N, 3] in 0..255."""
    lab = cv2.cvtColor(np.clip(rgb, 0, 255).astype(np.float32).reshape(1, -1, 3) / 255, cv2.COLOR_RGB2LAB)
    return lab.reshape(-1, 3)[:, 0]


def _fill(colours: np.ndarray, weight: np.ndarray, prior: np.ndarray) -> np.ndarray:
    """Seen texels kept; the rest from a normalised blur of what was seen at growing
    widths, relaxing to `prior` (the hair's colour: the back of the head) away from it."""
    out = colours * weight[..., None]
    filled = np.broadcast_to(prior, colours.shape).astype(np.float32)
    for sigma in (16.0, 8.0, 4.0, 2.0):
        w = cv2.GaussianBlur(weight.astype(np.float32), (0, 0), sigma)
        c = cv2.GaussianBlur(colours * weight[..., None], (0, 0), sigma)
        sure = np.clip(w / 0.2, 0, 1)[..., None]
        filled = sure * (c / np.maximum(w, 1e-6)[..., None]) + (1 - sure) * filled
    out = out + filled * (1 - weight[..., None])
    return np.clip(out, 0, 255).astype(np.uint8)
