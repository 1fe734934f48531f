"""Occupancy grid over the field cube: which cells can hold visible density.

Built once per field from the decoder (density at `subsamples`^3 points per cell, max over
them, thresholded, dilated), with a distance-to-occupied field that lets rays jump over
empty space.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F

from avatar_runtime.render.volume.field import TriplaneField
from avatar_runtime.render.volume.rays import RayBundle


@dataclass(frozen=True)
class OccupancyConfig:
    """Configuration of `OccupancyGrid.from_field`."""

    resolution: int = 128
    """Cells per side of the fine grid over [-1, 1]^3."""
    subsamples: int = 1
    """Density samples per cell and axis when building (max over them)."""
    alpha_threshold: float = 2e-3
    """A cell is empty when crossing it at its peak density absorbs less than this."""
    dilation: int = 1
    """Cells of safety margin added around occupied cells."""
    max_skip_cells: int = 16
    """Cap of the empty-space distance field (cells skipped in one jump)."""
    chunk: int = 1 << 18
    """Points per decoder call while building."""


class OccupancyGrid:
    """mask: [R, R, R] bool indexed (x, y, z); distance: [R, R, R] Chebyshev distance in
    cells to the nearest occupied cell (0 = occupied, capped), for skipping empty space."""

    def __init__(self, mask: torch.Tensor, max_distance: int = 16, build_samples: int = 0):
        self.mask = mask
        self.resolution = mask.shape[0]
        self.distance = chebyshev_distance(mask, max_distance)
        self.build_samples = build_samples
        """Decoder evaluations spent building the grid (amortised over frames)."""

    @classmethod
    def from_field(cls, field: TriplaneField, config: OccupancyConfig = OccupancyConfig()
                   ) -> "OccupancyGrid":
        """Evaluate `field` on a regular grid and keep cells with visible density."""
        n = config.resolution * config.subsamples
        axis = (torch.arange(n, device=field.device, dtype=torch.float32) + 0.5) / n * 2 - 1
        points = torch.stack(torch.meshgrid(axis, axis, axis, indexing="ij"), -1).reshape(-1, 3)
        with torch.no_grad():
            density = torch.cat([field.density(chunk) for chunk in points.split(config.chunk)])
        peak = F.max_pool3d(density.reshape(1, 1, n, n, n), config.subsamples)
        cell = 2.0 / config.resolution
        occupied = (1.0 - torch.exp(-peak * cell)) > config.alpha_threshold
        if config.dilation > 0:
            k = 2 * config.dilation + 1
            occupied = F.max_pool3d(occupied.float(), k, 1, config.dilation) > 0
        return cls(occupied[0, 0], config.max_skip_cells, points.shape[0])

    @property
    def cell(self) -> float:
        """Cell side in field units."""
        return 2.0 / self.resolution

    def _lookup(self, grid: torch.Tensor, points: torch.Tensor) -> torch.Tensor:
        """grid [R, R, R], points [..., 3] inside the cube -> values [...] (clamped to edge)."""
        r = self.resolution
        idx = ((points + 1.0) * (0.5 * r)).floor_().clamp_(0, r - 1)
        flat = (idx[..., 0] * r + idx[..., 1]) * r + idx[..., 2]  # exact in float32 below 2^24
        return grid.reshape(-1)[flat.long()]

    def occupied(self, points: torch.Tensor) -> torch.Tensor:
        """points [..., 3] field coordinates (inside the cube) -> [...] bool."""
        return self._lookup(self.mask, points)

    def first_hit(self, rays: RayBundle, max_iterations: int = 32) -> torch.Tensor:
        """Distance [N] at which each ray enters its first occupied cell (far: never).

        Box jumping on the Chebyshev distance: from a cell at distance k, the cube of cells
        within k - 1 of it is empty, so the ray jumps to where it leaves that cube (at
        least to the next cell). Rays still tracing after `max_iterations` stop where they
        are (conservative: the marcher then looks up the cells one step at a time).
        """
        t = torch.minimum(rays.near, rays.far).clone()
        live = torch.nonzero(rays.hits_box).squeeze(1)
        # One row per live ray (origin, direction, t, far): compaction is one gather.
        state = torch.cat([rays.origins[live], rays.directions[live], rays.near[live, None],
                           rays.far[live, None]], 1)
        inv = 1.0 / torch.where(state[:, 3:6].abs() < 1e-9, 1e-9, state[:, 3:6])
        half_r, nudge = 0.5 * self.resolution, 1e-2  # nudge: past the face, into the next cell
        for _ in range(max_iterations):
            if live.numel() == 0:
                break
            o, d, tl = state[:, 0:3], state[:, 3:6], state[:, 6]
            cell = ((o + d * tl[:, None] + 1.0) * half_r).floor_().clamp_(0, self.resolution - 1)
            k = self._at_cell(self.distance, cell)
            reach = (k - 1.0).clamp_min(0.0)[:, None]
            bound = torch.where(d > 0, cell + 1.0 + reach, cell - reach) / half_r - 1.0
            exit_t = ((bound - o) * inv).amin(1)
            state[:, 6] = torch.where(k > 0, torch.maximum(exit_t, tl) + nudge / half_r, tl)
            done = (k == 0) | (state[:, 6] >= state[:, 7])
            if bool(done.any()):
                t[live[done]] = state[done, 6]
                keep = torch.nonzero(~done).squeeze(1)
                live, state, inv = live[keep], state[keep], inv[keep]
        t[live] = state[:, 6]
        return torch.minimum(t, rays.far)

    def _at_cell(self, grid: torch.Tensor, cell: torch.Tensor) -> torch.Tensor:
        """grid [R, R, R], integer-valued cell coordinates [M, 3] (float) -> values [M]."""
        r = self.resolution
        return grid.reshape(-1)[((cell[:, 0] * r + cell[:, 1]) * r + cell[:, 2]).long()]


def chebyshev_distance(mask: torch.Tensor, cap: int) -> torch.Tensor:
    """mask [R, R, R] bool -> [R, R, R] float32 cells to the nearest True (L-inf), <= cap."""
    dist = torch.full(mask.shape, float(cap), device=mask.device)
    reached = mask[None, None].float()
    for k in range(cap):
        dist[(reached[0, 0] > 0) & (dist == cap)] = float(k)
        reached = F.max_pool3d(reached, 3, 1, 1)
    return dist
