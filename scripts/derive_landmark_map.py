"""Derive where MediaPipe's 478 face landmarks sit on the head template.

Render the neutral template (Lambert-shaded skin, dark eyes) from a 3x3 grid of views
around the front, detect the landmarks with MediaPipe, cast a ray through each detected
landmark onto the mesh, take the per-landmark median of the hit points across views
(robust to one bad detection) and snap it to the closest surface point. Writes
`avatar_runtime/data/mediapipe_landmarks.npz`: triangle ids [478] and barycentric
weights [478, 3], and prints the frontal reprojection error.

Run: python scripts/derive_landmark_map.py
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import open3d as o3d

from avatar_runtime.faces.detector import NUM_LANDMARKS, shared_analyzer
from avatar_runtime.head.model import EYE_LEFT, EYE_RIGHT, SKIN, load_head_model
from avatar_runtime.render.camera import Camera

OUT = Path(__file__).resolve().parents[1] / "avatar_runtime" / "data" / "mediapipe_landmarks.npz"
VIEWS = [(yaw, pitch) for yaw in (-15, 0, 15) for pitch in (-8, 0, 8)]
SIZE = 512


def make_scene(vertices, faces):
    scene = o3d.t.geometry.RaycastingScene()
    scene.add_triangles(o3d.core.Tensor(vertices.astype(np.float32)),
                        o3d.core.Tensor(faces.astype(np.uint32)))
    return scene


def cast(scene, origins, dirs):
    rays = np.concatenate([origins, dirs], -1).astype(np.float32)
    return {k: v.numpy() for k, v in scene.cast_rays(o3d.core.Tensor(rays)).items()}


def lambert_render(scene, head, cam: Camera) -> np.ndarray:
    origins, dirs = cam.rays()
    hits = cast(scene, origins, dirs)
    hit = np.isfinite(hits["t_hit"])
    lambert = np.clip(-(hits["primitive_normals"] * dirs).sum(-1), 0, 1)[..., None]
    part = head.part_labels[head.faces[np.where(hit, hits["primitive_ids"], 0), 0]]
    colour = np.where(np.isin(part, (EYE_LEFT, EYE_RIGHT))[..., None], (60, 50, 45), (215, 170, 150))
    image = colour * (0.25 + 0.75 * lambert)
    image = np.where(hit[..., None], image, (120, 140, 160))
    return image.astype(np.uint8)


def backproject(scene, cam: Camera, pixels: np.ndarray) -> np.ndarray:
    """[N, 2] pixels -> [N, 3] surface points (NaN where the ray misses)."""
    f = cam.focal_px
    d_cam = np.stack([(pixels[:, 0] - cam.width / 2) / f, -(pixels[:, 1] - cam.height / 2) / f,
                      -np.ones(len(pixels))], 1)
    dirs = d_cam @ cam.c2w[:3, :3].T
    dirs /= np.linalg.norm(dirs, axis=1, keepdims=True)
    hits = cast(scene, np.broadcast_to(cam.position, dirs.shape), dirs)
    t = np.where(np.isfinite(hits["t_hit"]), hits["t_hit"], np.nan)
    return cam.position + dirs * t[:, None]


def snap(head, points: np.ndarray):
    """Closest surface point per landmark: irises on the eyeballs, all others on the skin.

    Eyelid and inner-lip landmarks are often first hit on the eyeball or the teeth behind
    them, but they describe the lid and lip margins, which are skin that moves with blinks
    and jaw motion; the eyeballs do not.
    """
    tri = np.zeros(len(points), np.int32)
    u = np.zeros(len(points))
    v = np.zeros(len(points))
    face_part = head.part_labels[head.faces[:, 0]]
    for parts, which in (((SKIN,), np.arange(468)), ((EYE_LEFT, EYE_RIGHT), np.arange(468, 478))):
        keep = np.flatnonzero(np.isin(face_part, parts))
        closest = make_scene(head.template, head.faces[keep]).compute_closest_points(
            o3d.core.Tensor(points[which].astype(np.float32)))
        tri[which] = keep[closest["primitive_ids"].numpy()]
        u[which], v[which] = closest["primitive_uvs"].numpy().T
    return tri, u, v


def main() -> None:
    head = load_head_model()
    scene = make_scene(head.template, head.faces)
    analyzer = shared_analyzer()
    points = []
    for yaw, pitch in VIEWS:
        cam = Camera.orbit(yaw, pitch, radius=1.05, width=SIZE, height=SIZE)
        landmarks = analyzer.landmarks(lambert_render(scene, head, cam)).landmarks
        points.append(backproject(scene, cam, landmarks[:, :2]))
    median = np.nanmedian(np.stack(points), axis=0)
    assert np.isfinite(median).all(), "some landmark was never on the surface"
    tri, u, v = snap(head, median)
    bary = np.stack([1 - u - v, u, v], 1).astype(np.float32)
    np.savez_compressed(OUT, triangles=tri, barycentric=bary)

    cam = Camera.orbit(0, 0, radius=1.05, width=SIZE, height=SIZE)
    detected = analyzer.landmarks(lambert_render(scene, head, cam)).landmarks[:, :2]
    placed = (head.template[head.faces[tri]] * bary[..., None]).sum(1)
    error = np.linalg.norm(cam.project(placed)[0] - detected, axis=1)
    print(f"wrote {OUT}: {NUM_LANDMARKS} landmarks; frontal reprojection error at {SIZE}px: "
          f"median {np.median(error):.2f} px, max {error.max():.2f} px")


if __name__ == "__main__":
    main()
