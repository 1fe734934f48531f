"""Known, deterministic fields for comparing samplers and for benchmarks (no weights).

`hull_field`: a closed-form triplane field, the visual hull of a mesh's three orthographic
silhouettes. Plane k holds, in its own channel k, the signed distance (field units,
positive outside) to the mesh's silhouette seen along the missing axis, and in channels
3..5 colour logits. The decoder weights are set by hand so that

    density = softplus(A * (edge - sum_k max(d_k, 0)))      (EG3D's softplus activation)

ramps from 0 at the hull to `A * edge` a distance `edge` inside, and RGB = sigmoid(sum of
the colour logits) -- exactly representable by `TriplaneDecoder`.

`MeshShellField`: an analytic (not triplane) field, a shell of density around a mesh's
surface with the same colour model, for testing proxy-surface band sampling: its
surface is exactly the mesh the band is built from.
"""

from __future__ import annotations

from dataclasses import dataclass

import cv2
import numpy as np
import open3d as o3d
import torch

from avatar_runtime.render.volume.field import (PLANE_AXES, DecoderConfig, FieldBox,
                                                TriplaneDecoder, TriplaneField)


@dataclass(frozen=True)
class HullFieldConfig:
    """Configuration of `hull_field`."""

    resolution: int = 128
    """Plane side R."""
    channels: int = 32
    """Channels per plane (>= 6)."""
    edge: float = 0.02
    """Depth (field units) over which density ramps up inside the hull."""
    peak_density: float = 200.0
    """Density (per field unit) deeper than `edge` inside."""
    sharpness: float = 400.0
    """Softplus scale that turns d into max(d, 0)."""


def hull_field(vertices: np.ndarray, faces: np.ndarray, box: FieldBox = FieldBox(),
               config: HullFieldConfig = HullFieldConfig()) -> TriplaneField:
    """Visual-hull field of a mesh: vertices [V, 3] (world m), faces [F, 3]."""
    pts = box.to_field(np.asarray(vertices, np.float64))
    planes = np.zeros((3, config.channels, config.resolution, config.resolution), np.float32)
    for k, axes in enumerate(PLANE_AXES):
        planes[k, k] = _silhouette_distance(pts[:, list(axes)], faces, config.resolution)
        planes[k, 3:6] = _colour_logits(axes, config.resolution)
    return TriplaneField(torch.from_numpy(planes), _hull_decoder(config), box)


def _silhouette_distance(uv: np.ndarray, faces: np.ndarray, r: int) -> np.ndarray:
    """Signed distance [R, R] (field units, + outside) to the filled projection uv [V, 2].

    Row index = second coordinate, column = first, as grid_sample reads planes.
    """
    px = np.round((uv + 1.0) * 0.5 * r * 16 - 8).astype(np.int32)  # 4 fractional bits
    mask = np.zeros((r, r), np.uint8)
    cv2.fillPoly(mask, list(px[faces]), 1, lineType=cv2.LINE_8, shift=4)
    outside = cv2.distanceTransform(1 - mask, cv2.DIST_L2, 5)
    inside = cv2.distanceTransform(mask, cv2.DIST_L2, 5)
    return ((outside - inside + 0.5 * (mask * 2.0 - 1.0) * (outside + inside == 0)) * 2.0 / r
            ).astype(np.float32)


def _colour_logits(axes: tuple[int, int], r: int) -> np.ndarray:
    """[3, R, R] smooth skin pattern; 'hair' (dark) toward +y and -z."""
    c = (np.arange(r) + 0.5) / r * 2 - 1
    v, u = np.meshgrid(c, c, indexing="ij")  # u: first axis, v: second (rows)
    coord = {axes[0]: u, axes[1]: v}
    skin = np.array([1.4, 0.5, 0.0])[:, None, None] / 3
    out = skin + 0.12 * np.sin(7 * u + 2 * _phase(axes))[None] * np.cos(5 * v)[None]
    if 1 in coord:  # darker above the brow line
        out = out - 0.9 / (1 + np.exp(-(coord[1] - 0.45) / 0.05))[None]
    if 2 in coord:  # and at the back
        out = out - 0.6 / (1 + np.exp((coord[2] + 0.2) / 0.08))[None]
    return out.astype(np.float32)


def _phase(axes: tuple[int, int]) -> float:
    return float(PLANE_AXES.index(axes))


class MeshShellField:
    """Density `peak` per field unit within `shell` (field units) of a mesh, soft edge
    `edge`; RGB from the hull colour model; same query interface as `TriplaneField`."""

    feature_dim = 3

    def __init__(self, vertices: np.ndarray, faces: np.ndarray, box: FieldBox = FieldBox(),
                 shell: float = 0.02, edge: float = 0.005, peak: float = 200.0):
        self.box, self.shell, self.edge, self.peak = box, shell, edge, peak
        self.scene = o3d.t.geometry.RaycastingScene()
        self.scene.add_triangles(o3d.core.Tensor(box.to_field(vertices).astype(np.float32)),
                                 o3d.core.Tensor(np.asarray(faces, np.uint32)))
        self.n_evaluations = 0
        self.device = torch.device("cpu")

    def reset_count(self) -> None:
        self.n_evaluations = 0

    def query(self, points: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """points [N, 3] -> density [N], rgb [N, 3]."""
        self.n_evaluations += points.shape[0]
        p = points.detach().cpu().numpy().astype(np.float32)
        dist = torch.from_numpy(self.scene.compute_distance(o3d.core.Tensor(p)).numpy())
        density = self.peak * torch.sigmoid((self.shell - dist) / self.edge)
        logits = sum(_colour_at(points, axes, k) for k, axes in enumerate(PLANE_AXES))
        return density, torch.sigmoid(logits)

    def density(self, points: torch.Tensor) -> torch.Tensor:
        return self.query(points)[0]


def _colour_at(points: torch.Tensor, axes: tuple[int, int], k: int) -> torch.Tensor:
    """The hull planes' colour logits [N, 3] evaluated in closed form at points [N, 3]."""
    u, v = points[:, axes[0]], points[:, axes[1]]
    skin = torch.tensor([1.4, 0.5, 0.0]) / 3
    out = skin + 0.12 * (torch.sin(7 * u + 2 * k) * torch.cos(5 * v))[:, None]
    coord = {axes[0]: u, axes[1]: v}
    if 1 in coord:
        out = out - 0.9 * torch.sigmoid((coord[1] - 0.45) / 0.05)[:, None]
    if 2 in coord:
        out = out - 0.6 * torch.sigmoid(-(coord[2] + 0.2) / 0.08)[:, None]
    return out


def _hull_decoder(config: HullFieldConfig) -> TriplaneDecoder:
    """Hand-set weights: hidden 0..2 = softplus(s d_k); hidden 3..5 = softplus(logit + 15)."""
    dec = TriplaneDecoder(DecoderConfig(in_channels=config.channels, hidden=64,
                                        out_features=config.channels))
    first, second = dec.net[0], dec.net[2]
    slope = config.peak_density / config.edge
    with torch.no_grad():
        for p in (first.weight, first.bias, second.weight, second.bias):
            p.zero_()
        for k in range(3):
            first.weight[k, k] = config.sharpness
            second.weight[0, k] = -slope / config.sharpness
            first.weight[3 + k, 3 + k] = 1.0
            first.bias[3 + k] = 15.0
            second.weight[1 + k, 3 + k] = 1.0
            second.bias[1 + k] = -15.0
        second.bias[0] = config.peak_density + 1.0  # + 1 cancels EG3D's softplus(x - 1)
    return dec.requires_grad_(False)
