"""`fast` sampler: occupancy-grid empty-space skipping, early ray termination and, when a
proxy surface (the deformed head mesh) is known, sampling only in a band around it.

Each ray is marched in equal steps (3/4 of a plane texel by default: bilinear planes vary
no faster than a texel). An iteration looks `window` steps ahead, keeps the first
`samples_per_iter` steps that fall in occupied cells (empty cells cost a grid lookup, never
a decoder call), decodes the picks of all live rays in one call, composites them, and
retires rays whose transmittance fell below `transmittance_eps` or that left their interval.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from avatar_runtime.render.volume.compositing import RayOutputs
from avatar_runtime.render.volume.field import TriplaneField
from avatar_runtime.render.volume.occupancy import OccupancyGrid
from avatar_runtime.render.volume.rays import RayBundle


@dataclass(frozen=True)
class FastSamplerConfig:
    """Configuration of `FastSampler`."""

    step: float | None = None
    """March step in field units (the cube side is 2); None: `step_texels` plane texels."""
    step_texels: float = 0.75
    """Default step in texels of the field's planes (2 / 256 for fields without planes);
    bilinear planes vary no faster than a texel."""
    window: int = 16
    """Steps looked at per iteration (occupancy lookups only)."""
    samples_per_iter: int = 4
    """Occupied steps decoded per ray and iteration."""
    transmittance_eps: float = 1e-2
    """Rays stop once less than this much light gets through."""
    band_front_m: float = 0.01
    """With a proxy surface: start this far (metres) in front of the hit."""
    band_back_m: float = 0.01
    """With a proxy surface: stop this far (metres) behind the hit."""
    march_surface_misses: bool = True
    """Rays that miss the proxy surface still march the occupancy grid (hair, shoulders);
    without a grid they are left empty."""
    straggler_rays: int = 1024
    """Below this many live rays, an iteration decodes `straggler_samples_per_iter` within
    `straggler_window` steps: a few extra samples, far fewer iterations."""
    straggler_samples_per_iter: int = 8
    straggler_window: int = 32
    first_hit_iterations: int = 16
    """Box jumps to the first occupied cell; rays still jumping march from there."""
    max_iterations: int = 256
    """Safety bound on marching iterations."""


class FastSampler:
    """Callable `(field, rays, surface_t=None) -> RayOutputs`; `grid` may be None (no
    skipping: every step of the interval is decoded)."""

    def __init__(self, config: FastSamplerConfig = FastSamplerConfig(),
                 grid: OccupancyGrid | None = None):
        self.config = config
        self.grid = grid

    def __call__(self, field: TriplaneField, rays: RayBundle,
                 surface_t: torch.Tensor | None = None) -> RayOutputs:
        start, end = self.intervals(rays, surface_t, field.box.half_extent)
        acc = rays.near.new_zeros(len(rays), field.feature_dim + 2)  # features, opacity, depth
        index = torch.nonzero(end > start).squeeze(1)
        if index.numel():
            self._march(field, rays, index, start[index], end[index], acc)
        return RayOutputs(acc[:, :-2], acc[:, -2], acc[:, -1])

    def step(self, field: TriplaneField) -> float:
        """March step (field units) for `field`."""
        if self.config.step is not None:
            return self.config.step
        texel = getattr(field, "texel", None)
        return 2.0 / 256 if texel is None else self.config.step_texels * texel

    def intervals(self, rays: RayBundle, surface_t: torch.Tensor | None, unit_m: float
                  ) -> tuple[torch.Tensor, torch.Tensor]:
        """Per-ray [start, end) to march, field units: cube, occupied span, surface band."""
        end = torch.where(rays.hits_box, rays.far, rays.near)  # misses: empty interval
        start = rays.near if self.grid is None else self.grid.first_hit(
            rays, self.config.first_hit_iterations)
        start = torch.where(rays.hits_box, start, end)
        if surface_t is None:
            return start, end
        hit = torch.isfinite(surface_t[:, 0])
        band_start = torch.maximum(start, surface_t[:, 0] - self.config.band_front_m / unit_m)
        band_end = torch.minimum(end, surface_t[:, 1] + self.config.band_back_m / unit_m)
        keep_misses = self.config.march_surface_misses and self.grid is not None
        miss_end = end if keep_misses else start
        return torch.where(hit, band_start, start), torch.where(hit, band_end, miss_end)

    def _march(self, field: TriplaneField, rays: RayBundle, index: torch.Tensor,
               start: torch.Tensor, end: torch.Tensor, acc: torch.Tensor) -> None:
        """March rays[index] from start to end [A], adding weighted (features, 1, t) into
        acc [N, F + 2]; see the module docstring."""
        cfg, step = self.config, self.step(field)
        # One row per live ray (origin 3, direction 3, t, end, transmittance): retiring
        # rays is one gather, and finished rays need no write-back (acc is global).
        state = torch.cat([rays.origins[index], rays.directions[index], start[:, None],
                           end[:, None], torch.ones_like(start)[:, None]], 1)
        for _ in range(cfg.max_iterations):
            if index.numel() == 0:
                break
            k, window = self._budget(index.numel())
            ray, slot, ts, points, advance = self._pick(state, step, k, window)
            density, feats = field.query(points)
            weight, state[:, 8] = _weights(density * step, ray, slot, state[:, 8], k)
            acc.index_add_(0, index[ray], torch.cat([feats, torch.ones_like(ts)[:, None],
                                                     ts[:, None]], 1).mul_(weight[:, None]))
            state[:, 6] += advance
            alive = (state[:, 8] > cfg.transmittance_eps) & (state[:, 6] < state[:, 7])
            if not bool(alive.all()):
                keep = torch.nonzero(alive).squeeze(1)
                state, index = state[keep], index[keep]

    def _budget(self, n_rays: int) -> tuple[int, int]:
        """(samples per ray, window) of this iteration: more of both once few rays are
        left, so that the stragglers take fewer (cheap) iterations."""
        cfg = self.config
        if n_rays > cfg.straggler_rays:
            return cfg.samples_per_iter, cfg.window
        return cfg.straggler_samples_per_iter, cfg.straggler_window

    def _pick(self, state: torch.Tensor, step: float, k: int, window: int
              ) -> tuple[torch.Tensor, ...]:
        """The next (up to) k occupied steps of each live ray within `window` steps.

        Returns the picks' rays [M] and slots (0..k-1, their order along the ray) [M],
        distances [M] and points [M, 3], and how far each ray advances [A] (past its k-th
        pick, or the whole window).
        """
        offsets = (torch.arange(window, device=state.device) + 0.5) * step
        ts = state[:, 6:7] + offsets                                         # [A, W]
        points = state[:, None, 0:3] + state[:, None, 3:6] * ts[..., None]   # [A, W, 3]
        ok = ts < state[:, 7:8]
        if self.grid is not None:
            ok &= self.grid.occupied(points)
        rank = ok.cumsum(1)
        pick = ok & (rank <= k)
        advance = ((rank < k).sum(1) + 1).clamp_(max=window) * step
        ray, col = torch.nonzero(pick, as_tuple=True)
        return ray, rank[ray, col] - 1, ts[ray, col], points[ray, col], advance


def _weights(tau: torch.Tensor, ray: torch.Tensor, slot: torch.Tensor, trans: torch.Tensor,
             k: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Emission-absorption weights of picked samples (optical depths tau [M], rays [M],
    slots [M]) -> weights [M] and each ray's transmittance after them [A]."""
    keep = torch.ones(trans.numel(), k + 1, device=tau.device)  # column 0: light coming in
    keep[:, 0] = trans
    light = torch.exp(-tau)
    keep[ray, slot + 1] = light
    through = keep.cumprod(1)                                            # [A, K + 1]
    return through[ray, slot] * (1.0 - light), through[:, -1]
