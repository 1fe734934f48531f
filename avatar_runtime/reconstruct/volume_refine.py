"""Per-person volumetric refinement (`--refine volume`), in the Tri2-plane spirit.

A triplane radiance field is fitted by gradient descent to the avatar's views (its photos
or video frames, each through the camera its fit found), with the fitted head as the guide
for what no view shows: renders of the avatar (head and hair) from an orbit of directions
join the targets at a lower weight. The planes are multi-scale: one set per resolution,
upsampled and summed, so coarse planes settle the shape early and fine ones add detail
(Tri2-plane's multi-scale triplanes). Only head-and-hair pixels and the background teach
it; the body lies outside the field's cube and its pixels are left out.

The field is static (the photo's own expression) and is stored with the avatar
(`volume_planes`, `volume_decoder.*`); `export_mesh(source="volume")` extracts its surface.
It needs a GPU to be worth its cost: `VolumeRefineConfig.tiny()` runs in seconds on a CPU,
the default takes minutes per 1000 steps there (the report says what it cost).
"""

from __future__ import annotations

import math
import time
from dataclasses import asdict, dataclass, field
from typing import Callable

import cv2
import numpy as np
import torch
import torch.nn.functional as F

from ..motion.frame import MotionFrame
from ..render.camera import Camera
from ..render.mesh_renderer import MeshRenderer
from ..render.volume import (DecoderConfig, FieldBox, ReferenceSampler, ReferenceSamplerConfig,
                             TriplaneDecoder, TriplaneField, camera_rays)
from ..render.volume.rays import RayBundle
from ..train.losses import distortion, triplane_prior

PLANES, DECODER = "volume_planes", "volume_decoder."


@dataclass(frozen=True)
class VolumeRefineConfig:
    resolutions: tuple[int, ...] = (32, 64, 128)
    """Plane sides of the scales, summed after upsampling to the largest."""
    channels: int = 32
    """Channels per plane (the decoder's input)."""
    steps: int = 1500
    rays_per_step: int = 2048
    image_size: int = 128
    """Longest side of the training views (pixels)."""
    guide_views: int = 12
    """Renders of the fitted avatar on an orbit (yaw -60..60, pitch -15..25)."""
    guide_weight: float = 0.3
    lr_planes: float = 5e-2
    lr_decoder: float = 5e-3
    sampler: ReferenceSamplerConfig = field(default_factory=lambda: ReferenceSamplerConfig(
        n_stratified=24, n_importance=24, perturb=True))
    distortion_weight: float = 0.2
    prior_weight: float = 1e-4
    seed: int = 0

    @staticmethod
    def tiny() -> "VolumeRefineConfig":
        """Seconds on a CPU: proves the path, not the quality."""
        return VolumeRefineConfig(resolutions=(8, 16), channels=8, steps=100, rays_per_step=256,
                                  image_size=32, guide_views=4, sampler=ReferenceSamplerConfig(
                                      n_stratified=8, n_importance=8, perturb=True))


@dataclass
class RefineReport:
    steps: int
    seconds: float
    ms_per_step: float
    first_loss: float
    final_loss: float
    views: int
    guide_views: int
    device: str
    config: dict


@dataclass
class RefineView:
    """One training view: its RGB, the camera its fit found (the avatar's world), and
    which pixels teach the field (head and hair: 1, background: 0, the rest: left out)."""

    rgb: np.ndarray        # [H, W, 3] uint8
    camera: Camera
    alpha: np.ndarray      # [H, W] float32 target opacity
    weight: np.ndarray     # [H, W] float32 loss weight (0 = left out)


def refine_volume(views: list[RefineView], guide_mesh, config: VolumeRefineConfig = VolumeRefineConfig(),
                  progress: Callable[[float], None] = lambda fraction: None,
                  device: str | None = None) -> tuple[TriplaneField, RefineReport]:
    """Fit the field to `views` plus renders of `guide_mesh` (an AvatarMesh at rest)."""
    device = device or ("cuda" if torch.cuda.is_available() else "cpu")
    started = time.perf_counter()
    torch.manual_seed(config.seed)
    box = FieldBox()
    rays, rgb, alpha, weight = _targets(views, guide_mesh, config, box, device)
    scales = [torch.nn.Parameter(torch.randn(3, config.channels, r, r, device=device) * 0.1 / len(config.resolutions))
              for r in config.resolutions]
    decoder = TriplaneDecoder(DecoderConfig(in_channels=config.channels)).to(device)
    optimizer = torch.optim.Adam([{"params": scales, "lr": config.lr_planes},
                                  {"params": decoder.parameters(), "lr": config.lr_decoder}])
    schedule = torch.optim.lr_scheduler.LambdaLR(
        optimizer, lambda s: 0.1 + 0.45 * (1 + math.cos(math.pi * s / config.steps)))
    sampler = ReferenceSampler(config.sampler)
    generator = torch.Generator(device="cpu").manual_seed(config.seed)
    losses = []
    for step in range(config.steps):
        planes = _compose(scales)
        field_ = TriplaneField(planes, decoder, box)
        pick = torch.randint(len(rays), (config.rays_per_step,), generator=generator).to(device)
        out, t, w = sampler.render_rays(field_, rays.subset(pick))
        per_ray = ((out.features[:, :3] - rgb[pick]).abs().mean(1) + (out.opacity - alpha[pick]).abs())
        loss = ((per_ray * weight[pick]).sum() / weight[pick].sum().clamp_min(1e-6)
                + config.distortion_weight * distortion(w, t)
                + config.prior_weight * sum(triplane_prior(p[None]) for p in scales))
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        schedule.step()
        losses.append(float(loss.detach()))
        if step % 10 == 0:
            progress(step / config.steps)
    with torch.no_grad():
        fitted = TriplaneField(_compose(scales).detach(), decoder.requires_grad_(False), box)
    seconds = time.perf_counter() - started
    head = np.mean(losses[: max(1, len(losses) // 10)])
    tail = np.mean(losses[-max(1, len(losses) // 10):])
    return fitted, RefineReport(config.steps, seconds, 1000 * seconds / max(config.steps, 1), float(head),
                                float(tail), len(views), config.guide_views, device, asdict(config))


def field_tensors(field_: TriplaneField) -> dict[str, np.ndarray]:
    """What an avatar stores of its refined field."""
    out = {PLANES: field_.planes.detach().cpu().numpy().astype(np.float32)}
    out.update({DECODER + k: v.detach().cpu().numpy() for k, v in field_.decoder.state_dict().items()})
    return out


def stored_field(tensors: dict) -> TriplaneField | None:
    """The refined field an avatar carries, or None."""
    if PLANES not in tensors:
        return None
    planes = torch.from_numpy(np.asarray(tensors[PLANES], np.float32))
    decoder = TriplaneDecoder(DecoderConfig(in_channels=planes.shape[1]))
    decoder.load_state_dict({k[len(DECODER):]: torch.from_numpy(np.asarray(v))
                             for k, v in tensors.items() if k.startswith(DECODER)})
    return TriplaneField(planes, decoder.requires_grad_(False), FieldBox())


def _compose(scales: list[torch.Tensor]) -> torch.Tensor:
    """[3, C, R, R]: every scale upsampled to the largest side and summed."""
    side = max(p.shape[-1] for p in scales)
    return sum(p if p.shape[-1] == side else F.interpolate(p, size=(side, side), mode="bilinear",
                                                            align_corners=False) for p in scales)


def _targets(views: list[RefineView], guide_mesh, config: VolumeRefineConfig, box: FieldBox, device: str):
    """Rays crossing the cube with their premultiplied RGB, opacity and loss weight."""
    bundles, rgbs, alphas, weights = [], [], [], []

    def add(camera, rgb, alpha, weight):
        bundle = camera_rays(camera, box, device)
        a = torch.from_numpy(alpha.reshape(-1).astype(np.float32)).to(device)
        colour = torch.from_numpy(rgb.reshape(-1, 3).astype(np.float32) / 255).to(device) * a[:, None]
        w = torch.from_numpy(weight.reshape(-1).astype(np.float32)).to(device)
        keep = torch.nonzero(bundle.hits_box & (w > 0)).squeeze(1)
        bundles.append(bundle.subset(keep))
        rgbs.append(colour[keep])
        alphas.append(a[keep])
        weights.append(w[keep])

    for view in views:
        camera = _smaller(view.camera, config.image_size)
        size = (camera.width, camera.height)
        add(camera, cv2.resize(view.rgb, size, interpolation=cv2.INTER_AREA),
            cv2.resize(view.alpha, size, interpolation=cv2.INTER_AREA),
            cv2.resize(view.weight, size, interpolation=cv2.INTER_NEAREST))
    renderer = MeshRenderer(guide_mesh.faces, guide_mesh.face_uvs, guide_mesh.texture)
    rest = guide_mesh.vertices(MotionFrame.neutral())
    for k in range(config.guide_views):
        yaw = -60 + 120 * (k + 0.5) / config.guide_views
        pitch = -15 + 40 * ((k * 0.618) % 1.0)
        camera = Camera.orbit(yaw, pitch, width=config.image_size, height=config.image_size)
        rgba = renderer.render(rest, camera).rgba
        alpha = rgba[..., 3].astype(np.float32) / 255
        add(camera, rgba[..., :3], alpha, np.full(alpha.shape, config.guide_weight, np.float32))
    rays = RayBundle(*(torch.cat([getattr(b, k) for b in bundles]) for k in
                       ("origins", "directions", "near", "far", "view_cos")))
    return rays, torch.cat(rgbs), torch.cat(alphas), torch.cat(weights)


def _smaller(camera: Camera, side: int) -> Camera:
    """The same camera with its image reduced so the longer side is `side` pixels (the
    vertical field of view is kept, so the focal length in pixels scales with it)."""
    scale = side / max(camera.width, camera.height)
    if scale >= 1.0:
        return camera
    return Camera(camera.c2w, camera.fov_y_deg, max(1, round(camera.width * scale)),
                  max(1, round(camera.height * scale)))
