"""Texture for the parts a photo cannot show well: eyeballs, teeth, tongue, mouth cavity.

The eyeballs get a painted iris (its colour read from the photo's irises), pupil and
sclera; teeth get enamel with gums at the roots; the tongue a tongue tone; the skin
inside the mouth a dark cavity tone. Colours are
functions of each texel's place on the neutral template, so they do not depend on where
the parts sit in the UV atlas. Back teeth and the tongue's root are darker: the renderer
is unlit, and the mouth reads as a cavity only if its inside is darker.
"""

from __future__ import annotations

from functools import lru_cache

import numpy as np
import open3d as o3d

from ..head.model import EYE_BONES, MOUTH_INTERIOR, TEETH, HeadModel

# MediaPipe's refined irises: a centre, then four points on the iris rim, per eye.
IRIS_RINGS = ((468, (469, 470, 471, 472)), (473, (474, 475, 476, 477)))
DEFAULT_IRIS = np.array([95.0, 70.0, 50.0], np.float32)  # hazel-brown when no iris is seen
# Radii on the eyeball's front, as sines of the angle from its axis (MakeHuman's 16 mm
# eyeball: iris ~13 mm, pupil ~4 mm across).
IRIS_RADIUS, PUPIL_RADIUS, LIMBUS_WIDTH = 0.42, 0.14, 0.05
PUPIL = np.array([14.0, 11.0, 11.0], np.float32)
SCLERA = np.array([226.0, 220.0, 212.0], np.float32)
SCLERA_RIM = np.array([170.0, 150.0, 145.0], np.float32)  # toward the lids' shadow
ENAMEL = np.array([226.0, 218.0, 198.0], np.float32)
GUM = np.array([176.0, 86.0, 92.0], np.float32)
TONGUE = np.array([128.0, 56.0, 62.0], np.float32)
CAVITY = np.array([92.0, 38.0, 42.0], np.float32)
# Where the mouth's inside can be on the template (metres): skin here whose outward normal
# runs into the head's own surface is inside the mouth.
MOUTH_BOX = ((-0.045, -0.1, 0.0), (0.045, -0.045, 0.12))
CAVITY_RAY_M = 0.09
DEPTH_FALLOFF_M = 0.035  # this far behind the front teeth a surface is at its darkest
MOLAR_START_M = 0.006    # teeth further than this to the side sit deeper in the mouth,
MOLAR_FALLOFF_M = 0.008  # and this much further out are at their darkest
DARKEST = 0.3


def iris_colour(photo: np.ndarray, landmarks: np.ndarray) -> np.ndarray:
    """[3] float32 RGB: the median of both irises' ring between pupil and rim in `photo`
    [H, W, 3] (landmarks [478, 2|3] pixels), the brightest fifth (catchlights) and
    skin-bright pixels (a lid over the iris) left out."""
    h, w = photo.shape[:2]
    gy, gx = np.mgrid[0:h, 0:w]
    samples = []
    for centre, ring in IRIS_RINGS:
        c = landmarks[centre, :2]
        radius = np.linalg.norm(landmarks[list(ring), :2] - c, axis=1).mean()
        if radius < 2.0:  # too small to read
            continue
        y0, y1 = int(max(c[1] - radius, 0)), int(min(c[1] + radius + 1, h))
        x0, x1 = int(max(c[0] - radius, 0)), int(min(c[0] + radius + 1, w))
        r = np.hypot(gx[y0:y1, x0:x1] + 0.5 - c[0], gy[y0:y1, x0:x1] + 0.5 - c[1]) / radius
        samples.append(photo[y0:y1, x0:x1][(r > 0.45) & (r < 0.9)].astype(np.float32))
    if not samples or sum(len(s) for s in samples) < 8:
        return DEFAULT_IRIS.copy()
    pixels = np.concatenate(samples)
    luma = pixels @ np.array([0.299, 0.587, 0.114], np.float32)
    keep = luma <= np.quantile(luma, 0.8)
    return np.median(pixels[keep], 0).astype(np.float32)


def part_colours(head: HeadModel, points: np.ndarray, triangles: np.ndarray,
                 iris: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(mask [N] bool, colours [N, 3] float32) for texels on eyes, teeth, tongue and the
    mouth's inside.

    points [N, 3]: the texels' places on the neutral template; triangles [N]: theirs.
    """
    part = head.part_labels[head.faces[triangles, 0]]
    cavity = mouth_cavity(head)[head.faces[triangles]].all(1)
    colours = np.zeros((len(points), 3), np.float32)
    colours[cavity] = CAVITY * _depth_shade(points[cavity])[:, None]
    return (part != 0) | cavity, _paint_parts(head, part, points, triangles, iris, colours)


@lru_cache(maxsize=2)
def mouth_cavity(head: HeadModel) -> np.ndarray:
    """[V] bool: skin vertices inside the mouth (in MOUTH_BOX, facing the head's own surface)."""
    from ..mesh.geometry import vertex_normals

    lo, hi = (np.asarray(b) for b in MOUTH_BOX)
    v = head.template
    candidates = np.flatnonzero((head.part_labels == 0) & (v > lo).all(1) & (v < hi).all(1))
    skin_faces = head.faces[(head.part_labels[head.faces] == 0).all(1)]
    scene = o3d.t.geometry.RaycastingScene()
    scene.add_triangles(o3d.core.Tensor(v.astype(np.float32)), o3d.core.Tensor(skin_faces.astype(np.uint32)))
    normals = vertex_normals(v, head.faces)[candidates]
    origins = v[candidates] + 1e-4 * normals
    rays = np.concatenate([origins, normals], 1).astype(np.float32)
    t = scene.cast_rays(o3d.core.Tensor(rays))["t_hit"].numpy()
    with np.errstate(invalid="ignore"):
        hit = origins + np.where(np.isfinite(t), t, 0)[:, None] * normals
    # The far wall must be in the box too: the upper lip faces the nose's underside.
    inside = np.isfinite(t) & (t < CAVITY_RAY_M) & (hit > lo).all(1) & (hit < hi).all(1)
    out = np.zeros(len(v), bool)
    out[candidates[inside]] = True
    return out


def _depth_shade(points: np.ndarray) -> np.ndarray:
    """[N] 1 at the front teeth's depth, falling to DARKEST DEPTH_FALLOFF_M behind it."""
    front = MOUTH_BOX[1][2] - 0.02  # ~ the incisors on the template
    return np.clip(1 - (front - points[:, 2]) / DEPTH_FALLOFF_M * (1 - DARKEST), DARKEST, 1)


def _paint_parts(head, part, points, triangles, iris, colours) -> np.ndarray:
    """colours [N, 3] with the eyes, teeth and tongue painted in."""
    for eye, bone in EYE_BONES.items():
        sel = part == eye
        colours[sel] = _eye(head, bone, points[sel], iris)
    teeth, tongue = part == TEETH, part == MOUTH_INTERIOR
    colours[teeth] = _teeth(head, points[teeth], triangles[teeth])
    colours[tongue] = TONGUE * _depth_shade(points[tongue])[:, None]
    return colours


def _eye(head: HeadModel, bone: str, points: np.ndarray, iris: np.ndarray) -> np.ndarray:
    """[N, 3] iris / pupil / sclera for points [N, 3] on one eyeball."""
    b = head.bone_names.index(bone)
    centre, axis = head.bone_heads[b], head.bone_tails[b] - head.bone_heads[b]
    axis = axis / np.linalg.norm(axis)
    side = np.cross([0.0, 1.0, 0.0], axis)
    side /= np.linalg.norm(side)
    up = np.cross(axis, side)
    q = points - centre
    q /= np.linalg.norm(q, axis=1, keepdims=True)
    x, y = q @ side, q @ up
    rho = np.where(q @ axis > 0, np.hypot(x, y), 2.0)
    angle = np.arctan2(y, x)
    # Iris: radial fibres (a few incommensurate waves), lighter near the pupil, a dark
    # limbal ring at the rim.
    fibres = 1 + 0.12 * np.sin(angle * 23 + 3 * rho) * np.sin(angle * 7 - 11 * rho)
    radial = np.interp(rho, [PUPIL_RADIUS, 0.22, IRIS_RADIUS - LIMBUS_WIDTH, IRIS_RADIUS],
                       [1.25, 1.05, 0.85, 0.45])
    iris_px = np.clip(iris[None] * (fibres * radial)[:, None], 0, 255)
    sclera = SCLERA + (SCLERA_RIM - SCLERA) * np.clip((rho - 0.55) / 0.45, 0, 1)[:, None]
    t_pupil = np.clip((rho - PUPIL_RADIUS) / 0.02 + 0.5, 0, 1)[:, None]
    t_sclera = np.clip((rho - IRIS_RADIUS) / 0.02 + 0.5, 0, 1)[:, None]
    inner = PUPIL + (iris_px - PUPIL) * t_pupil
    return inner + (sclera - inner) * t_sclera


def _teeth(head: HeadModel, points: np.ndarray, triangles: np.ndarray) -> np.ndarray:
    """[N, 3] enamel with gums toward the roots (up for the upper row, down for the lower)."""
    lower = head.skin_indices[head.faces[triangles, 0], 0] == head.bone_names.index("jaw")
    out = np.zeros((len(points), 3), np.float32)
    for row, is_lower in ((lower, True), (~lower, False)):
        if not row.any():
            continue
        y = points[row, 1]
        edge, root = (y.max(), y.min()) if is_lower else (y.min(), y.max())
        depth = np.clip((y - edge) / (root - edge), 0, 1)  # 0 at the biting edge
        gum = np.clip((depth - 0.6) / 0.15, 0, 1)[:, None]
        # Teeth share UVs front and back (a projection across the mouth), so their shade
        # follows the arch: molars, further in, darker than incisors.
        back = np.clip((np.abs(points[row, 0]) - MOLAR_START_M) / MOLAR_FALLOFF_M, 0, 1)
        out[row] = (ENAMEL + (GUM - ENAMEL) * gum) * (1 - (1 - DARKEST) * back)[:, None]
    return out
