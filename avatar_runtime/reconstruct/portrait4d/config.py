"""Configuration of the Portrait4D-v2 reconstructor, with presets `tiny`, `small`, `paper`.

One dataclass per module; `Portrait4DConfig` nests them and round-trips through JSON
(checkpoints store it beside the weights).
"""

from __future__ import annotations

import dataclasses
import json
from dataclasses import dataclass

from avatar_runtime.render.volume.field import DecoderConfig, FieldBox
from avatar_runtime.render.volume.samplers import ReferenceSamplerConfig
from avatar_runtime.render.volume.superres import SuperResolutionConfig


@dataclass(frozen=True)
class EncoderConfig:
    """Global (CNN -> tokens) and detail (shallow CNN) image encoders."""

    image_size: int = 64
    """Source crop side in pixels (square, RGB)."""
    global_channels: tuple[int, ...] = (32, 64)
    """Channels of the global CNN's stride-2 stages; tokens come from the last one."""
    global_blocks: int = 1
    """Residual blocks per global stage."""
    detail_channels: int = 16
    """Channels of the detail feature map (at plane resolution)."""


@dataclass(frozen=True)
class TransformerConfig:
    """ViT canonicaliser (self + cross attention) and ViT triplane decoder."""

    dim: int = 64
    """Token width."""
    heads: int = 4
    """Attention heads."""
    canonical_blocks: int = 4
    """Canonicaliser depth; the first half attends to source motion, the second to driving."""
    decoder_blocks: int = 1
    """Self-attention blocks of the triplane decoder."""
    mlp_ratio: float = 4.0
    """MLP hidden width / dim."""


@dataclass(frozen=True)
class MotionConfig:
    """Motion tokens from ARKit + head pose (+ gaze) or an opaque embedding."""

    tokens: int = 4
    """Motion tokens per frame."""
    embedding_dim: int = 0
    """Size of an opaque motion embedding; 0 = ARKit + pose input."""
    hidden: int = 128
    """Width of the motion MLP."""


@dataclass(frozen=True)
class PlaneConfig:
    """Triplane output and rendering."""

    resolution: int = 32
    """Plane side R."""
    channels: int = 16
    """Channels per plane."""
    render_size: int = 32
    """Neural rendering resolution (feature image side)."""
    decoder: DecoderConfig = DecoderConfig(in_channels=16, hidden=32, out_features=16)
    sampler: ReferenceSamplerConfig = ReferenceSamplerConfig(n_stratified=24, n_importance=24)
    box: FieldBox = FieldBox()


@dataclass(frozen=True)
class Portrait4DConfig:
    """Everything needed to build the network (and nothing about training)."""

    encoder: EncoderConfig = EncoderConfig()
    transformer: TransformerConfig = TransformerConfig()
    motion: MotionConfig = MotionConfig()
    planes: PlaneConfig = PlaneConfig()
    superres: SuperResolutionConfig = SuperResolutionConfig(in_channels=16, channels=16, scale=2)
    background: bool = True
    """Predict a background layer composited behind the head."""

    def to_json(self) -> str:
        return json.dumps(dataclasses.asdict(self), indent=1)

    @classmethod
    def from_json(cls, text: str) -> "Portrait4DConfig":
        return _build(cls, json.loads(text))


def _build(cls, data: dict):
    """Nested dataclass from a dict (tuples restored from JSON lists)."""
    kwargs = {}
    for f in dataclasses.fields(cls):
        if f.name not in data:
            continue
        value = data[f.name]
        default = getattr(cls, f.name, None) if f.default is dataclasses.MISSING else f.default
        if dataclasses.is_dataclass(default):
            value = _build(type(default), value)
        elif isinstance(value, list):
            value = tuple(value)
        kwargs[f.name] = value
    return cls(**kwargs)


def _decoder(channels: int, hidden: int) -> DecoderConfig:
    return DecoderConfig(in_channels=channels, hidden=hidden, out_features=channels)


PRESETS: dict[str, Portrait4DConfig] = {
    "tiny": Portrait4DConfig(),
    "small": Portrait4DConfig(
        encoder=EncoderConfig(image_size=256, global_channels=(32, 64, 128, 256), detail_channels=32),
        transformer=TransformerConfig(dim=256, heads=8, canonical_blocks=8, decoder_blocks=2),
        motion=MotionConfig(tokens=8, hidden=256),
        planes=PlaneConfig(resolution=64, channels=32, render_size=64, decoder=_decoder(32, 64),
                           sampler=ReferenceSamplerConfig()),
        superres=SuperResolutionConfig(in_channels=32, channels=64, scale=4)),
    # Published dims: 3 x 32 x 256^2 planes, 8 blocks of dim 1024, 48 + 48 samples at
    # 128^2, super-resolution to 512^2.
    "paper": Portrait4DConfig(
        encoder=EncoderConfig(image_size=512, global_channels=(64, 128, 256, 512), global_blocks=3,
                              detail_channels=64),
        transformer=TransformerConfig(dim=1024, heads=16, canonical_blocks=8, decoder_blocks=4),
        motion=MotionConfig(tokens=16, hidden=1024),
        planes=PlaneConfig(resolution=256, channels=32, render_size=128, decoder=_decoder(32, 64),
                           sampler=ReferenceSamplerConfig()),
        superres=SuperResolutionConfig(in_channels=32, channels=128, scale=4)),
}


def preset(name: str) -> Portrait4DConfig:
    if name not in PRESETS:
        raise ValueError(f"unknown Portrait4D preset {name!r}; available: {', '.join(PRESETS)}")
    return PRESETS[name]
