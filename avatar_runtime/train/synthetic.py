"""Synthetic 4D data: random parametric heads (identity coefficients), random ARKit
expressions, procedural skin/hair textures, rendered with `MeshRenderer` from random
portrait cameras (EG3D / Portrait4D ranges)."""

from __future__ import annotations

import math
from dataclasses import dataclass

import cv2
import numpy as np

from avatar_runtime.head.model import EYE_LEFT, EYE_RIGHT, MOUTH_INTERIOR, HeadModel, load_head_model
from avatar_runtime.render.camera import Camera
from avatar_runtime.render.mesh_renderer import MeshRenderer


@dataclass(frozen=True)
class SyntheticConfig:
    """Configuration of `SyntheticHeads`."""

    image_size: int = 64
    """Rendered image side (source crops and targets)."""
    identity_scale: float = 0.6
    """Identity coefficients ~ U(-scale, scale) (phenotype ones stay 0)."""
    expression_active: int = 6
    """ARKit channels switched on per expression (others 0)."""
    pitch: tuple[float, float] = (-0.25, 0.65)
    """Camera pitch range (rad; positive above)."""
    yaw: tuple[float, float] = (-0.78, 0.78)
    """Camera yaw range (rad)."""
    roll: tuple[float, float] = (-0.25, 0.25)
    """Camera roll range (rad)."""
    radius: tuple[float, float] = (3.65, 4.45)
    """Camera distance in head units."""
    head_unit_m: float = 0.3
    """One head unit in metres."""
    fov_deg: float = 12.0
    texture_size: int = 128


@dataclass
class View:
    """One rendered view: rgb [S, S, 3] float in [0, 1] over the subject's background,
    alpha [S, S], depth [S, S] (m, +inf empty), camera."""

    rgb: np.ndarray
    alpha: np.ndarray
    depth: np.ndarray
    camera: Camera


@dataclass
class Subject:
    """A random head: identity [K], texture [T, T, 3] uint8, background colour [3]."""

    identity: np.ndarray
    texture: np.ndarray
    background: np.ndarray


class SyntheticHeads:
    """Random subjects, expressions and cameras; `render(subject, expression, camera)`."""

    def __init__(self, config: SyntheticConfig = SyntheticConfig(), head: HeadModel | None = None):
        self.config = config
        self.head = head or load_head_model()
        self._face_class = _face_classes(self.head)
        self._phenotype = np.array([n.startswith("phenotype:") for n in self.head.identity_names])

    def subject(self, rng: np.random.Generator) -> Subject:
        s = self.config.identity_scale
        identity = rng.uniform(-s, s, self.head.num_identity).astype(np.float32)
        identity[self._phenotype] = 0.0  # whole-body phenotype targets move the head away
        texture = _texture(self.head, self._face_class, rng, self.config.texture_size)
        return Subject(identity, texture, rng.uniform(0.1, 0.9, 3).astype(np.float32))

    def expression(self, rng: np.random.Generator) -> np.ndarray:
        """[52] weights: a few random channels, with jawOpen / blinks / smiles favoured."""
        weights = np.zeros(52, np.float32)
        active = rng.choice(52, self.config.expression_active, replace=False)
        weights[active] = rng.uniform(0, 1, len(active)) ** 2
        return weights

    def camera(self, rng: np.random.Generator) -> Camera:
        cfg = self.config
        yaw, pitch, roll = (rng.uniform(*r) for r in (cfg.yaw, cfg.pitch, cfg.roll))
        radius = rng.uniform(*cfg.radius) * cfg.head_unit_m
        cam = Camera.orbit(math.degrees(yaw), math.degrees(pitch), radius, fov_y_deg=cfg.fov_deg,
                           width=cfg.image_size, height=cfg.image_size)
        return _rolled(cam, roll)

    def render(self, subject: Subject, expression: np.ndarray, camera: Camera) -> View:
        verts = self.head.shape(subject.identity, expression)
        out = MeshRenderer(self.head.faces, self.head.face_uvs, subject.texture).render(verts, camera)
        rgba = out.rgba.astype(np.float32) / 255
        alpha = rgba[..., 3]
        rgb = rgba[..., :3] * alpha[..., None] + subject.background * (1 - alpha[..., None])
        return View(rgb, alpha, out.depth, camera)


def _rolled(camera: Camera, roll: float) -> Camera:
    """Rotate the camera about its viewing axis by `roll` rad."""
    c, s = math.cos(roll), math.sin(roll)
    spin = np.eye(4)
    spin[:2, :2] = [[c, -s], [s, c]]
    return Camera(camera.c2w @ spin, camera.fov_y_deg, camera.width, camera.height)


def _face_classes(head: HeadModel) -> np.ndarray:
    """[F] 0 skin, 1 hair (scalp: high and not the face), 2 eye, 3 mouth interior."""
    labels = head.part_labels[head.faces]                       # [F, 3]
    centre = head.template[head.faces].mean(1)                  # [F, 3]
    cls = np.zeros(len(head.faces), np.int64)
    cls[(centre[:, 1] > 0.045 + 0.35 * np.maximum(centre[:, 2], 0)) | (centre[:, 2] < -0.06)] = 1
    cls[np.isin(labels, [EYE_LEFT, EYE_RIGHT]).any(1)] = 2
    cls[(labels == MOUTH_INTERIOR).any(1)] = 3
    return cls


def _texture(head: HeadModel, face_class: np.ndarray, rng: np.random.Generator, size: int) -> np.ndarray:
    """Procedural texture [T, T, 3] uint8: skin tone, hair tone, dark eyes/mouth, noise."""
    skin = np.array([0.85, 0.65, 0.52]) * rng.uniform(0.45, 1.1) + rng.normal(0, 0.04, 3)
    hair = rng.uniform(0.05, 0.6) * np.array([1.0, 0.8, 0.6]) + rng.normal(0, 0.03, 3)
    colours = np.clip(np.stack([skin, hair, [0.2, 0.15, 0.12], [0.45, 0.15, 0.15]]), 0, 1) * 255
    tex = np.full((size, size, 3), colours[0], np.float32)
    uv = head.face_uvs * [size, -size] + [0, size]              # pixel coords, row 0 = top
    for cls in (1, 2, 3):
        polys = np.round(uv[face_class == cls] * 16).astype(np.int32)
        cv2.fillPoly(tex, list(polys), colours[cls].tolist(), shift=4)
    noise = cv2.resize(rng.normal(0, 12, (size // 8, size // 8, 1)).astype(np.float32), (size, size))
    return np.clip(tex + noise[..., None], 0, 255).astype(np.uint8)
