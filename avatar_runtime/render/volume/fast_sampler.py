"""`fast` sampler: occupancy-grid empty-space skipping, early ray termination and, when a
proxy surface (the deformed head mesh) is known, sampling only in a band around it.

Each ray is marched in equal steps `step`. An iteration looks `window` steps ahead, keeps
the first `samples_per_iter` steps that fall in occupied cells (empty cells cost a grid
lookup, never a decoder call), decodes and composites them, and retires rays whose
transmittance fell below `transmittance_eps` or that left their interval.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from avatar_runtime.render.volume.compositing import RayOutputs, composite_uniform
from avatar_runtime.render.volume.field import TriplaneField
from avatar_runtime.render.volume.occupancy import OccupancyGrid
from avatar_runtime.render.volume.rays import RayBundle


@dataclass(frozen=True)
class FastSamplerConfig:
    """Configuration of `FastSampler`."""

    step: float = 2.0 / 256
    """March step in field units (the cube side is 2)."""
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
        out = RayOutputs.empty(len(rays), field.feature_dim, rays.near)
        index = torch.nonzero(end > start).squeeze(1)
        if index.numel():
            out.scatter(index, self._march(field, rays.subset(index), start[index], end[index]))
        return out

    def intervals(self, rays: RayBundle, surface_t: torch.Tensor | None, unit_m: float
                  ) -> tuple[torch.Tensor, torch.Tensor]:
        """Per-ray [start, end) to march, field units: cube, occupied span, surface band."""
        end = torch.where(rays.hits_box, rays.far, rays.near)  # misses: empty interval
        start = rays.near if self.grid is None else self.grid.first_hit(rays)
        start = torch.where(rays.hits_box, start, end)
        if surface_t is None:
            return start, end
        hit = torch.isfinite(surface_t[:, 0])
        band_start = torch.maximum(start, surface_t[:, 0] - self.config.band_front_m / unit_m)
        band_end = torch.minimum(end, surface_t[:, 1] + self.config.band_back_m / unit_m)
        keep_misses = self.config.march_surface_misses and self.grid is not None
        miss_end = end if keep_misses else start
        return torch.where(hit, band_start, start), torch.where(hit, band_end, miss_end)

    def _march(self, field: TriplaneField, rays: RayBundle, start: torch.Tensor,
               end: torch.Tensor) -> RayOutputs:
        """March rays [A] from start to end [A]; see the module docstring."""
        cfg = self.config
        out = RayOutputs.empty(len(rays), field.feature_dim, start)
        state = _MarchState(rays, start.clone(), end, field.feature_dim)
        for _ in range(cfg.max_iterations):
            if state.index.numel() == 0:
                break
            ts, valid, advance = self._pick(state)
            density, feats = _decode(field, state.rays, ts, valid)
            part, state.trans = composite_uniform(ts, density, feats, cfg.step, state.trans)
            state.acc.features += part.features
            state.acc.opacity += part.opacity
            state.acc.depth += part.depth
            state.t = state.t + advance
            state.keep((state.trans > cfg.transmittance_eps) & (state.t < state.end), out)
        state.keep(torch.zeros_like(state.t, dtype=torch.bool), out)
        return out

    def _pick(self, state: "_MarchState") -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """Choose the next occupied steps of each live ray.

        Returns distances [A, K], which of them to decode [A, K] bool, and how far each
        ray advances [A] (past its K-th pick, or the whole window).
        """
        cfg, k = self.config, self.config.samples_per_iter
        steps = torch.arange(cfg.window, device=state.t.device)
        ts = state.t[:, None] + (steps + 0.5) * cfg.step                    # [A, W]
        ok = ts < state.end[:, None]
        if self.grid is not None:
            ok &= self.grid.occupied(state.rays.points(ts))
        pos = torch.where(ok, steps, cfg.window).sort(1).values[:, :k]      # [A, K]
        valid = pos < cfg.window
        advance = torch.where(valid[:, -1], pos[:, -1] + 1, cfg.window)
        return state.t[:, None] + (pos + 0.5) * cfg.step, valid, advance * cfg.step


class _MarchState:
    """The live rays of a march: their bundle, position t, end, transmittance and
    accumulated outputs [A], and their index [A] into the full bundle."""

    def __init__(self, rays: RayBundle, t: torch.Tensor, end: torch.Tensor, n_features: int):
        self.rays, self.t, self.end = rays, t, end
        self.trans = torch.ones_like(t)
        self.acc = RayOutputs.empty(len(rays), n_features, t)
        self.index = torch.arange(len(rays), device=t.device)

    def keep(self, mask: torch.Tensor, out: RayOutputs) -> None:
        """Write the rays leaving (~mask) into `out`; keep the others."""
        if bool(mask.all()):
            return
        gone = ~mask
        out.scatter(self.index[gone], RayOutputs(self.acc.features[gone], self.acc.opacity[gone],
                                                 self.acc.depth[gone]))
        self.rays = self.rays.subset(mask)
        self.acc = RayOutputs(self.acc.features[mask], self.acc.opacity[mask], self.acc.depth[mask])
        self.t, self.end, self.trans, self.index = (
            self.t[mask], self.end[mask], self.trans[mask], self.index[mask])


def _decode(field: TriplaneField, rays: RayBundle, ts: torch.Tensor, valid: torch.Tensor
            ) -> tuple[torch.Tensor, torch.Tensor]:
    """Decode only the valid samples; others get density 0 -> [A, K], [A, K, F]."""
    density = ts.new_zeros(ts.shape)
    feats = ts.new_zeros(*ts.shape, field.feature_dim)
    d, f = field.query(rays.points(ts)[valid])
    density[valid], feats[valid] = d, f
    return density, feats
