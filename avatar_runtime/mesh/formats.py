"""Static mesh formats: OBJ (+ MTL + PNG texture) and binary PLY (vertex colours).

Both hold one posed-at-rest shape (an expression, if any, is baked into the vertices):
no skeleton, no morph targets (use glTF for those). Coordinates are the runtime's world
(metres, +Y up, face toward +Z), which is also what OBJ/PLY importers assume by default.
Vertex order is the head model's, so files from different avatars share topology.
"""

from __future__ import annotations

import numpy as np

from ..faces.image import encode_png
from ..head.model import HeadModel
from .geometry import split_seams, vertex_normals
from .inputs import check_texture

HEADER = "avatar-runtime head mesh: metres, +Y up, face toward +Z"


def obj_files(head: HeadModel, vertices: np.ndarray, texture: np.ndarray, stem: str,
              name: str = "avatar") -> dict[str, bytes]:
    """OBJ, MTL and PNG contents keyed by file name (`{stem}.obj`, `.mtl`, `.png`).

    vertices [V, 3] the shaped head; texture [T, T, 3] uint8, row 0 at the top. OBJ
    indexes positions, UVs and normals separately, so seams need no vertex copies: `v`
    and `vn` follow the head's vertices, `vt` the distinct (vertex, uv) pairs.
    """
    texture = check_texture(texture)
    split = split_seams(head.faces, head.face_uvs)
    normals = vertex_normals(vertices, head.faces)
    corners = np.stack([head.faces, split.faces, head.faces], axis=-1) + 1  # [F, 3, 3] 1-based
    obj = "\n".join([
        f"# {HEADER}",
        f"mtllib {stem}.mtl",
        f"o {name}",
        _rows("v %.6f %.6f %.6f", vertices),
        _rows("vt %.6f %.6f", split.uvs),  # OBJ's v points up, as in face_uvs: no flip
        _rows("vn %.6f %.6f %.6f", normals),
        f"usemtl {name}",
        "s 1",
        _rows("f" + " %d/%d/%d" * 3, corners.reshape(len(head.faces), 9)),
        "",
    ])
    mtl = "\n".join([f"# {HEADER}", f"newmtl {name}", "Ka 1 1 1", "Kd 1 1 1", "Ks 0 0 0",
                     "d 1", "illum 1", f"map_Kd {stem}.png", ""])
    return {f"{stem}.obj": obj.encode(), f"{stem}.mtl": mtl.encode(),
            f"{stem}.png": encode_png(texture)}


def ply_bytes(head: HeadModel, vertices: np.ndarray, texture: np.ndarray) -> bytes:
    """Binary little-endian PLY: x y z nx ny nz red green blue per vertex, triangles.

    vertices [V, 3]; colours are the texture sampled at each vertex's UV (a seam vertex
    takes one of its UVs), since PLY has no standard texture binding.
    """
    texture = check_texture(texture)
    record = np.dtype([("xyz", "<f4", 3), ("normal", "<f4", 3), ("rgb", "u1", 3)])
    verts = np.empty(len(vertices), record)
    verts["xyz"] = vertices
    verts["normal"] = vertex_normals(vertices, head.faces)
    verts["rgb"] = _vertex_colours(head, texture)
    tris = np.empty(len(head.faces), [("n", "u1"), ("idx", "<i4", 3)])
    tris["n"], tris["idx"] = 3, head.faces
    header = "\n".join([
        "ply", "format binary_little_endian 1.0", f"comment {HEADER}",
        f"element vertex {len(verts)}",
        *(f"property float {p}" for p in ("x", "y", "z", "nx", "ny", "nz")),
        *(f"property uchar {p}" for p in ("red", "green", "blue")),
        f"element face {len(tris)}", "property list uchar int vertex_indices",
        "end_header", "",
    ])
    return header.encode("ascii") + verts.tobytes() + tris.tobytes()


def _rows(line: str, rows: np.ndarray) -> str:
    """One %-formatted `line` per row of rows [N, C] (the format takes C values)."""
    return "\n".join(line % tuple(r) for r in rows.tolist())


def _vertex_colours(head: HeadModel, texture: np.ndarray) -> np.ndarray:
    """[V, 3] uint8: nearest texel under each head vertex's UV (v up -> row from the top)."""
    split = split_seams(head.faces, head.face_uvs)
    vertex, first = np.unique(split.vertex_map, return_index=True)  # one UV per head vertex
    uv = np.zeros((head.num_vertices, 2), np.float32)
    uv[vertex] = split.uvs[first]
    h, w = texture.shape[:2]
    cols = np.clip((uv[:, 0] * w).astype(int), 0, w - 1)
    rows = np.clip(((1.0 - uv[:, 1]) * h).astype(int), 0, h - 1)
    return texture[rows, cols, :3]
