"""Pinhole cameras in the runtime's world (right-handed, metres, +Y up, head faces +Z).

A camera is an OpenGL-style camera-to-world matrix (looks down its local -Z, +Y up),
a vertical field of view in degrees, and an image size. Pixel (0, 0) is the top-left.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

DEFAULT_FOV_DEG = 12.0
# The papers' portrait camera (radius ~4.2 head units) framing a ~0.27 m tall view.
DEFAULT_RADIUS_M = 1.3
DEFAULT_TARGET = (0.0, -0.02, 0.0)
# Head-and-shoulders framing (hair, neck and shoulders in view): farther, aimed lower.
BUST_RADIUS_M, BUST_TARGET = 2.3, (0.0, -0.12, 0.0)


@dataclass(frozen=True)
class Camera:
    c2w: np.ndarray  # [4, 4] camera-to-world, OpenGL axes
    fov_y_deg: float = DEFAULT_FOV_DEG
    width: int = 512
    height: int = 512

    @property
    def focal_px(self) -> float:
        """Focal length in pixels (square pixels)."""
        return 0.5 * self.height / math.tan(math.radians(self.fov_y_deg) / 2)

    @property
    def intrinsics(self) -> np.ndarray:
        """[3, 3] K for the OpenCV-style pixel convention (x right, y down)."""
        f = self.focal_px
        return np.array([[f, 0, self.width / 2], [0, f, self.height / 2], [0, 0, 1]], np.float64)

    @property
    def position(self) -> np.ndarray:
        return self.c2w[:3, 3].copy()

    def world_to_camera(self) -> np.ndarray:
        return np.linalg.inv(self.c2w)

    def with_size(self, width: int, height: int) -> "Camera":
        return Camera(self.c2w, self.fov_y_deg, width, height)

    def project(self, points: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """World points [N, 3] -> pixel coords [N, 2] (x right, y down) and view depth [N]."""
        w2c = self.world_to_camera()
        pc = points @ w2c[:3, :3].T + w2c[:3, 3]
        depth = -pc[:, 2]
        f = self.focal_px
        x = f * pc[:, 0] / depth + self.width / 2
        y = -f * pc[:, 1] / depth + self.height / 2
        return np.stack([x, y], axis=1), depth

    def rays(self) -> tuple[np.ndarray, np.ndarray]:
        """Ray origins and unit directions through pixel centres, each [H, W, 3]."""
        f = self.focal_px
        xs = (np.arange(self.width) + 0.5 - self.width / 2) / f
        ys = -(np.arange(self.height) + 0.5 - self.height / 2) / f
        gx, gy = np.meshgrid(xs, ys)
        dirs_cam = np.stack([gx, gy, -np.ones_like(gx)], axis=-1)
        dirs = dirs_cam @ self.c2w[:3, :3].T
        dirs /= np.linalg.norm(dirs, axis=-1, keepdims=True)
        origins = np.broadcast_to(self.c2w[:3, 3], dirs.shape)
        return origins, dirs

    @staticmethod
    def look_at(eye, target=DEFAULT_TARGET, up=(0.0, 1.0, 0.0), fov_y_deg=DEFAULT_FOV_DEG,
                width=512, height=512) -> "Camera":
        eye = np.asarray(eye, np.float64)
        forward = np.asarray(target, np.float64) - eye
        forward /= np.linalg.norm(forward)
        right = np.cross(forward, np.asarray(up, np.float64))
        right /= np.linalg.norm(right)
        true_up = np.cross(right, forward)
        c2w = np.eye(4)
        c2w[:3, 0], c2w[:3, 1], c2w[:3, 2], c2w[:3, 3] = right, true_up, -forward, eye
        return Camera(c2w, float(fov_y_deg), int(width), int(height))

    @staticmethod
    def orbit(yaw_deg: float = 0.0, pitch_deg: float = 0.0, radius: float = DEFAULT_RADIUS_M,
              target=DEFAULT_TARGET, fov_y_deg=DEFAULT_FOV_DEG, width=512, height=512) -> "Camera":
        """Camera on a sphere around `target`; yaw 0 / pitch 0 looks at the face (from +Z).

        Positive yaw moves the camera toward +X (the subject's left), positive pitch above.
        """
        yaw, pitch = math.radians(yaw_deg), math.radians(pitch_deg)
        offset = radius * np.array(
            [math.sin(yaw) * math.cos(pitch), math.sin(pitch), math.cos(yaw) * math.cos(pitch)])
        return Camera.look_at(np.asarray(target) + offset, target, fov_y_deg=fov_y_deg,
                              width=width, height=height)
