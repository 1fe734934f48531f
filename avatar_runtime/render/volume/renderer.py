"""Volume rendering of a triplane field seen by a `Camera`.

    >>> import torch
    >>> from avatar_runtime.render.camera import Camera
    >>> from avatar_runtime.render.volume import (TriplaneDecoder, TriplaneField,
    ...                                           make_sampler, render_field)
    >>> field = TriplaneField(torch.zeros(3, 32, 32, 32), TriplaneDecoder())
    >>> out = render_field(field, Camera.orbit(width=16, height=16), make_sampler("fast", field))
    >>> out.rgba.shape, out.depth.shape, out.features.shape
    (torch.Size([16, 16, 4]), torch.Size([16, 16]), torch.Size([32, 16, 16]))
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F

from avatar_runtime.render.camera import Camera
from avatar_runtime.render.mesh_renderer import RenderOutput
from avatar_runtime.render.volume.compositing import RayOutputs
from avatar_runtime.render.volume.fast_sampler import FastSampler, FastSamplerConfig
from avatar_runtime.render.volume.field import TriplaneField
from avatar_runtime.render.volume.occupancy import OccupancyConfig, OccupancyGrid
from avatar_runtime.render.volume.rays import RayBundle, camera_rays
from avatar_runtime.render.volume.samplers import ReferenceSampler, ReferenceSamplerConfig

SAMPLERS = ("reference", "fast")
# Pixels count as covered (finite depth) once their alpha rounds to at least 1/255.
MIN_OPACITY = 0.5 / 255


@dataclass
class VolumeRender:
    """One rendered view (torch, on the field's device).

    rgba:      [H, W, 4] float in [0, 1], straight alpha
    depth:     [H, W] metres along the view axis, +inf where uncovered
    features:  [F, H, W] premultiplied feature image (channels 0..2 = RGB), for 2D networks
    n_samples: decoder evaluations spent on this frame
    """

    rgba: torch.Tensor
    depth: torch.Tensor
    features: torch.Tensor
    n_samples: int

    def to_render_output(self) -> RenderOutput:
        """The mesh renderer's output type: RGBA8 straight alpha, depth, zero normals."""
        rgba = (self.rgba.detach().clamp(0, 1) * 255 + 0.5).to(torch.uint8).cpu().numpy()
        depth = self.depth.detach().cpu().numpy().astype(np.float32)
        return RenderOutput(rgba, depth, np.zeros(depth.shape + (3,), np.float32))


def make_sampler(name: str, field: TriplaneField | None = None,
                 occupancy: OccupancyConfig | None = OccupancyConfig(),
                 fast: FastSamplerConfig = FastSamplerConfig(),
                 reference: ReferenceSamplerConfig = ReferenceSamplerConfig()):
    """Sampler by name. `fast` builds an occupancy grid from `field` unless `occupancy` or
    `field` is None (then it only uses the proxy-surface band / plain marching)."""
    if name == "reference":
        return ReferenceSampler(reference)
    if name == "fast":
        grid = None if field is None or occupancy is None else OccupancyGrid.from_field(field, occupancy)
        return FastSampler(fast, grid)
    raise ValueError(f"unknown sampler {name!r}; available: {', '.join(SAMPLERS)}")


def surface_distance(depth: np.ndarray, rays: RayBundle, unit_m: float, dilation_px: int = 1
                     ) -> torch.Tensor:
    """Mesh view depth [H, W] (m, +inf = miss) -> ray distances [H * W, 2] (field units)
    of the nearest and farthest surface within `dilation_px` pixels.

    The window makes the band cover silhouettes and occlusion edges: a pixel whose
    centre just misses the nose still gets a band starting at the nose.
    """
    depth = torch.as_tensor(np.asarray(depth, np.float32), device=rays.near.device)[None, None]
    k = 2 * dilation_px + 1
    nearest = -F.max_pool2d(-depth, k, 1, dilation_px)
    finite = torch.where(torch.isfinite(depth), depth, torch.zeros_like(depth))
    farthest = F.max_pool2d(finite, k, 1, dilation_px)
    farthest = torch.where(farthest > 0, farthest, torch.full_like(farthest, float("inf")))
    both = torch.stack([nearest.reshape(-1), farthest.reshape(-1)], 1)
    return both / (rays.view_cos[:, None] * unit_m)


def render_field(field: TriplaneField, camera: Camera, sampler,
                 surface_depth: np.ndarray | None = None, surface_margin_m: float = 0.01
                 ) -> VolumeRender:
    """Render `field` from `camera` with `sampler`.

    surface_depth: optional [H, W] view depth (m, +inf = miss) of a proxy surface, e.g.
    `MeshRenderer.render(...).depth` of the deformed head; the `fast` sampler then only
    samples in a band around it. Pixels within `surface_margin_m` (projected at the
    nearest surface depth) of a surface pixel share its band (see `surface_distance`).
    """
    rays = camera_rays(camera, field.box, field.device)
    surface_t = None
    if surface_depth is not None:
        finite = np.asarray(surface_depth)[np.isfinite(surface_depth)]
        px = math.ceil(surface_margin_m * camera.focal_px / finite.min()) if finite.size else 0
        surface_t = surface_distance(surface_depth, rays, field.box.half_extent, px)
    before = field.n_evaluations
    out = sampler(field, rays, surface_t)
    return _to_image(out, rays, camera, field.box.half_extent, field.n_evaluations - before)


def _to_image(out: RayOutputs, rays: RayBundle, camera: Camera, unit_m: float,
              n_samples: int) -> VolumeRender:
    """Ray outputs [H * W] -> images."""
    h, w = camera.height, camera.width
    opacity = out.opacity.clamp(0.0, 1.0)
    covered = opacity > MIN_OPACITY
    safe = torch.where(covered, opacity, torch.ones_like(opacity))
    rgb = torch.where(covered[:, None], out.features[:, :3] / safe[:, None], 0.0).clamp(0, 1)
    depth = out.depth / safe * rays.view_cos * unit_m
    depth = torch.where(covered, depth, torch.full_like(depth, float("inf")))
    rgba = torch.cat([rgb, opacity[:, None]], 1).reshape(h, w, 4)
    features = out.features.reshape(h, w, -1).permute(2, 0, 1)
    return VolumeRender(rgba, depth.reshape(h, w), features, n_samples)
