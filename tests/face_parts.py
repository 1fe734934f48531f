"""Which head part each pixel of a render shows, for eye and mouth measurements.

A label render casts one ray per pixel centre against the posed head (open3d) and reads
the part label of the triangle hit, so what it counts is what the mesh renderer shows.
"""

from __future__ import annotations

import numpy as np
import open3d as o3d

from avatar_runtime.head.model import HeadModel
from avatar_runtime.render.camera import Camera

MISS = -1


def face_image(head: HeadModel, vertices: np.ndarray, camera: Camera) -> np.ndarray:
    """[H, W] int index of the triangle nearest along each pixel's ray, MISS elsewhere."""
    scene = o3d.t.geometry.RaycastingScene()
    scene.add_triangles(o3d.core.Tensor(np.ascontiguousarray(vertices, np.float32)),
                        o3d.core.Tensor(head.faces.astype(np.uint32)))
    origins, dirs = camera.rays()
    rays = np.concatenate([origins, dirs], -1).astype(np.float32)
    hit = scene.cast_rays(o3d.core.Tensor(rays))["primitive_ids"].numpy().astype(np.int64)
    return np.where(hit >= len(head.faces), MISS, hit)


def part_image(head: HeadModel, vertices: np.ndarray, camera: Camera) -> np.ndarray:
    """[H, W] int part label (head.part_labels values) of the nearest hit, MISS elsewhere."""
    faces = face_image(head, vertices, camera)
    labels = head.part_labels[head.faces[np.maximum(faces, 0), 0]].astype(np.int64)
    return np.where(faces == MISS, MISS, labels)


def face_crop(image: np.ndarray, box=(150, 390, 136, 376)) -> np.ndarray:
    """The eyes-to-chin window of a 512^2 frontal render (rows y0:y1, cols x0:x1)."""
    y0, y1, x0, x1 = box
    return image[y0:y1, x0:x1]


def recentred(head: HeadModel, vertices: np.ndarray) -> np.ndarray:
    """vertices [V, 3] moved so that their eyes sit where the template's do: some identity
    directions move the whole head, and a fixed camera would frame it badly."""
    eyes = np.isin(head.part_labels, (1, 2))
    return vertices - (vertices[eyes].mean(0) - head.template[eyes].mean(0))
