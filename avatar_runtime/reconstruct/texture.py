"""Bake a photo into the head's UV texture.

Visible texels take the photo's colour by projection, with a ray-cast depth test and a
grazing-angle falloff; hidden skin texels copy their left/right mirror twin; what is
still empty is filled by inpainting at low resolution (smooth skin/hair tones, no holes,
no dark seams), and the atlas is dilated across UV seams.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache

import cv2
import numpy as np
import open3d as o3d

from ..head.model import MOUTH_INTERIOR, HeadModel
from ..render.camera import Camera

MOUTH_TONE = np.array([70, 30, 35], np.float32)


@dataclass(frozen=True)
class TexelMap:
    """Which surface point each texel of a T x T atlas shows."""

    size: int
    texels: np.ndarray       # [N] flat indices of covered texels
    triangles: np.ndarray    # [N] triangle under each covered texel
    barycentric: np.ndarray  # [N, 3]
    twin: np.ndarray         # [N] index (into texels) of the mirror-image texel, -1 if none


@lru_cache(maxsize=2)
def texel_map(head: HeadModel, size: int) -> TexelMap:
    """Rasterise the UV layout by casting one orthographic ray per texel (open3d)."""
    uvs = head.face_uvs.reshape(-1, 2)
    flat = np.concatenate([uvs, np.zeros((len(uvs), 1))], 1).astype(np.float32)
    scene = o3d.t.geometry.RaycastingScene()
    scene.add_triangles(o3d.core.Tensor(flat),
                        o3d.core.Tensor(np.arange(len(uvs), dtype=np.uint32).reshape(-1, 3)))
    u = (np.arange(size) + 0.5) / size
    gu, gv = np.meshgrid(u, 1.0 - u)  # row 0 = top = v 1
    rays = np.zeros((size, size, 6), np.float32)
    rays[..., 0], rays[..., 1], rays[..., 2], rays[..., 5] = gu, gv, 1.0, -1.0
    hit = {k: v.numpy() for k, v in scene.cast_rays(o3d.core.Tensor(rays)).items()}
    covered = np.isfinite(hit["t_hit"]).ravel()
    texels = np.flatnonzero(covered)
    tri = hit["primitive_ids"].ravel()[texels].astype(np.int64)
    a, b = hit["primitive_uvs"].reshape(-1, 2)[texels].T
    bary = np.stack([1 - a - b, a, b], 1).astype(np.float32)
    return TexelMap(size, texels, tri, bary, _mirror_texels(head, size, texels, tri, bary))


def _mirror_texels(head, size, texels, tri, bary) -> np.ndarray:
    """For each covered texel, the covered texel at the mirror-image surface point."""
    lookup = {tuple(sorted(f)): i for i, f in enumerate(head.faces.tolist())}
    twin_face = np.full(len(head.faces), -1)
    order = np.zeros((len(head.faces), 3), np.int64)
    for i, f in enumerate(head.faces):
        m = head.mirror[f]
        j = lookup.get(tuple(sorted(m.tolist()))) if (m >= 0).all() else None
        if j is not None:
            twin_face[i] = j
            order[i] = [list(head.faces[j]).index(v) for v in m]
    ok = twin_face[tri] >= 0
    out = np.full(len(texels), -1)
    j = twin_face[tri[ok]]
    uv = np.zeros((ok.sum(), 2))
    for corner in range(3):  # corner k of tri maps to corner order[k] of its twin
        uv += bary[ok, corner, None] * head.face_uvs[j, order[tri[ok], corner]]
    col = np.clip((uv[:, 0] * size).astype(int), 0, size - 1)
    row = np.clip(((1 - uv[:, 1]) * size).astype(int), 0, size - 1)
    position = np.full(size * size, -1)
    position[texels] = np.arange(len(texels))
    out[ok] = position[row * size + col]
    return out


def bake_texture(head: HeadModel, vertices: np.ndarray, photo: np.ndarray, camera: Camera,
                 matte: np.ndarray | None = None, size: int = 1024) -> np.ndarray:
    """Project `photo` [H, W, 3] onto the head placed at `vertices` [V, 3] -> [size, size, 3] uint8."""
    tm = texel_map(head, size)
    corners = vertices[head.faces[tm.triangles]]                      # [N, 3, 3]
    points = (corners * tm.barycentric[..., None]).sum(1)
    normals = np.cross(corners[:, 1] - corners[:, 0], corners[:, 2] - corners[:, 0])
    normals /= np.linalg.norm(normals, axis=1, keepdims=True) + 1e-12
    pixels, _ = camera.project(points)
    weight = _visibility(head, vertices, points, normals, camera, pixels, matte)

    colours = np.zeros((len(points), 3), np.float32)
    seen = weight > 0
    colours[seen] = _sample(photo, pixels[seen])
    # Teeth and tongue the photo does not show get a dark mouth tone, not skin.
    interior = (head.part_labels[head.faces[tm.triangles, 0]] == MOUTH_INTERIOR) & (weight < 0.5)
    weight[interior], colours[interior] = 1.0, MOUTH_TONE

    # Hidden texels take their mirror twin's colour when the twin was seen.
    twin_ok = (tm.twin >= 0) & (weight < 0.5)
    twin_ok[twin_ok] = weight[tm.twin[twin_ok]] > 0.5
    colours[twin_ok] = colours[tm.twin[twin_ok]]
    weight[twin_ok] = np.maximum(weight[twin_ok], 0.9 * weight[tm.twin[twin_ok]])
    return _fill(tm, colours, weight)


def _visibility(head, vertices, points, normals, camera, pixels, matte) -> np.ndarray:
    """[N] blend weight in [0, 1]: facing the camera, unoccluded, inside the image and matte."""
    to_camera = camera.position - points
    dist = np.linalg.norm(to_camera, axis=1)
    facing = (normals * to_camera).sum(1) / dist
    scene = o3d.t.geometry.RaycastingScene()
    scene.add_triangles(o3d.core.Tensor(vertices.astype(np.float32)),
                        o3d.core.Tensor(head.faces.astype(np.uint32)))
    dirs = -to_camera / dist[:, None]
    rays = np.concatenate([np.broadcast_to(camera.position, dirs.shape), dirs], 1).astype(np.float32)
    t_hit = scene.cast_rays(o3d.core.Tensor(rays))["t_hit"].numpy()
    unoccluded = t_hit > dist - 2e-3
    h, w = camera.height, camera.width
    inside = (pixels[:, 0] >= 0) & (pixels[:, 0] < w - 1) & (pixels[:, 1] >= 0) & (pixels[:, 1] < h - 1)
    weight = np.clip((facing - 0.05) / 0.2, 0.0, 1.0) * unoccluded * inside
    if matte is not None:
        weight[inside] *= np.clip(_sample(matte[..., None], pixels[inside])[:, 0] * 2 - 0.5, 0, 1)
    return weight.astype(np.float32)


def _sample(image: np.ndarray, pixels: np.ndarray) -> np.ndarray:
    """Bilinear lookup of `image` [H, W, C] at pixel coords [N, 2] -> [N, C] float32."""
    n, width = len(pixels), 1024  # cv2.remap maps must stay under 32k rows
    xy = np.zeros((-(-n // width) * width, 2), np.float32)
    xy[:n] = pixels - 0.5  # pixel centres sit at +0.5
    grid = xy.reshape(-1, width, 2)
    out = cv2.remap(image.astype(np.float32), grid[..., 0], grid[..., 1], cv2.INTER_LINEAR,
                    borderMode=cv2.BORDER_REPLICATE)
    return out.reshape(-1, image.shape[2] if image.ndim == 3 else 1)[:n]


def _fill(tm: TexelMap, colours: np.ndarray, weight: np.ndarray) -> np.ndarray:
    """Blend seen colours over a smooth inpainted fill; dilate across UV seams."""
    size = tm.size
    atlas = np.zeros((size * size, 3), np.float32)
    alpha = np.zeros(size * size, np.float32)
    atlas[tm.texels], alpha[tm.texels] = colours, weight
    atlas, alpha = atlas.reshape(size, size, 3), alpha.reshape(size, size)
    small = 128
    known = cv2.resize(alpha, (small, small), interpolation=cv2.INTER_AREA)
    tint = cv2.resize(atlas * alpha[..., None], (small, small), interpolation=cv2.INTER_AREA)
    tint = tint / np.maximum(known[..., None], 1e-6)
    holes = (known < 0.3).astype(np.uint8)
    filled = cv2.inpaint(np.clip(tint, 0, 255).astype(np.uint8), holes, 5, cv2.INPAINT_TELEA)
    fill = cv2.GaussianBlur(cv2.resize(filled, (size, size), interpolation=cv2.INTER_CUBIC), (0, 0), 4)
    out = atlas * alpha[..., None] + fill.astype(np.float32) * (1 - alpha[..., None])
    return np.clip(out, 0, 255).astype(np.uint8)
