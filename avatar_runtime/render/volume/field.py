"""Triplane radiance field: three axis-aligned feature planes + a small MLP decoder.

Points live in *field coordinates*: the cube [-1, 1]^3 that `FieldBox` maps onto the
world (metres). A point's feature is the sum of bilinear lookups (`grid_sample`) in the
xy, xz and yz planes; the decoder (EG3D's OSG decoder) turns it into a density per field
unit and a feature vector whose first three channels are RGB in [0, 1].

Without autograd the lookups go through `PlaneTable` instead of `grid_sample`: the same
bilinear sum as one `embedding_bag` over channels-last rows (two to three times faster on
the CPU, where `grid_sample` reads channels with a stride of R^2 floats).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

# Plane k is indexed by these two point axes (x right, y up, z toward the viewer).
PLANE_AXES = ((0, 1), (0, 2), (1, 2))
RGB_PAD = 0.001  # EG3D: sigmoid * (1 + 2 pad) - pad lets the MLP reach 0 and 1 exactly


@dataclass(frozen=True)
class FieldBox:
    """Where the field's cube [-1, 1]^3 sits in the world: centre [3] and half side (m)."""

    center: tuple[float, float, float] = (0.0, -0.02, 0.005)
    """Cube centre in world metres (default: the head model's bounding-box centre)."""
    half_extent: float = 0.16
    """Half the cube side in metres; also the length of one field unit."""

    def to_field(self, points: np.ndarray) -> np.ndarray:
        """World points [..., 3] (m) -> field coordinates [..., 3]."""
        return (np.asarray(points) - np.asarray(self.center)) / self.half_extent


@dataclass(frozen=True)
class DecoderConfig:
    """Configuration of `TriplaneDecoder`."""

    in_channels: int = 32
    """Channels per plane (the summed triplane feature)."""
    hidden: int = 64
    """Width of the single hidden layer."""
    out_features: int = 32
    """Feature vector size; channels 0..2 are RGB."""
    density_bias: float = -1.0
    """Added to the raw density before softplus (EG3D: softplus(x - 1))."""


class TriplaneDecoder(nn.Module):
    """features [N, C_in] -> (density [N] >= 0 per field unit, features [N, C_out])."""

    def __init__(self, config: DecoderConfig = DecoderConfig()):
        super().__init__()
        self.config = config
        self.net = nn.Sequential(nn.Linear(config.in_channels, config.hidden), nn.Softplus(),
                                 nn.Linear(config.hidden, 1 + config.out_features))

    def forward(self, features: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        raw = self.net(features)
        density = F.softplus(raw[:, 0] + self.config.density_bias)
        out = torch.sigmoid(raw[:, 1:]) * (1 + 2 * RGB_PAD) - RGB_PAD
        return density, out


def sample_planes(planes: torch.Tensor, points: torch.Tensor) -> torch.Tensor:
    """Summed bilinear plane lookups.

    planes: [3, C, R, R] (xy, xz, yz; plane row axis = second point axis).
    points: [N, 3] field coordinates; outside [-1, 1] reads zeros.
    Returns [N, C].
    """
    coords = torch.stack([points[:, list(axes)] for axes in PLANE_AXES])  # [3, N, 2]
    feats = F.grid_sample(planes, coords.unsqueeze(1), mode="bilinear",
                          padding_mode="zeros", align_corners=False)       # [3, C, 1, N]
    return feats.sum(0)[:, 0].transpose(0, 1)


class PlaneTable:
    """planes [3, C, R, R] as channels-last rows [3 * (R + 2)^2, C] with a one-texel zero
    border (grid_sample's zero padding), for `lookup`. Build once per set of planes."""

    def __init__(self, planes: torch.Tensor):
        c, r = planes.shape[1], planes.shape[-1]
        self.resolution, self.side = r, r + 2
        self.rows = F.pad(planes.detach(), (1, 1, 1, 1)).permute(0, 2, 3, 1).reshape(-1, c).contiguous()
        s = self.side
        to_row = torch.zeros(6, 3, device=planes.device)  # texel (u, v) of plane k -> row
        for k in range(3):
            to_row[2 * k, k], to_row[2 * k + 1, k] = 1.0, float(s)
        self._to_row = to_row
        self._plane_start = torch.arange(3, device=planes.device, dtype=torch.float32) * s * s
        self._corners = torch.tensor([0.0, 1.0, s, s + 1.0], device=planes.device)
        self._columns = torch.tensor([a for axes in PLANE_AXES for a in axes], device=planes.device)

    def lookup(self, points: torch.Tensor) -> torch.Tensor:
        """`sample_planes` for points [N, 3] (no gradient) -> [N, C]."""
        r, n = self.resolution, points.shape[0]
        # Texel coordinates of the three planes, shifted by the border; clamping outside
        # the cube lands on the zero border, as grid_sample's padding reads zeros.
        uv = (points[:, self._columns] * (0.5 * r) + (0.5 * r + 0.5)).clamp_(0.0, r + 1.0)
        corner = uv.floor().clamp_(max=r)
        frac = uv - corner                                                   # [N, 6]
        row = torch.addmm(self._plane_start, corner, self._to_row)          # [N, 3], exact
        index = (row[:, :, None] + self._corners).long().reshape(n, 12)
        fu, fv = frac[:, 0::2], frac[:, 1::2]
        wu = torch.stack([1.0 - fu, fu], -1)
        wv = torch.stack([1.0 - fv, fv], -1)
        weights = (wv[..., :, None] * wu[..., None, :]).reshape(n, 12)
        return F.embedding_bag(index, self.rows, per_sample_weights=weights, mode="sum")


class TriplaneField:
    """One radiance field: planes [3, C, R, R] + a decoder, queried in field coordinates.

    `n_evaluations` counts decoder evaluations (samples) since the last `reset_count()`,
    the figure the samplers are compared on.

        >>> field = TriplaneField(torch.zeros(3, 32, 64, 64), TriplaneDecoder())
        >>> density, feats = field.query(torch.zeros(5, 3))
        >>> density.shape, feats.shape
        (torch.Size([5]), torch.Size([5, 32]))
    """

    def __init__(self, planes: torch.Tensor, decoder: TriplaneDecoder, box: FieldBox = FieldBox()):
        if planes.ndim != 4 or planes.shape[0] != 3 or planes.shape[-1] != planes.shape[-2]:
            raise ValueError(f"planes must have shape [3, C, R, R], got {tuple(planes.shape)}")
        self.planes, self.decoder, self.box = planes, decoder, box
        self.n_evaluations = 0
        self._table: tuple[int, PlaneTable] | None = None

    @property
    def device(self) -> torch.device:
        return self.planes.device

    @property
    def texel(self) -> float:
        """Plane texel side in field units."""
        return 2.0 / self.planes.shape[-1]

    @property
    def feature_dim(self) -> int:
        return self.decoder.config.out_features

    def reset_count(self) -> None:
        self.n_evaluations = 0

    def query(self, points: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """points [N, 3] -> density [N], features [N, F]."""
        self.n_evaluations += points.shape[0]
        if points.shape[0] == 0:
            return points.new_zeros(0), points.new_zeros(0, self.feature_dim)
        if torch.is_grad_enabled():
            return self.decoder(sample_planes(self.planes, points))
        return self.decoder(self.table().lookup(points))

    def table(self) -> PlaneTable:
        """The planes' `PlaneTable`, rebuilt when they were changed in place."""
        version = self.planes._version
        if self._table is None or self._table[0] != version:
            self._table = (version, PlaneTable(self.planes))
        return self._table[1]

    def density(self, points: torch.Tensor) -> torch.Tensor:
        """points [N, 3] -> density [N] (counted like `query`)."""
        return self.query(points)[0]
