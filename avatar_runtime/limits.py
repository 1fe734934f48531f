"""Configurable caps on what one request may ask of the runtime."""

from __future__ import annotations

from dataclasses import dataclass

from .faces.image import ImageLimits


@dataclass(frozen=True)
class Limits:
    max_image_bytes: int = 40 * 1024 * 1024
    max_image_side: int = 8192
    max_avatars: int | None = 1000
    max_render_side: int = 4096
    max_video_bytes: int = 200 * 1024 * 1024

    @property
    def image(self) -> ImageLimits:
        return ImageLimits(self.max_image_bytes, self.max_image_side)
