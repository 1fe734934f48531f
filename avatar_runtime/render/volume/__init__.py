"""Volumetric rendering: triplane radiance fields, samplers, compositing, super-resolution."""

from avatar_runtime.render.volume.compositing import RayOutputs
from avatar_runtime.render.volume.fast_sampler import FastSampler, FastSamplerConfig
from avatar_runtime.render.volume.field import (DecoderConfig, FieldBox, TriplaneDecoder,
                                                TriplaneField, sample_planes)
from avatar_runtime.render.volume.occupancy import OccupancyConfig, OccupancyGrid
from avatar_runtime.render.volume.rays import RayBundle, camera_rays
from avatar_runtime.render.volume.renderer import (SAMPLERS, VolumeRender, make_sampler,
                                                   render_field)
from avatar_runtime.render.volume.samplers import ReferenceSampler, ReferenceSamplerConfig

__all__ = [
    "DecoderConfig", "FastSampler", "FastSamplerConfig", "FieldBox", "OccupancyConfig",
    "OccupancyGrid", "RayBundle", "RayOutputs", "ReferenceSampler", "ReferenceSamplerConfig",
    "SAMPLERS", "TriplaneDecoder", "TriplaneField", "VolumeRender", "camera_rays",
    "make_sampler", "render_field", "sample_planes",
]
