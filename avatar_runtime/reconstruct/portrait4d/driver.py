"""Drive one `portrait4d` avatar: the source is encoded once; each frame runs only the
driving half of the network and renders with the `fast` sampler.

The triplanes live in the head's frame, so a head rotation (about the neck pivot) and
translation move the camera instead; the driving motion tokens carry the same pose, which
is how the network learns to keep the neck and shoulders in place (neck rotation driven
by head pose). With a fitted head (identity coefficients), the deformed head mesh gives
each ray a sampling band; without one, an occupancy grid of the source field is used.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F

from avatar_runtime.head.model import HeadModel
from avatar_runtime.motion.frame import MotionFrame
from avatar_runtime.motion.pose import quat_to_matrix
from avatar_runtime.render.camera import Camera
from avatar_runtime.render.mesh_renderer import MeshRenderer, RenderOutput
from avatar_runtime.render.volume import FastSampler, FastSamplerConfig, OccupancyConfig, OccupancyGrid
from avatar_runtime.reconstruct.portrait4d.model import Portrait4D, Rendered
from avatar_runtime.reconstruct.portrait4d.motion import motion_batch


@dataclass(frozen=True)
class DriverConfig:
    """Configuration of `Portrait4DDriver`."""

    fast: FastSamplerConfig = FastSamplerConfig()
    """Sampler settings (band width, step, early termination)."""
    occupancy: OccupancyConfig = OccupancyConfig(resolution=64, dilation=3)
    """Grid of the source field, used when there is no fitted head (dilated for motion)."""
    with_background: bool = True
    """Output the background layer (opaque frames) or only the head (alpha = opacity)."""


def head_camera(camera: Camera, motion: MotionFrame, pivot: np.ndarray) -> Camera:
    """The camera seen from the head's frame: inverse head pose applied to c2w."""
    pose = np.eye(4)
    rot = quat_to_matrix(motion.head_rotation)
    pose[:3, :3] = rot
    pose[:3, 3] = pivot - rot @ pivot + motion.head_translation
    return Camera(np.linalg.inv(pose) @ camera.c2w, camera.fov_y_deg, camera.width, camera.height)


class Portrait4DDriver:
    """source_image [S, S, 3] uint8 (the aligned crop) + its motion -> per-frame renders."""

    def __init__(self, model: Portrait4D, source_image: np.ndarray, source_motion: MotionFrame,
                 head: HeadModel | None = None, identity: np.ndarray | None = None,
                 config: DriverConfig = DriverConfig()):
        self.model, self.head, self.identity, self.config = model.eval(), head, identity, config
        self.device = next(model.parameters()).device
        image = torch.from_numpy(np.array(source_image)).permute(2, 0, 1)[None].float().to(self.device) / 255
        self._source_motion = motion_batch([source_motion], self.device)
        with torch.no_grad():
            self.cache = model.encode_source(image, self._source_motion)
        self._mesh = None if head is None or identity is None else MeshRenderer(
            head.faces, head.face_uvs, np.zeros((4, 4, 3), np.uint8), aa_samples=0)
        self._grid: OccupancyGrid | None = None

    def render(self, motion: MotionFrame, camera: Camera) -> RenderOutput:
        """One frame at camera.width x camera.height."""
        with torch.no_grad():
            planes = self.model.animate(self.cache, motion_batch([motion], self.device))
            cam = head_camera(camera, motion, self._pivot())
            out = self.model.render(planes, [cam], self.cache, *self._sampling(motion, cam))
        return self._to_output(out, camera)

    def _pivot(self) -> np.ndarray:
        return self.head.head_pivot if self.head is not None else np.zeros(3)

    def _sampling(self, motion: MotionFrame, cam: Camera) -> tuple[FastSampler, list | None]:
        """Band around the deformed head when fitted, else the source field's grid."""
        if self._mesh is not None:
            size = self.model.config.planes.render_size
            verts = self.head.shape(self.identity, motion.arkit)
            depth = self._mesh.render(verts, cam.with_size(size, size)).depth
            return FastSampler(self.config.fast), [depth]
        if self._grid is None:
            with torch.no_grad():
                planes = self.model.animate(self.cache, self._source_motion)
            self._grid = OccupancyGrid.from_field(self.model.field(planes[0]), self.config.occupancy)
        return FastSampler(self.config.fast, self._grid), None

    def _to_output(self, out: Rendered, camera: Camera) -> RenderOutput:
        size = (camera.height, camera.width)
        rgb = F.interpolate(out.rgb, size=size, mode="bilinear", align_corners=False)[0]
        alpha = F.interpolate(out.opacity[:, None], size=size, mode="bilinear", align_corners=False)[0]
        if self.config.with_background and self.model.background is not None:
            alpha = torch.ones_like(alpha)
        rgba = torch.cat([rgb, alpha]).clamp(0, 1).permute(1, 2, 0).cpu()
        depth = F.interpolate(out.depth[:, None], size=size, mode="nearest")[0, 0].cpu()
        return RenderOutput((rgba.numpy() * 255 + 0.5).astype(np.uint8), depth.numpy().astype(np.float32),
                            np.zeros(size + (3,), np.float32))
