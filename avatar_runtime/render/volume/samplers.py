"""Ray samplers: `reference` (EG3D's 48 stratified + 48 importance) and `fast`.

A sampler is a callable `(field, rays, surface_t=None) -> RayOutputs`: it places samples,
asks the field, and integrates. `surface_t` [N, 2] is the nearest and farthest distance (field
units) at which each ray's pixel neighbourhood meets a proxy surface (+inf: no hit); only
`fast` uses it.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F

from avatar_runtime.render.volume.compositing import RayOutputs, composite_midpoint
from avatar_runtime.render.volume.field import TriplaneField
from avatar_runtime.render.volume.rays import RayBundle


@dataclass(frozen=True)
class ReferenceSamplerConfig:
    """Configuration of `ReferenceSampler` (EG3D's defaults)."""

    n_stratified: int = 48
    """Coarse samples per ray, evenly spaced between cube entry and exit."""
    n_importance: int = 48
    """Fine samples per ray drawn from the coarse weights."""
    perturb: bool = False
    """Jitter samples (training); False gives the deterministic yardstick."""
    chunk_rays: int = 4096
    """Rays per batch (memory bound)."""


class ReferenceSampler:
    """EG3D: stratified samples, importance resampling from smoothed weights, merge, march."""

    def __init__(self, config: ReferenceSamplerConfig = ReferenceSamplerConfig()):
        self.config = config

    def __call__(self, field: TriplaneField, rays: RayBundle,
                 surface_t: torch.Tensor | None = None) -> RayOutputs:
        out = RayOutputs.empty(len(rays), field.feature_dim, rays.near)
        index = torch.nonzero(rays.hits_box).squeeze(1)
        for part in index.split(self.config.chunk_rays):
            out.scatter(part, self._render(field, rays.subset(part)))
        return out

    def _render(self, field: TriplaneField, rays: RayBundle) -> RayOutputs:
        return self.render_rays(field, rays)[0]

    def render_rays(self, field: TriplaneField, rays: RayBundle
                    ) -> tuple[RayOutputs, torch.Tensor, torch.Tensor]:
        """Rays that all cross the cube, unchunked -> (outputs, interval midpoints [N, S - 1],
        their weights [N, S - 1]); training losses on the weight distribution use the last two."""
        cfg = self.config
        t_coarse = self._stratified(rays, cfg.n_stratified)
        density, feats = _query(field, rays, t_coarse)
        _, weights = composite_midpoint(t_coarse, density, feats)
        t_fine = self._importance(t_coarse, weights, cfg.n_importance)
        density_f, feats_f = _query(field, rays, t_fine)
        t_all, order = torch.cat([t_coarse, t_fine], 1).sort(1)
        density = torch.cat([density, density_f], 1).gather(1, order)
        feats = torch.cat([feats, feats_f], 1).gather(1, order[..., None].expand(-1, -1, feats.shape[-1]))
        out, weights = composite_midpoint(t_all, density, feats)
        return out, 0.5 * (t_all[:, 1:] + t_all[:, :-1]), weights

    def _stratified(self, rays: RayBundle, n: int) -> torch.Tensor:
        """[N, n] from near to far; jittered by up to one spacing when perturbing."""
        u = torch.linspace(0.0, 1.0, n, device=rays.near.device)
        t = rays.near[:, None] + (rays.far - rays.near)[:, None] * u
        if self.config.perturb:
            t = t + torch.rand_like(t) * ((rays.far - rays.near) / (n - 1))[:, None]
        return t

    def _importance(self, t: torch.Tensor, weights: torch.Tensor, n: int) -> torch.Tensor:
        """EG3D's sample_importance: max- then average-pooled weights + 0.01 as a pdf over
        the coarse midpoints. t [N, S], weights [N, S - 1] -> [N, n] (detached)."""
        w = F.max_pool1d(weights[:, None], 2, 1, padding=1)
        w = F.avg_pool1d(w, 2, 1)[:, 0] + 0.01
        mids = 0.5 * (t[:, 1:] + t[:, :-1])
        return sample_pdf(mids, w[:, 1:-1], n, deterministic=not self.config.perturb).detach()


def sample_pdf(bins: torch.Tensor, weights: torch.Tensor, n: int, deterministic: bool = True
               ) -> torch.Tensor:
    """Inverse-CDF sampling of a piecewise-constant pdf.

    bins [N, B + 1] edges, weights [N, B] -> samples [N, n].
    """
    pdf = weights / weights.sum(-1, keepdim=True)
    cdf = F.pad(torch.cumsum(pdf, -1), (1, 0))
    if deterministic:
        u = torch.linspace(0.0, 1.0, n, device=bins.device).expand(bins.shape[0], n).contiguous()
    else:
        u = torch.rand(bins.shape[0], n, device=bins.device)
    idx = torch.searchsorted(cdf.contiguous(), u, right=True)
    lo, hi = (idx - 1).clamp(0, cdf.shape[1] - 1), idx.clamp(0, cdf.shape[1] - 1)
    cdf_lo, cdf_hi = cdf.gather(1, lo), cdf.gather(1, hi)
    bin_lo, bin_hi = bins.gather(1, lo), bins.gather(1, hi)
    denom = torch.where(cdf_hi - cdf_lo < 1e-5, torch.ones_like(cdf_lo), cdf_hi - cdf_lo)
    return bin_lo + (u - cdf_lo) / denom * (bin_hi - bin_lo)


def _query(field: TriplaneField, rays: RayBundle, t: torch.Tensor
           ) -> tuple[torch.Tensor, torch.Tensor]:
    """Decode at distances t [N, S] -> density [N, S], features [N, S, F]."""
    density, feats = field.query(rays.points(t).reshape(-1, 3))
    return density.reshape(t.shape), feats.reshape(*t.shape, feats.shape[-1])
