"""ViT pieces: blocks with optional cross-attention to motion tokens; the canonicaliser
(source motion in the first half of its blocks, driving motion in the second); the
triplane decoder (tokens -> three feature planes, detail features fused at full res)."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from avatar_runtime.reconstruct.portrait4d.config import PlaneConfig, TransformerConfig
from avatar_runtime.reconstruct.portrait4d.encoders import ResBlock


class Block(nn.Module):
    """Pre-norm ViT block: self-attention, (cross-attention to `context`), MLP.

    x [B, N, D], context [B, T, D] or None -> [B, N, D].
    """

    def __init__(self, dim: int, heads: int, mlp_ratio: float, cross: bool):
        super().__init__()
        self.norm1, self.norm3 = nn.LayerNorm(dim), nn.LayerNorm(dim)
        self.attn = nn.MultiheadAttention(dim, heads, batch_first=True)
        self.cross = nn.MultiheadAttention(dim, heads, batch_first=True) if cross else None
        self.norm2 = nn.LayerNorm(dim) if cross else None
        hidden = int(dim * mlp_ratio)
        self.mlp = nn.Sequential(nn.Linear(dim, hidden), nn.GELU(), nn.Linear(hidden, dim))

    def forward(self, x: torch.Tensor, context: torch.Tensor | None = None) -> torch.Tensor:
        h = self.norm1(x)
        x = x + self.attn(h, h, h, need_weights=False)[0]
        if self.cross is not None:
            x = x + self.cross(self.norm2(x), context, context, need_weights=False)[0]
        return x + self.mlp(self.norm3(x))


class Canonicaliser(nn.Module):
    """First half: remove the source's motion (neutralise); second half: apply driving.

    `neutralise(tokens [B, N, D], source [B, T, D])` depends only on the source, so it
    is what a drive session caches; `animate(neutral, driving)` runs per frame.
    """

    def __init__(self, config: TransformerConfig):
        super().__init__()
        half = config.canonical_blocks // 2
        make = lambda: Block(config.dim, config.heads, config.mlp_ratio, cross=True)  # noqa: E731
        self.source_blocks = nn.ModuleList(make() for _ in range(half))
        self.driving_blocks = nn.ModuleList(make() for _ in range(config.canonical_blocks - half))

    def neutralise(self, tokens: torch.Tensor, source: torch.Tensor) -> torch.Tensor:
        for block in self.source_blocks:
            tokens = block(tokens, source)
        return tokens

    def animate(self, neutral: torch.Tensor, driving: torch.Tensor) -> torch.Tensor:
        for block in self.driving_blocks:
            neutral = block(neutral, driving)
        return neutral


class PlaneDecoder(nn.Module):
    """tokens [B, n*n, D] + detail [B, C_d, R, R] -> planes [B, 3, C, R, R]."""

    def __init__(self, config: TransformerConfig, planes: PlaneConfig, detail_channels: int):
        super().__init__()
        self.blocks = nn.ModuleList(Block(config.dim, config.heads, config.mlp_ratio, cross=False)
                                    for _ in range(config.decoder_blocks))
        self.to_low = nn.Linear(config.dim, 3 * planes.channels)
        c3 = 3 * planes.channels
        self.fuse = nn.Sequential(nn.Conv2d(c3 + detail_channels, c3, 3, padding=1), nn.SiLU(),
                                  ResBlock(c3), nn.Conv2d(c3, c3, 3, padding=1))
        self.planes = planes

    def forward(self, tokens: torch.Tensor, detail: torch.Tensor) -> torch.Tensor:
        for block in self.blocks:
            tokens = block(tokens)
        b, n, _ = tokens.shape
        side, r, c = int(round(n ** 0.5)), self.planes.resolution, self.planes.channels
        low = self.to_low(tokens).transpose(1, 2).reshape(b, 3 * c, side, side)
        up = F.interpolate(low, size=r, mode="bilinear", align_corners=False)
        planes = up + self.fuse(torch.cat([up, detail], 1))
        return planes.reshape(b, 3, c, r, r)
