"""Long hair: a curtain hanging from under the hair shell down the back and beside the neck.

The shell (head/hair.py) only covers the scalp, so hair that falls below the ears was left
out of the silhouette. The curtain is a sheet of `ROWS` x `COLUMNS` vertices in the head's
frame (metres, +Y up, face toward +Z, origin between the ears at eye height): each row a
half ring behind the head, from one side round the back to the other, wide as the photo's
hair is at that height on each side (`reconstruct/hair_curtain_fit.py`), its ends bent a
little forward where the hair is wider than the neck. Its top row sits just inside the
shell, so the two read as one head of hair. It is rigid on the head bone, is drawn
double-sided (its inner face is what a frontal view sees beside the neck) and carries a
texture of its own: column j, row k -> u = j / (COLUMNS - 1), v = 1 - k / (ROWS - 1).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

ROWS, COLUMNS = 16, 25
TOP_Y = 0.02          # the top row, just above the ears
NECK_HALF_WIDTH = 0.035  # a side without long hair tucks its rows behind the neck
FORWARD = 0.3         # radians past the ear plane the sides bend forward at full width ...
FORWARD_FROM_Y, FORWARD_FULL_Y = -0.06, -0.12  # ... from the jaw down (beside the face they fall straight)


@dataclass(frozen=True)
class HairCurtain:
    grid: np.ndarray      # [ROWS, COLUMNS, 3] rest vertices in the head's frame
    texture: np.ndarray   # [S, S, 3] uint8, row 0 at the top (v = 1)

    def vertices(self) -> np.ndarray:
        return self.grid.reshape(-1, 3).astype(np.float32)


def stored_curtain(tensors: dict) -> HairCurtain | None:
    """An avatar's curtain (tensors `hair_curtain`, `hair_curtain_texture`), or None:
    short hair, or an avatar made before curtains."""
    grid, texture = tensors.get("hair_curtain"), tensors.get("hair_curtain_texture")
    if grid is None or texture is None:
        return None
    return HairCurtain(np.asarray(grid, np.float32), np.asarray(texture, np.uint8))


def curtain_ring(half_widths: tuple[float, float], depth: float, y: float) -> np.ndarray:
    """[COLUMNS, 3] one row: an arc behind the head at height `y`, from the subject's right
    (half_widths[0]) round the back (`depth` behind the ear plane) to the left (half_widths[1])."""
    s = np.linspace(-1.0, 1.0, COLUMNS)
    out = np.empty((COLUMNS, 3), np.float64)
    for side, half in ((-1, half_widths[0]), (1, half_widths[1])):
        cols = s * side >= 0
        # Beyond the neck, below the jaw, the sides bend forward (hair falls in front of the
        # shoulders' top).
        low = np.clip((y - FORWARD_FROM_Y) / (FORWARD_FULL_Y - FORWARD_FROM_Y), 0.0, 1.0)
        reach = np.pi / 2 + FORWARD * low * np.clip((half - 0.06) / 0.03, 0.0, 1.0)
        phi = np.abs(s[cols]) * reach
        out[cols, 0] = side * half * np.sin(phi)
        out[cols, 2] = -depth * np.cos(phi)
    out[:, 1] = y
    return out


def grid_faces() -> tuple[np.ndarray, np.ndarray]:
    """(faces [F, 3] into the flattened grid, face_uvs [F, 3, 2] into the curtain's texture)."""
    k, j = np.meshgrid(np.arange(ROWS - 1), np.arange(COLUMNS - 1), indexing="ij")
    a = (k * COLUMNS + j).ravel()
    b, c, d = a + 1, a + COLUMNS, a + COLUMNS + 1
    faces = np.concatenate([np.stack([a, c, b], 1), np.stack([b, c, d], 1)]).astype(np.int32)
    kk, jj = np.divmod(np.arange(ROWS * COLUMNS), COLUMNS)
    uv = np.stack([jj / (COLUMNS - 1), 1.0 - kk / (ROWS - 1)], 1).astype(np.float32)
    return faces, uv[faces]
