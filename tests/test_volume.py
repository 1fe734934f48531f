"""Volume renderer: `fast` sampler vs EG3D's `reference` scheme on known fields and on a
field trained by gradient descent.

Image quality is compared on premultiplied RGBA (the image over black, and its alpha):
straight colour is undefined where alpha is ~0.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch

from avatar_runtime.head.model import load_head_model
from avatar_runtime.render.camera import Camera
from avatar_runtime.render.mesh_renderer import MeshRenderer
from avatar_runtime.render.volume import (DecoderConfig, FastSampler, FieldBox, OccupancyConfig, TriplaneDecoder,
                                          TriplaneField, make_sampler, render_field)
from avatar_runtime.render.volume.field import sample_planes
from avatar_runtime.render.volume.reference_fields import MeshShellField, hull_field
from avatar_runtime.render.volume.superres import SuperResolution, SuperResolutionConfig
from avatar_runtime.train.triplane_fit import TriplaneFitConfig, fit_head_field

VIEWS = [(0.0, 0.0), (25.0, 10.0), (-40.0, -8.0)]


def premultiplied(rgba: torch.Tensor) -> torch.Tensor:
    return torch.cat([rgba[..., :3] * rgba[..., 3:], rgba[..., 3:]], -1)


def psnr(a: torch.Tensor, b: torch.Tensor) -> float:
    return float(-10 * torch.log10(((a - b) ** 2).mean().clamp_min(1e-12)))


@pytest.fixture(scope="module")
def head():
    return load_head_model()


@pytest.fixture(scope="module")
def hull(head):
    field = hull_field(head.template, head.faces)
    return field, make_sampler("fast", field)


@pytest.mark.parametrize("res, views", [(64, VIEWS), (128, VIEWS[1:2])])
def test_fast_matches_reference_with_10x_fewer_samples(hull, res, views):
    field, fast = hull
    reference = make_sampler("reference")
    for yaw, pitch in views:
        cam = Camera.orbit(yaw, pitch, width=res, height=res)
        with torch.no_grad():
            ref, out = render_field(field, cam, reference), render_field(field, cam, fast)
        assert ref.n_samples == 96 * res * res
        assert psnr(premultiplied(ref.rgba), premultiplied(out.rgba)) >= 35.0
        assert ref.n_samples >= 10 * out.n_samples
        covered = torch.isfinite(ref.depth) & torch.isfinite(out.depth)
        assert float((ref.depth[covered] - out.depth[covered]).abs().median()) < 0.002


@pytest.fixture(scope="module")
def trained(head):
    """A small field fitted to multi-view renders of the textured head (~20 s on 2 cores)."""
    config = TriplaneFitConfig(resolution=32, decoder=DecoderConfig(in_channels=16, out_features=16),
                               views=16, steps=120)
    field, report = fit_head_field(config, head, progress=False)
    return field, report, make_sampler("fast", field, OccupancyConfig(resolution=64))


def test_fast_matches_reference_on_a_trained_field(trained):
    field, report, fast = trained
    assert report.heldout_psnr > 24.0  # it did learn the head (mesh vs reference render)
    reference = make_sampler("reference")
    for res, views in ((64, VIEWS[:2]), (128, VIEWS[1:2])):
        for yaw, pitch in views:
            cam = Camera.orbit(yaw, pitch, width=res, height=res)
            with torch.no_grad():
                ref, out = render_field(field, cam, reference), render_field(field, cam, fast)
            assert psnr(premultiplied(ref.rgba), premultiplied(out.rgba)) >= 35.0
            assert ref.n_samples >= 10 * out.n_samples


def test_plane_table_matches_grid_sample():
    planes = torch.randn(3, 8, 16, 16)
    points = torch.rand(500, 3) * 2.4 - 1.2  # some outside the cube: zeros, as grid_sample
    field = TriplaneField(planes, TriplaneDecoder(DecoderConfig(in_channels=8, out_features=8)))
    with torch.no_grad():
        assert torch.allclose(field.table().lookup(points), sample_planes(planes, points), atol=1e-5)
        planes.mul_(2)  # edited in place: the table follows
        assert torch.allclose(field.table().lookup(points), sample_planes(planes, points), atol=1e-5)


def test_band_around_head_mesh_matches_reference(head):
    """Proxy-surface band (the per-frame path of a fitted head) on a field whose surface
    is the mesh itself: with and without an occupancy grid."""
    verts = head.shape(expression=np.eye(52, dtype=np.float32)[24] * 0.8)  # jawOpen
    field = MeshShellField(verts, head.faces, edge=0.002)
    mesh = MeshRenderer(head.faces, head.face_uvs, np.zeros((4, 4, 3), np.uint8), aa_samples=0)
    cam = Camera.orbit(20, 5, width=64, height=64)
    depth = mesh.render(verts, cam).depth
    ref = render_field(field, cam, make_sampler("reference"))
    grid_sampler = make_sampler("fast", field, OccupancyConfig(resolution=64))
    for sampler in (FastSampler(), grid_sampler):
        out = render_field(field, cam, sampler, surface_depth=depth)
        assert psnr(premultiplied(ref.rgba), premultiplied(out.rgba)) >= 35.0
        # A 2 cm band decodes more than a 128^3 grid does (figures in the report).
        assert ref.n_samples >= 6 * out.n_samples


def test_rays_that_miss_the_cube_cost_nothing():
    field = TriplaneField(torch.zeros(3, 32, 16, 16), TriplaneDecoder())
    away = Camera.look_at((0, 0, 2.0), target=(0, 0, 10.0), width=8, height=8)  # looks away
    for name in ("reference", "fast"):
        out = render_field(field, away, make_sampler(name, field, OccupancyConfig(resolution=16)))
        assert out.n_samples == 0 and torch.isinf(out.depth).all()
        assert float(out.rgba.abs().max()) == 0.0
    with pytest.raises(ValueError, match="unknown sampler"):
        make_sampler("nope")


def test_outputs_follow_conventions(hull):
    field, fast = hull
    out = render_field(field, Camera.orbit(width=24, height=16), fast)
    assert out.rgba.shape == (16, 24, 4) and out.features.shape == (32, 16, 24)
    rendered = out.to_render_output()
    assert rendered.rgba.dtype == np.uint8 and rendered.depth.dtype == np.float32
    assert ((rendered.rgba[..., 3] > 0) == np.isfinite(rendered.depth)).all()
    assert np.nanmin(rendered.depth) > 1.0  # metres along the view axis from a 1.3 m orbit


def test_field_is_differentiable():
    planes = torch.nn.Parameter(torch.randn(3, 8, 16, 16) * 0.1)
    from avatar_runtime.render.volume import DecoderConfig
    field = TriplaneField(planes, TriplaneDecoder(DecoderConfig(in_channels=8, out_features=8)),
                          FieldBox())
    out = render_field(field, Camera.orbit(width=8, height=8), make_sampler("reference"))
    out.features.sum().backward()
    assert planes.grad is not None and torch.isfinite(planes.grad).all()


def test_super_resolution_shapes():
    sr = SuperResolution(SuperResolutionConfig(in_channels=8, channels=8, scale=4))
    feats = torch.rand(2, 8, 16, 16)
    out = sr(feats)
    assert out.shape == (2, 3, 64, 64)
    # Zero-initialised head: starts as bilinear upsampling of the RGB channels.
    base = torch.nn.functional.interpolate(feats[:, :3], size=(64, 64), mode="bilinear",
                                           align_corners=False)
    assert torch.allclose(out, base)
