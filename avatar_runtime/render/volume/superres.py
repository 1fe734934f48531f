"""2D super-resolution: a rendered feature image -> a higher-resolution RGB image.

EG3D's role for this module: the volume is rendered at low resolution (e.g. 128^2) as a
feature image and a small CNN upsamples it; the first three feature channels are the
low-resolution RGB, so the network learns a residual over their bilinear upsampling.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn


@dataclass(frozen=True)
class SuperResolutionConfig:
    """Configuration of `SuperResolution`."""

    in_channels: int = 32
    """Feature image channels (0..2 = RGB)."""
    channels: int = 64
    """Width of the convolutions."""
    scale: int = 4
    """Upsampling factor, a power of two (1 = refine only)."""


class _UpBlock(nn.Module):
    def __init__(self, c_in: int, c_out: int):
        super().__init__()
        self.conv = nn.Sequential(nn.Conv2d(c_in, c_out, 3, padding=1), nn.LeakyReLU(0.2),
                                  nn.Conv2d(c_out, c_out, 3, padding=1), nn.LeakyReLU(0.2))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.conv(F.interpolate(x, scale_factor=2, mode="bilinear", align_corners=False))


class SuperResolution(nn.Module):
    """features [B, C, h, w] -> rgb [B, 3, h * scale, w * scale] (residual over bilinear)."""

    def __init__(self, config: SuperResolutionConfig = SuperResolutionConfig()):
        super().__init__()
        if config.scale < 1 or config.scale & (config.scale - 1):
            raise ValueError(f"scale must be a power of two, got {config.scale}")
        self.config = config
        self.stem = nn.Conv2d(config.in_channels, config.channels, 3, padding=1)
        self.ups = nn.ModuleList(_UpBlock(config.channels, config.channels)
                                 for _ in range(int(math.log2(config.scale))))
        self.to_rgb = nn.Conv2d(config.channels, 3, 1)
        nn.init.zeros_(self.to_rgb.weight)
        nn.init.zeros_(self.to_rgb.bias)

    def forward(self, features: torch.Tensor) -> torch.Tensor:
        x = F.leaky_relu(self.stem(features), 0.2)
        for up in self.ups:
            x = up(x)
        base = F.interpolate(features[:, :3], size=x.shape[-2:], mode="bilinear", align_corners=False)
        return base + self.to_rgb(x)
