"""Image encoders: a global CNN whose last feature map becomes ViT tokens, and a shallow
detail CNN whose features (at plane resolution) skip the transformer."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from avatar_runtime.reconstruct.portrait4d.config import EncoderConfig


class ResBlock(nn.Module):
    """x [B, C, H, W] -> same shape (two 3x3 convs, GroupNorm, residual)."""

    def __init__(self, channels: int):
        super().__init__()
        groups = min(8, channels)
        self.body = nn.Sequential(nn.GroupNorm(groups, channels), nn.SiLU(),
                                  nn.Conv2d(channels, channels, 3, padding=1),
                                  nn.GroupNorm(groups, channels), nn.SiLU(),
                                  nn.Conv2d(channels, channels, 3, padding=1))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.body(x)


class GlobalEncoder(nn.Module):
    """image [B, 3, S, S] in [0, 1] -> tokens [B, (S / 2^(n+1))^2, dim] with positions."""

    def __init__(self, config: EncoderConfig, dim: int):
        super().__init__()
        chans, n = config.global_channels, config.global_blocks
        layers: list[nn.Module] = [nn.Conv2d(3, chans[0], 3, 2, 1)]
        for c_in, c_out in zip(chans, chans[1:]):
            layers += [ResBlock(c_in) for _ in range(n)] + [nn.Conv2d(c_in, c_out, 3, 2, 1)]
        layers += [ResBlock(chans[-1]) for _ in range(n)]
        self.cnn = nn.Sequential(*layers)
        side = config.image_size // 2 ** len(chans)
        self.to_tokens = nn.Conv2d(chans[-1], dim, 1)
        self.position = nn.Parameter(torch.zeros(1, side * side, dim))
        self.side = side

    def forward(self, image: torch.Tensor) -> torch.Tensor:
        x = self.to_tokens(self.cnn(image * 2 - 1))
        return x.flatten(2).transpose(1, 2) + self.position


class DetailEncoder(nn.Module):
    """image [B, 3, S, S] -> features [B, C_d, R, R] at plane resolution R."""

    def __init__(self, config: EncoderConfig, plane_resolution: int):
        super().__init__()
        c = config.detail_channels
        self.net = nn.Sequential(nn.Conv2d(3, c, 3, padding=1), nn.SiLU(), ResBlock(c),
                                 nn.Conv2d(c, c, 3, padding=1))
        self.resolution = plane_resolution

    def forward(self, image: torch.Tensor) -> torch.Tensor:
        x = F.interpolate(image * 2 - 1, size=self.resolution, mode="bilinear", align_corners=False)
        return self.net(x)
