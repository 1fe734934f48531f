"""Per-avatar triplane fit: a `TriplaneField` (planes + the EG3D decoder) optimised by
gradient descent so that its volume renders match multi-view renders of a textured head.

The targets are `MeshRenderer` renders (premultiplied RGBA) of the parametric head from
`Camera.orbit` views over the portrait yaw/pitch range; each step renders a random batch
of their rays with the reference sampler (jittered) and takes an Adam step on L1 colour +
opacity + the triplane prior. The result is a field whose density and colour came from
optimisation, not from a formula: the yardstick the `fast` sampler is checked on.

    field, report = fit_head_field(TriplaneFitConfig(steps=200), cache_dir="/tmp/fits")
"""

from __future__ import annotations

import hashlib
import json
import logging
import math
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np
import torch
from tqdm import tqdm

from avatar_runtime.head.model import HeadModel, load_head_model
from avatar_runtime.render.camera import Camera
from avatar_runtime.render.mesh_renderer import MeshRenderer
from avatar_runtime.render.volume import (
    DecoderConfig,
    FieldBox,
    ReferenceSampler,
    ReferenceSamplerConfig,
    TriplaneDecoder,
    TriplaneField,
    camera_rays,
)
from avatar_runtime.render.volume.rays import RayBundle
from avatar_runtime.train.losses import distortion, triplane_prior
from avatar_runtime.train.synthetic import SyntheticConfig, SyntheticHeads

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class TriplaneFitConfig:
    """Configuration of `fit_head_field`."""

    resolution: int = 64
    """Plane side R."""
    decoder: DecoderConfig = field(default_factory=DecoderConfig)
    """The field's decoder (EG3D's; in_channels = channels per plane)."""
    views: int = 24
    """Training cameras (yaw x pitch lattice over the ranges below)."""
    image_size: int = 64
    """Training render side (pixels)."""
    yaw_deg: tuple[float, float] = (-45.0, 45.0)
    pitch_deg: tuple[float, float] = (-14.0, 30.0)
    steps: int = 400
    rays_per_step: int = 1024
    lr_planes: float = 5e-2
    lr_decoder: float = 5e-3
    sampler: ReferenceSamplerConfig = field(default_factory=lambda: ReferenceSamplerConfig(
        n_stratified=24, n_importance=24, perturb=True))
    """Training render (jittered, fewer samples than the 48 + 48 yardstick)."""
    opacity_weight: float = 1.0
    distortion_weight: float = 0.5
    """`losses.distortion`: thin surfaces instead of fog (what a renderer can skip)."""
    prior_weight: float = 1e-4
    """Triplane L2 + total variation (`losses.triplane_prior`)."""
    seed: int = 0
    device: str = "cpu"

    def key(self) -> str:
        """Short hash of the configuration, for caching."""
        return hashlib.sha1(json.dumps(asdict(self), sort_keys=True).encode()).hexdigest()[:12]


@dataclass
class FitReport:
    """What the fit reached: final loss, PSNR (premultiplied RGBA, reference sampler, 48 +
    48) at held-out views, wall time."""

    steps: int
    final_loss: float
    heldout_psnr: float
    seconds: float
    cached: bool = False


@dataclass
class _Views:
    """All training rays (field coordinates) and their targets: premultiplied rgb [N, 3],
    alpha [N]."""

    rays: RayBundle
    rgb: torch.Tensor
    alpha: torch.Tensor


def orbit_cameras(config: TriplaneFitConfig, n: int, size: int, offset: float = 0.0) -> list[Camera]:
    """n cameras on a yaw x pitch lattice (offset in [0, 1) shifts it: held-out views)."""
    n_pitch = max(1, round(math.sqrt(n / 3)))
    n_yaw = math.ceil(n / n_pitch)
    cams = []
    for i in range(n):
        u = (i % n_yaw + 0.5 + offset) / n_yaw
        v = (i // n_yaw + 0.5 + offset) / n_pitch
        yaw = config.yaw_deg[0] + (config.yaw_deg[1] - config.yaw_deg[0]) * (u % 1.0)
        pitch = config.pitch_deg[0] + (config.pitch_deg[1] - config.pitch_deg[0]) * (v % 1.0)
        cams.append(Camera.orbit(yaw, pitch, width=size, height=size))
    return cams


def head_targets(head: HeadModel, texture: np.ndarray, cameras: list[Camera], box: FieldBox,
                 device: str) -> _Views:
    """Premultiplied RGBA renders of the neutral head, as rays + per-ray targets."""
    renderer = MeshRenderer(head.faces, head.face_uvs, texture)
    rays, rgb, alpha = [], [], []
    for cam, out in zip(cameras, renderer.render_batch([head.template] * len(cameras), cameras)):
        rgba = torch.from_numpy(out.rgba.astype(np.float32) / 255).reshape(-1, 4).to(device)
        rays.append(camera_rays(cam, box, device))
        rgb.append(rgba[:, :3] * rgba[:, 3:])
        alpha.append(rgba[:, 3])
    bundle = RayBundle(*(torch.cat([getattr(r, k) for r in rays]) for k in
                         ("origins", "directions", "near", "far", "view_cos")))
    inside = torch.nonzero(bundle.hits_box).squeeze(1)  # rays missing the cube see nothing
    return _Views(bundle.subset(inside), torch.cat(rgb)[inside], torch.cat(alpha)[inside])


def fit_head_field(config: TriplaneFitConfig = TriplaneFitConfig(), head: HeadModel | None = None,
                   cache_dir: Path | str | None = None, progress: bool = True
                   ) -> tuple[TriplaneField, FitReport]:
    """Fit a field to the textured neutral head (see the module docstring). With
    `cache_dir`, a previous fit of the same configuration is loaded instead."""
    cache = Path(cache_dir) / f"head_field_{config.key()}.pt" if cache_dir else None
    if cache is not None and cache.is_file():
        saved = torch.load(cache, map_location=config.device, weights_only=False)
        decoder = TriplaneDecoder(config.decoder).to(config.device)
        decoder.load_state_dict(saved["decoder"])
        log.info("head field loaded from %s", cache)
        return (TriplaneField(saved["planes"], decoder.requires_grad_(False)),
                FitReport(**{**saved["report"], "cached": True}))
    field_, report = _fit(config, head or load_head_model(), progress)
    if cache is not None:
        cache.parent.mkdir(parents=True, exist_ok=True)
        torch.save({"planes": field_.planes, "decoder": field_.decoder.state_dict(),
                    "report": asdict(report)}, cache)
    return field_, report


def _fit(config: TriplaneFitConfig, head: HeadModel, progress: bool
         ) -> tuple[TriplaneField, FitReport]:
    t0 = time.perf_counter()
    torch.manual_seed(config.seed)
    rng = np.random.default_rng(config.seed)
    texture = SyntheticHeads(SyntheticConfig(), head).subject(rng).texture
    box = FieldBox()
    views = head_targets(head, texture, orbit_cameras(config, config.views, config.image_size),
                         box, config.device)
    c, r = config.decoder.in_channels, config.resolution
    planes = torch.nn.Parameter(torch.randn(3, c, r, r, device=config.device) * 0.1)
    decoder = TriplaneDecoder(config.decoder).to(config.device)
    field_ = TriplaneField(planes, decoder, box)
    optimizer = torch.optim.Adam([{"params": [planes], "lr": config.lr_planes},
                                  {"params": decoder.parameters(), "lr": config.lr_decoder}])
    # Cosine decay to 10%: large early steps place the surface, small late ones refine it.
    schedule = torch.optim.lr_scheduler.LambdaLR(
        optimizer, lambda s: 0.1 + 0.45 * (1 + math.cos(math.pi * s / config.steps)))
    sampler = ReferenceSampler(config.sampler)
    gen = torch.Generator(device="cpu").manual_seed(config.seed)
    loss = torch.zeros(())
    with tqdm(range(config.steps), desc="triplane fit", disable=not progress) as bar:
        for step in bar:
            pick = torch.randint(len(views.rays), (config.rays_per_step,), generator=gen)
            out, t, weights = sampler.render_rays(field_, views.rays.subset(pick.to(config.device)))
            loss = ((out.features[:, :3] - views.rgb[pick]).abs().mean()
                    + config.opacity_weight * (out.opacity - views.alpha[pick]).abs().mean()
                    + config.distortion_weight * distortion(weights, t)
                    + config.prior_weight * triplane_prior(planes[None]))
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            schedule.step()
            if step % 25 == 0:
                bar.set_postfix(loss=f"{float(loss.detach()):.4f}")
    planes.requires_grad_(False)
    decoder.requires_grad_(False)
    fitted = TriplaneField(planes.data, decoder, box)
    psnr = heldout_psnr(fitted, head, texture, config)
    report = FitReport(config.steps, float(loss.detach()), psnr, time.perf_counter() - t0)
    log.info("head field: %d steps in %.1f s, loss %.4f, held-out PSNR %.2f dB",
             report.steps, report.seconds, report.final_loss, report.heldout_psnr)
    return fitted, report


@torch.no_grad()
def heldout_psnr(field_: TriplaneField, head: HeadModel, texture: np.ndarray,
                 config: TriplaneFitConfig, n: int = 4) -> float:
    """Mean PSNR (dB) of reference renders vs the mesh at views between the training ones."""
    cams = orbit_cameras(config, n, config.image_size, offset=0.37)
    views = head_targets(head, texture, cams, field_.box, config.device)
    out = ReferenceSampler()(field_, views.rays)
    pred = torch.cat([out.features[:, :3], out.opacity[:, None]], 1).reshape(n, -1)
    target = torch.cat([views.rgb, views.alpha[:, None]], 1).reshape(n, -1)
    mse = ((pred.clamp(0, 1) - target) ** 2).mean(1)
    return float((-10 * torch.log10(mse)).mean())
