"""Camera rays in field coordinates, clipped to the field's cube."""

from __future__ import annotations

from dataclasses import dataclass

import torch

from avatar_runtime.render.camera import Camera
from avatar_runtime.render.volume.field import FieldBox


@dataclass
class RayBundle:
    """N rays in field coordinates (one field unit = box.half_extent metres).

    origins:    [N, 3]
    directions: [N, 3] unit
    near, far:  [N] entry / exit distance through the cube (near >= far: the ray misses)
    view_cos:   [N] cosine between ray and view axis (ray distance -> view depth)
    """

    origins: torch.Tensor
    directions: torch.Tensor
    near: torch.Tensor
    far: torch.Tensor
    view_cos: torch.Tensor

    def __len__(self) -> int:
        return self.origins.shape[0]

    @property
    def hits_box(self) -> torch.Tensor:
        """[N] bool: the ray passes through the cube."""
        return self.far > self.near

    def points(self, t: torch.Tensor) -> torch.Tensor:
        """Distances t [N, S] -> points [N, S, 3]."""
        return self.origins[:, None] + self.directions[:, None] * t[..., None]

    def subset(self, index: torch.Tensor) -> "RayBundle":
        return RayBundle(self.origins[index], self.directions[index], self.near[index],
                         self.far[index], self.view_cos[index])


def intersect_cube(origins: torch.Tensor, directions: torch.Tensor, half: float = 1.0
                   ) -> tuple[torch.Tensor, torch.Tensor]:
    """Slab test against [-half, half]^3: origins, directions [N, 3] -> near, far [N].

    near is clamped at 0 (cameras inside the cube start at the eye).
    """
    inv = 1.0 / torch.where(directions.abs() < 1e-9, torch.full_like(directions, 1e-9), directions)
    t0, t1 = (-half - origins) * inv, (half - origins) * inv
    near = torch.minimum(t0, t1).amax(-1).clamp_min(0.0)
    far = torch.maximum(t0, t1).amin(-1)
    return near, far


def camera_rays(camera: Camera, box: FieldBox, device: torch.device | str = "cpu") -> RayBundle:
    """One ray per pixel centre (row-major, row 0 = top) -> RayBundle of H * W rays."""
    origins, dirs = camera.rays()
    forward = -camera.c2w[:3, 2]
    view_cos = dirs.reshape(-1, 3) @ forward
    o = torch.as_tensor(box.to_field(origins.reshape(-1, 3)), dtype=torch.float32, device=device)
    d = torch.as_tensor(dirs.reshape(-1, 3), dtype=torch.float32, device=device)
    near, far = intersect_cube(o, d)
    return RayBundle(o, d, near, far, torch.as_tensor(view_cos, dtype=torch.float32, device=device))
