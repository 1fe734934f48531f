"""The Portrait4D-v2 network: source image + source motion + driving motion -> triplanes,
rendered by the volume renderer, composited over a background layer, super-resolved.

    encode_source(image, source_motion) -> SourceCache     once per avatar
    animate(cache, driving_motion)      -> planes          per frame
    forward(image, source_motion, driving_motion) = animate(encode_source(...), ...)
    render(planes, cameras, cache)      -> Rendered

The source half (global + detail encoders, the canonicaliser's neutralising blocks, the
background) is cached; per frame only the driving blocks and the plane decoder run.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Sequence

import torch
import torch.nn.functional as F
from torch import nn

from avatar_runtime.render.camera import Camera
from avatar_runtime.render.volume import TriplaneDecoder, TriplaneField, VolumeRender, render_field
from avatar_runtime.render.volume.samplers import ReferenceSampler
from avatar_runtime.render.volume.superres import SuperResolution
from avatar_runtime.reconstruct.portrait4d.config import Portrait4DConfig
from avatar_runtime.reconstruct.portrait4d.encoders import DetailEncoder, GlobalEncoder
from avatar_runtime.reconstruct.portrait4d.motion import MotionEncoder
from avatar_runtime.reconstruct.portrait4d.transformer import Canonicaliser, PlaneDecoder


@dataclass
class SourceCache:
    """What depends only on the source.

    neutral:    [B, N, D] tokens after the neutralising (source-motion) blocks
    detail:     [B, C_d, R, R] detail features
    background: [B, F, h, w] background feature layer, or None
    """

    neutral: torch.Tensor
    detail: torch.Tensor
    background: torch.Tensor | None


@dataclass
class Rendered:
    """A batch of rendered views.

    rgb:      [B, 3, S, S] super-resolved image (S = render_size * scale)
    rgb_low:  [B, 3, h, h] the volume-rendered RGB over the background
    opacity:  [B, h, h] head opacity
    depth:    [B, h, h] metres along the view axis (+inf where empty)
    n_samples: decoder evaluations for the batch
    """

    rgb: torch.Tensor
    rgb_low: torch.Tensor
    opacity: torch.Tensor
    depth: torch.Tensor
    n_samples: int


class BackgroundHead(nn.Module):
    """source tokens [B, n*n, D] -> background features [B, F, h, h]."""

    def __init__(self, dim: int, features: int, size: int):
        super().__init__()
        self.proj = nn.Linear(dim, features)
        self.conv = nn.Conv2d(features, features, 3, padding=1)
        self.size = size

    def forward(self, tokens: torch.Tensor) -> torch.Tensor:
        b, n, _ = tokens.shape
        side = int(round(n ** 0.5))
        x = self.proj(tokens).transpose(1, 2).reshape(b, -1, side, side)
        x = F.interpolate(x, size=self.size, mode="bilinear", align_corners=False)
        return torch.sigmoid(self.conv(x))


class Portrait4D(nn.Module):
    """See the module docstring; `config` fixes every size."""

    def __init__(self, config: Portrait4DConfig = Portrait4DConfig()):
        super().__init__()
        t, p = config.transformer, config.planes
        self.config = config
        self.global_encoder = GlobalEncoder(config.encoder, t.dim)
        self.detail_encoder = DetailEncoder(config.encoder, p.resolution)
        self.motion_encoder = MotionEncoder(config.motion, t.dim)
        self.canonicaliser = Canonicaliser(t)
        self.plane_decoder = PlaneDecoder(t, p, config.encoder.detail_channels)
        self.field_decoder = TriplaneDecoder(p.decoder)
        self.background = (BackgroundHead(t.dim, p.decoder.out_features, p.render_size)
                           if config.background else None)
        self.superres = SuperResolution(config.superres)

    def encode_source(self, image: torch.Tensor, source_motion: torch.Tensor) -> SourceCache:
        """image [B, 3, S, S] in [0, 1], source_motion [B, M] -> SourceCache."""
        tokens = self.global_encoder(image)
        neutral = self.canonicaliser.neutralise(tokens, self.motion_encoder(source_motion))
        background = self.background(tokens) if self.background is not None else None
        return SourceCache(neutral, self.detail_encoder(image), background)

    def animate(self, cache: SourceCache, driving_motion: torch.Tensor) -> torch.Tensor:
        """driving_motion [B, M] -> planes [B, 3, C, R, R]."""
        tokens = self.canonicaliser.animate(cache.neutral, self.motion_encoder(driving_motion))
        return self.plane_decoder(tokens, cache.detail)

    def forward(self, image: torch.Tensor, source_motion: torch.Tensor,
                driving_motion: torch.Tensor) -> torch.Tensor:
        """Uncached path: image [B, 3, S, S], motions [B, M] -> planes [B, 3, C, R, R]."""
        return self.animate(self.encode_source(image, source_motion), driving_motion)

    def field(self, planes: torch.Tensor) -> TriplaneField:
        """One example's planes [3, C, R, R] as a renderable field."""
        return TriplaneField(planes, self.field_decoder, self.config.planes.box)

    def render(self, planes: torch.Tensor, cameras: Sequence[Camera], cache: SourceCache,
               sampler=None, surface_depths: Sequence | None = None) -> Rendered:
        """planes [B, 3, C, R, R], one camera per example (sized by the caller or resized to
        `render_size`) -> Rendered. `sampler` defaults to the reference sampler."""
        sampler = sampler or ReferenceSampler(self.config.planes.sampler)
        size = self.config.planes.render_size
        views = [render_field(self.field(planes[b]), cam.with_size(size, size), sampler,
                              None if surface_depths is None else surface_depths[b])
                 for b, cam in enumerate(cameras)]
        return self._composite(views, cache.background)

    def _composite(self, views: list[VolumeRender], background: torch.Tensor | None) -> Rendered:
        """Premultiplied features over the background layer, then super-resolution."""
        feats = torch.stack([v.features for v in views])                 # [B, F, h, h]
        opacity = torch.stack([v.rgba[..., 3] for v in views])           # [B, h, h]
        if background is not None:
            feats = feats + (1 - opacity[:, None]) * background
        return Rendered(self.superres(feats), feats[:, :3], opacity,
                        torch.stack([v.depth for v in views]), sum(v.n_samples for v in views))
