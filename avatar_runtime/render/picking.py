"""Pixel -> surface point look-ups by ray casting (landmark back-projection)."""

from __future__ import annotations

import numpy as np
import open3d as o3d

from .camera import Camera


def backproject(vertices: np.ndarray, faces: np.ndarray, camera: Camera,
                pixels: np.ndarray) -> np.ndarray:
    """Pixels [N, 2] (x right, y down) -> first surface hit [N, 3] (NaN where the ray misses)."""
    scene = o3d.t.geometry.RaycastingScene()
    scene.add_triangles(o3d.core.Tensor(vertices.astype(np.float32)),
                        o3d.core.Tensor(faces.astype(np.uint32)))
    f = camera.focal_px
    local = np.stack([(pixels[:, 0] - camera.width / 2) / f,
                      -(pixels[:, 1] - camera.height / 2) / f, -np.ones(len(pixels))], 1)
    dirs = local @ camera.c2w[:3, :3].T
    dirs /= np.linalg.norm(dirs, axis=1, keepdims=True)
    rays = np.concatenate([np.broadcast_to(camera.position, dirs.shape), dirs], 1)
    t = scene.cast_rays(o3d.core.Tensor(rays.astype(np.float32)))["t_hit"].numpy()
    t = np.where(np.isfinite(t), t, np.nan)
    return camera.position + dirs * t[:, None]
