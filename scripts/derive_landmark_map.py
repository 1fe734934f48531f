"""Derive where MediaPipe's 478 face landmarks sit on the head template.

Render the neutral template (Lambert-shaded skin, dark eyes) from a 3x3 grid of views
around the front, detect the landmarks with MediaPipe, cast a ray through each detected
landmark onto the mesh, take the per-landmark median of the hit points across views
(robust to one bad detection) and snap it to the closest surface point. Writes
`avatar_runtime/data/mediapipe_landmarks.npz`: triangle ids [478] and barycentric
weights [478, 3], and prints the frontal reprojection error.

Then it measures how the detector's landmarks respond to each ARKit expression: the
template, wearing a photo texture baked from the bundled sample portrait, is rendered
frontally with one expression at full weight and detected; the landmarks' in-plane travel
from the neutral detection (pixels -> metres at the head's distance) replaces the surface
point's travel, which disagrees with the detector wherever a landmark slides over the
skin (a closing lid, a parting lip). Depth travel, invisible frontally, stays geometric.
Saved as `expression_response` [52, 478, 3]; the fitter and the motion solver use it.

Run: python scripts/derive_landmark_map.py
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import open3d as o3d

from avatar_runtime.faces.detector import NUM_LANDMARKS, shared_analyzer
from avatar_runtime.head.landmarks import LandmarkEmbedding
from avatar_runtime.head.model import EYE_LEFT, EYE_RIGHT, SKIN, load_head_model
from avatar_runtime.render.camera import Camera
from avatar_runtime.render.picking import backproject

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


def sample_texture(head, embedding: LandmarkEmbedding) -> np.ndarray:
    """A realistic UV texture: the bundled sample portrait baked by the `fit` reconstructor
    (fitted with the geometric embedding, so reruns of this script give the same data)."""
    from skimage import data

    from avatar_runtime.reconstruct.fit_reconstructor import FitReconstructor

    reconstructor = FitReconstructor(shared_analyzer(), head, embedding)
    return reconstructor.create(data.astronaut(), "sample").tensors["texture"]


def expression_response(head, analyzer, embedding: LandmarkEmbedding) -> np.ndarray:
    """[52, 478, 3] detected landmark travel per unit expression (see the module doc)."""
    from avatar_runtime.motion.arkit import ARKIT_NAMES
    from avatar_runtime.render.mesh_renderer import MeshRenderer

    geometric = embedding.basis(head, head.expression_basis)
    renderer = MeshRenderer(head.faces, head.face_uvs, sample_texture(head, embedding))
    cam = Camera.orbit(width=SIZE, height=SIZE)
    metres_per_px = np.linalg.norm(cam.position - head.template.mean(0)) / cam.focal_px
    grey = np.array([128, 128, 128], np.uint8)

    def detect(vertices):
        return analyzer.landmarks(renderer.render(vertices, cam, grey).rgba[..., :3]).landmarks[:, :2]

    neutral = detect(head.template)
    out = geometric.astype(np.float32).copy()
    for k, name in enumerate(ARKIT_NAMES):
        weights = np.zeros(len(ARKIT_NAMES), np.float32)
        weights[k] = 1.0
        travel = (detect(head.shape(expression=weights)) - neutral) * metres_per_px * (1.0, -1.0)
        # Trust the detector only where the expression moves the skin at all (elsewhere any
        # travel is the detector's cross-talk), and not where it jumps much further than
        # the skin moved (a detector failure).
        moved = np.linalg.norm(geometric[k], axis=1)
        ok = (moved > 0.05 * moved.max()) & (np.linalg.norm(travel, axis=1) < 1.5 * moved.max() + 1e-3)
        out[k, ok, :2] = travel[ok]
        print(f"  {name:20s} max travel {np.linalg.norm(out[k], axis=1).max() * 1000:5.1f} mm"
              f"{f', {(~ok).sum()} landmarks kept geometric' if (~ok).any() else ''}")
    return out


def main() -> None:
    head = load_head_model()
    scene = make_scene(head.template, head.faces)
    analyzer = shared_analyzer()
    points = []
    for yaw, pitch in VIEWS:
        cam = Camera.orbit(yaw, pitch, radius=1.05, width=SIZE, height=SIZE)
        landmarks = analyzer.landmarks(lambert_render(scene, head, cam)).landmarks
        points.append(backproject(head.template, head.faces, cam, landmarks[:, :2]))
    median = np.nanmedian(np.stack(points), axis=0)
    assert np.isfinite(median).all(), "some landmark was never on the surface"
    tri, u, v = snap(head, median)
    bary = np.stack([1 - u - v, u, v], 1).astype(np.float32)
    response = expression_response(head, analyzer, LandmarkEmbedding(tri, bary))
    np.savez_compressed(OUT, triangles=tri, barycentric=bary, expression_response=response)

    cam = Camera.orbit(0, 0, radius=1.05, width=SIZE, height=SIZE)
    detected = analyzer.landmarks(lambert_render(scene, head, cam)).landmarks[:, :2]
    placed = (head.template[head.faces[tri]] * bary[..., None]).sum(1)
    error = np.linalg.norm(cam.project(placed)[0] - detected, axis=1)
    print(f"wrote {OUT}: {NUM_LANDMARKS} landmarks; frontal reprojection error at {SIZE}px: "
          f"median {np.median(error):.2f} px, max {error.max():.2f} px")


if __name__ == "__main__":
    main()
