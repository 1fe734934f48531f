"""Triplane radiance field: three axis-aligned feature planes + a small MLP decoder.

Points live in *field coordinates*: the cube [-1, 1]^3 that `FieldBox` maps onto the
world (metres). A point's feature is the sum of bilinear lookups (`grid_sample`) in the
xy, xz and yz planes; the decoder (EG3D's OSG decoder) turns it into a density per field
unit and a feature vector whose first three channels are RGB in [0, 1].
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

    @property
    def device(self) -> torch.device:
        return self.planes.device

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
        return self.decoder(sample_planes(self.planes, points))

    def density(self, points: torch.Tensor) -> torch.Tensor:
        """points [N, 3] -> density [N] (counted like `query`)."""
        return self.query(points)[0]
