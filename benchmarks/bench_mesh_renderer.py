"""Milliseconds per frame of the mesh renderer at 256, 512 and 1024 px.

Scene: a 0.1 m UV sphere of ~9k triangles (the head mesh's size) at the origin, a
1024^2 texture, the default `Camera.orbit()`; the vertices change every frame, so every
frame pays the scene (BVH) build. Besides the end-to-end time it reports the open3d
parts measured on their own (scene build, primary cast over the same window of rays) and
the remainder (texturing, normals, edge detection, sub-pixel rays, assembly).

    .venv/bin/python benchmarks/bench_mesh_renderer.py [--frames 40]

Timings are medians (and minima: the least disturbed frame on a shared machine). 'cores'
is process CPU time / wall time of the aa=8 renders: open3d's TBB workers spin while the
casts run, so it is ~2 when both cores were ours and ~1 when other processes held one,
in which case the cast figures are up to twice what an idle machine gives.
"""

from __future__ import annotations

import argparse
import os
import statistics
import time

import numpy as np
import open3d as o3d

from avatar_runtime.render.camera import Camera
from avatar_runtime.render.mesh_renderer import MeshRenderer, _RAY_CACHE, _screen_window

COLUMNS = ("aa8", "aa4", "aa0", "build", "cast", "rest", "cores")


def sphere_mesh(n_triangles: int = 9000):
    """UV sphere, radius 0.1 m, with about n_triangles -> (vertices, faces, face_uvs)."""
    resolution = round((1 + (1 + n_triangles) ** 0.5) / 2)  # 4 r (r - 1) triangles
    mesh = o3d.geometry.TriangleMesh.create_sphere(radius=0.1, resolution=resolution,
                                                   create_uv_map=True)
    faces = np.asarray(mesh.triangles)
    return np.asarray(mesh.vertices), faces, np.asarray(mesh.triangle_uvs).reshape(-1, 3, 2)


def animated(vertices: np.ndarray, frames: int) -> list[np.ndarray]:
    """Per-frame vertex arrays: a small 'breathing' scale so each frame is a new mesh."""
    return [vertices * (1.0 + 0.01 * np.sin(i)) for i in range(frames)]


def open3d_parts(verts: np.ndarray, faces_t: o3d.core.Tensor, camera: Camera
                 ) -> tuple[float, float]:
    """Scene build (+ BVH commit) and primary cast in ms, done as the renderer does them."""
    verts = np.ascontiguousarray(verts, np.float32)
    t0 = time.perf_counter()
    scene = o3d.t.geometry.RaycastingScene()
    scene.add_triangles(o3d.core.Tensor.from_numpy(verts), faces_t)
    scene.cast_rays(o3d.core.Tensor(np.array([[0, 0, 5, 0, 0, 1]], np.float32)))  # lazy BVH
    t1 = time.perf_counter()
    y0, y1, x0, x1 = _screen_window(verts, camera)
    rays = np.ascontiguousarray(_RAY_CACHE.world(camera)[y0:y1, x0:x1])
    scene.cast_rays(o3d.core.Tensor.from_numpy(rays))
    t2 = time.perf_counter()
    return (t1 - t0) * 1e3, (t2 - t1) * 1e3


def render_ms(renderer: MeshRenderer, verts: np.ndarray, camera: Camera) -> tuple[float, float]:
    """Wall-clock and CPU (all threads of this process) ms of one render."""
    t0, c0 = time.perf_counter(), time.process_time()
    renderer.render(verts, camera)
    return (time.perf_counter() - t0) * 1e3, (time.process_time() - c0) * 1e3


def bench_size(renderers: dict[int, MeshRenderer], faces: np.ndarray, frames, size: int
               ) -> dict[str, list[float]]:
    """Per-frame timings; all measurements of a frame are taken back to back, so that
    load from other processes hits them alike and the 'rest' split stays meaningful."""
    camera = Camera.orbit(width=size, height=size)
    faces_t = o3d.core.Tensor.from_numpy(np.ascontiguousarray(faces, np.uint32))
    for r in renderers.values():  # warm the ray cache and allocator
        r.render(frames[0], camera)
    t: dict[str, list[float]] = {k: [] for k in COLUMNS}
    for verts in frames:
        build, cast = open3d_parts(verts, faces_t, camera)
        for n, r in renderers.items():
            wall, cpu = render_ms(r, verts, camera)
            t[f"aa{n}"].append(wall)
            if n == 8:
                t["cores"].append(cpu / wall)
        t["build"].append(build)
        t["cast"].append(cast)
        t["rest"].append(t["aa8"][-1] - build - cast)
    return t


def fmt(samples: list[float], with_min: bool = True) -> str:
    low = f"({min(samples):5.1f})" if with_min else "       "
    return f"{statistics.median(samples):6.1f} {low}"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--frames", type=int, default=40)
    args = parser.parse_args()

    vertices, faces, face_uvs = sphere_mesh()
    rng = np.random.default_rng(0)
    texture = rng.integers(0, 256, (1024, 1024, 3), dtype=np.uint8)
    print(f"mesh: {len(vertices)} vertices, {len(faces)} triangles; open3d {o3d.__version__}; "
          f"{os.cpu_count()} CPUs; load average {os.getloadavg()[0]:.2f}")
    print("ms/frame, median (min); 'rest' is the median of per-frame total - build - cast")
    titles = ("total aa=8", "total aa=4", "total aa=0", "scene build", "primary cast",
              "rest (aa=8)", "cores")
    print(f"{'size':>5} | " + " | ".join(f"{t:>14}" for t in titles) + " | fps (aa=8)")
    renderers = {n: MeshRenderer(faces, face_uvs, texture, aa_samples=n) for n in (8, 4, 0)}
    for size in (256, 512, 1024):
        frames = animated(vertices, args.frames if size < 1024 else max(args.frames // 3, 5))
        t = bench_size(renderers, faces, frames, size)
        fps = 1e3 / statistics.median(t["aa8"])
        print(f"{size:>5} | " + " | ".join(fmt(t[k], k not in ("rest", "cores")) for k in COLUMNS)
              + f" | {fps:5.1f}")


if __name__ == "__main__":
    main()
