"""The hair layer: the scalp pushed outward from the skull's centre by a per-photo height.

An avatar stores `hair_offset` [V] (metres per head vertex, 0 off the hair). The shell is
the head's scalp triangles whose corners all carry hair, each vertex moved along its
direction from the head's origin (the point between the ears at eye height); it keeps the
head's UVs, so it shows the head texture, where the bake put the photo's hair at the
shell's own height. It turns with the head bone and rides on the skin under it (a fringe
follows a raised brow); the .glb's hair mesh is rigid on the head joint.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from .model import SKIN, HeadModel

# Offsets under this carry no hair (the shell ends there, onto the scalp).
MIN_HAIR_M = 1e-3


@dataclass(frozen=True)
class HairShell:
    ids: np.ndarray        # [H] head vertices the shell is made of
    faces: np.ndarray      # [F, 3] into ids
    face_uvs: np.ndarray   # [F, 3, 2] the head texture's UVs
    offsets: np.ndarray    # [H] metres

    @property
    def num_vertices(self) -> int:
        return len(self.ids)

    def vertices(self, head_rest: np.ndarray) -> np.ndarray:
        """[H, 3] the shell over the unposed head `head_rest` [V, 3] (identity applied)."""
        base = head_rest[self.ids]
        direction = base / np.maximum(np.linalg.norm(base, axis=1, keepdims=True), 1e-6)
        return (base + self.offsets[:, None] * direction).astype(np.float32)


def hair_shell(head: HeadModel, offset: np.ndarray) -> HairShell | None:
    """The shell for per-vertex offsets [V]; None when no scalp triangle carries hair."""
    skin_faces = np.flatnonzero((head.part_labels[head.faces] == SKIN).all(1))
    carried = skin_faces[(offset[head.faces[skin_faces]] >= MIN_HAIR_M).any(1)]
    if len(carried) == 0:
        return None
    ids, local = np.unique(head.faces[carried], return_inverse=True)
    return HairShell(ids, local.reshape(-1, 3).astype(np.int32), head.face_uvs[carried],
                     offset[ids].astype(np.float32))

