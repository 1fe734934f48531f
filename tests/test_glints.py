"""Specular glints on glossy spheres: where the light puts them, smooth on a coarse mesh,
and only on the faces marked glossy."""

from __future__ import annotations

import numpy as np
import open3d as o3d

from avatar_runtime.render.camera import Camera
from avatar_runtime.render.glints import LIGHT, fit_sphere
from avatar_runtime.render.mesh_renderer import MeshRenderer

CAMERA = Camera.look_at((0.0, 0.0, 0.5), (0.0, 0.0, 0.0), fov_y_deg=6, width=256, height=256)


def coarse_sphere(radius=0.012, resolution=6):
    mesh = o3d.geometry.TriangleMesh.create_sphere(radius=radius, resolution=resolution)
    return np.asarray(mesh.vertices), np.asarray(mesh.triangles)


def render(vertices, faces, glossy):
    grey = np.full((4, 4, 3), 100, np.uint8)
    renderer = MeshRenderer(faces, np.zeros((len(faces), 3, 2)), grey, glossy=glossy)
    return renderer.render(vertices, CAMERA).rgba[..., :3].astype(float).mean(-1)


def test_fit_sphere_recovers_centre_and_radius():
    v, _ = coarse_sphere()
    centre, radius = fit_sphere(v[v[:, 2] > 0] + [0.01, 0.02, 0.03])  # a front half is enough
    np.testing.assert_allclose(centre, [0.01, 0.02, 0.03], atol=1e-4)
    assert abs(radius - 0.012) < 3e-4


def test_glint_sits_where_the_light_reflects_and_is_round_on_a_coarse_sphere():
    v, f = coarse_sphere()
    luma = render(v, f, np.zeros(len(f), int))
    matte = render(v, f, np.full(len(f), -1))
    assert matte.max() == 100 and luma.max() > 200
    # Expected: the sphere point whose normal halves the light and the view direction.
    half = LIGHT + np.array([0.0, 0.0, 1.0])
    point = 0.012 * half / np.linalg.norm(half)
    expected = CAMERA.project(point[None])[0][0]
    ys, xs = np.nonzero(luma > 0.5 * (luma.max() + 100))
    peak = np.array([xs.mean() + 0.5, ys.mean() + 0.5])
    assert np.linalg.norm(peak - expected) < 2.0
    assert peak[0] < 128 and peak[1] < 128  # up and left of the centre, like the light
    # Smooth normals: the glint is a round blob, not a lit facet.
    assert 0.6 < np.ptp(xs) / max(np.ptp(ys), 1) < 1.6


def test_only_glossy_faces_glint():
    v, f = coarse_sphere()
    left = v[f].mean(1)[:, 0] < 0  # the light is up-left: the glint is on the left half
    assert render(v, f, np.where(left, 0, -1)).max() > 200
    assert render(v, f, np.where(left, -1, 0)).max() <= 100
