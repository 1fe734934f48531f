"""Mesh topology helpers: UV-seam splitting and normals (every export format), joining meshes."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy import sparse


@dataclass(frozen=True)
class SeamSplit:
    """The head's triangles re-indexed so that each vertex carries exactly one UV.

    Head vertices on a UV seam have a different UV in each island they touch; formats
    with one index per vertex (glTF, PLY) need one vertex per distinct (vertex, uv) pair.
    """

    vertex_map: np.ndarray  # [N] int32: the head vertex each split vertex copies
    uvs: np.ndarray         # [N, 2] float32, OBJ convention (v up, origin bottom-left)
    faces: np.ndarray       # [F, 3] int32 triangles over the split vertices

    @property
    def num_vertices(self) -> int:
        return len(self.vertex_map)


def split_seams(faces: np.ndarray, face_uvs: np.ndarray) -> SeamSplit:
    """faces [F, 3] + per-corner face_uvs [F, 3, 2] -> one vertex per (vertex, uv) pair.

    Split vertices are ordered by head vertex index, so an unsplit mesh keeps its order.
    """
    corners = faces.reshape(-1)
    uvs = face_uvs.reshape(-1, 2)
    # Exact float equality is right here: corners sharing a UV were written from one value.
    order = np.lexsort((uvs[:, 1], uvs[:, 0], corners))
    keys = np.column_stack([corners[order], uvs[order]])
    starts = np.r_[True, (np.diff(keys, axis=0) != 0).any(1)]  # first corner of each pair
    inverse = np.empty(len(corners), np.int64)
    inverse[order] = np.cumsum(starts) - 1
    return SeamSplit(
        vertex_map=corners[order][starts].astype(np.int32),
        uvs=uvs[order][starts].astype(np.float32),
        faces=inverse.reshape(faces.shape).astype(np.int32),
    )


def vertex_normals(vertices: np.ndarray, faces: np.ndarray) -> np.ndarray:
    """Area-weighted unit vertex normals, float32 [..., V, 3], for vertices [..., V, 3].

    Any leading batch dimensions are computed in one sparse product (the 52 morph
    targets' normals at once). Compute these on the unsplit head so both sides of a UV
    seam shade identically. Vertices used by no face get +Z (any unit vector will do).
    """
    v = np.asarray(vertices, np.float64)
    batch, num_vertices = v.shape[:-2], v.shape[-2]
    v = v.reshape(-1, num_vertices, 3).transpose(1, 0, 2)              # [V, B, 3]
    a, b, c = v[faces[:, 0]], v[faces[:, 1]], v[faces[:, 2]]          # [F, B, 3] each
    face_n = np.cross(b - a, c - a).reshape(len(faces), -1)            # |n| = 2 area
    normals = (_corner_incidence(faces, num_vertices) @ face_n).reshape(num_vertices, -1, 3)
    length = np.linalg.norm(normals, axis=-1, keepdims=True)
    normals = np.where(length > 1e-20, normals / np.maximum(length, 1e-20), [0.0, 0.0, 1.0])
    return normals.transpose(1, 0, 2).reshape(*batch, num_vertices, 3).astype(np.float32)


def _corner_incidence(faces: np.ndarray, num_vertices: int) -> sparse.csr_matrix:
    """[V, F] sparse matrix with a 1 where vertex v is a corner of face f."""
    rows = faces.reshape(-1)
    cols = np.repeat(np.arange(len(faces)), faces.shape[1])
    return sparse.csr_matrix((np.ones(len(rows)), (rows, cols)), shape=(num_vertices, len(faces)))


def joined(meshes: list[tuple[np.ndarray, np.ndarray]]) -> tuple[np.ndarray, np.ndarray]:
    """Several (vertices [N, 3], faces [F, 3]) as one, faces offset to match."""
    offsets = np.cumsum([0] + [len(v) for v, _ in meshes])
    return (np.concatenate([np.asarray(v) for v, _ in meshes]),
            np.concatenate([np.asarray(f) + o for (_, f), o in zip(meshes, offsets)]))
