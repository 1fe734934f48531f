"""Specular glints on the spherical parts of a render (eyeballs).

The mesh renderer is unlit and an eyeball is a few dozen flat facets: a highlight from the
facets' normals would jump from facet to facet. Each glossy part is instead fitted by a
sphere every frame (its vertices, least squares, ~50 us) and lit through that sphere's
smooth normal by a small light just above and left of the camera, so the glint sits where
a studio catchlight would and stays put as the eye turns under it.
"""

from __future__ import annotations

import numpy as np

# Light direction in camera axes (x right, y up, z toward the viewer).
LIGHT = np.array([-0.3, 0.2, 1.0]) / np.linalg.norm([-0.3, 0.2, 1.0])
SHARPNESS = 600.0   # Blinn-Phong exponent: a glint ~1/40 of the eyeball across
STRENGTH = 0.9


class Glossy:
    """Which faces belong to which glossy sphere: groups [F] int, -1 for matte faces."""

    def __init__(self, faces: np.ndarray, groups: np.ndarray):
        groups = np.asarray(groups)
        if groups.shape != (len(faces),):
            raise ValueError(f"glossy groups must have one entry per face [{len(faces)}], got {groups.shape}")
        self.face_group = np.append(groups, -1).astype(np.int64)  # row F: misses
        self.vertex_ids = tuple(np.unique(faces[groups == g]) for g in np.unique(groups[groups >= 0]))

    def spheres(self, vertices: np.ndarray) -> list[tuple[np.ndarray, float]]:
        """[(centre [3], radius)] per group, fitted to vertices [V, 3]."""
        return [fit_sphere(vertices[ids]) for ids in self.vertex_ids]


def fit_sphere(points: np.ndarray) -> tuple[np.ndarray, float]:
    """Least-squares sphere through points [N, 3] (N >= 4, not coplanar)."""
    p = points.astype(np.float64)
    a = np.c_[2 * p, np.ones(len(p))]
    solution = np.linalg.lstsq(a, (p * p).sum(1), rcond=None)[0]
    centre = solution[:3]
    return centre, float(np.sqrt(max(solution[3] + centre @ centre, 0.0)))


def add_glints(rgba: np.ndarray, depth: np.ndarray, dirs: np.ndarray, face: np.ndarray,
               camera, origin: tuple[int, int], glossy: Glossy, vertices: np.ndarray) -> None:
    """Brighten rgba [h, w, 4] uint8 in place where a glossy sphere reflects the light.

    depth [h, w] view depth, dirs [h, w, 3] unit world ray directions, face [h, w] face
    index per pixel (F on a miss): a window of `camera`'s image whose top-left pixel is
    origin (row, col). Only the pixels within each sphere's projected box are looked at.
    """
    c2w = camera.c2w
    eye, forward = c2w[:3, 3], -c2w[:3, 2]
    light = c2w[:3, :3] @ LIGHT
    h, w = face.shape
    for g, (centre, radius) in enumerate(glossy.spheres(vertices)):
        (cx, cy), distance = (v[0] for v in camera.project(centre[None]))
        if distance <= radius:
            continue
        reach = radius * camera.focal_px / (distance - radius) + 1
        r0, r1 = (int(np.clip(v - origin[0], 0, h)) for v in (cy - reach, cy + reach + 1))
        c0, c1 = (int(np.clip(v - origin[1], 0, w)) for v in (cx - reach, cx + reach + 1))
        rows, cols = np.nonzero(glossy.face_group[face[r0:r1, c0:c1]] == g)
        if not len(rows):
            continue
        rows, cols = rows + r0, cols + c0
        d = dirs[rows, cols].astype(np.float64)
        points = eye + d * (depth[rows, cols] / (d @ forward))[:, None]   # view depth -> ray length
        normal = points - centre
        normal /= np.linalg.norm(normal, axis=1, keepdims=True)
        half = light - d
        half /= np.linalg.norm(half, axis=1, keepdims=True)
        spec = STRENGTH * np.clip((normal * half).sum(1), 0, 1) ** SHARPNESS
        rgb = rgba[rows, cols, :3].astype(np.float64)
        rgba[rows, cols, :3] = np.rint(rgb + (255.0 - rgb) * spec[:, None]).astype(np.uint8)
