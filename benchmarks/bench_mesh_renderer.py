"""Milliseconds per frame of the mesh renderer at 256, 512 and 1024 px, scan conversion
("raster", the default) side by side with one ray per pixel ("raycast").

Scene: the head model (~4.5k vertices, ~9k triangles) deformed by the built-in demo clip,
with a 1024^2 texture, seen by the default `Camera.orbit()` (or, with --mesh sphere, a
0.1 m UV sphere of the same size that 'breathes'); the vertices change every frame. The
two visibility modes render the same frames alternately (which goes first alternates
too), so load from other processes hits both alike; the ratio is old / new.

    .venv/bin/python benchmarks/bench_mesh_renderer.py [--frames 40] [--mesh head|sphere]
    .venv/bin/python benchmarks/bench_mesh_renderer.py --layers [--frames 40] [--baseline REV]

--layers renders an avatar made from the astronaut photo as the service drives it (512^2,
default camera, 4 sub-pixel rays, glints, the demo clip, posing included) with its
layers head / head+hair / head+bust / all side by side, frame by frame in rotating order,
each set against the head alone; --baseline REV renders the same frames with the
renderer (raster.py, mesh_renderer.py) of an earlier revision too, interleaved, and
compares the images. Figures before and after the bust got cheaper (baseline c469519)
are in bench_mesh_renderer_layers.txt.

Timings are medians (and minima: the least disturbed frame on a shared machine), with
4 sub-pixel rays per edge pixel as the service renders. 'raster aa=8' and 'aa=0' show
what the anti-aliasing costs. The last column is the largest per-pixel difference of
the two modes' RGBA over the run (0-255): a few pixels may differ by one coverage level
where an edge passes within float rounding of a pixel centre, or by a few levels of
this noise texture where cv2.remap's 1/32-texel snapping falls differently.
"""

from __future__ import annotations

import argparse
import os
import statistics
import time

import numpy as np
import open3d as o3d

from avatar_runtime.render.camera import Camera
from avatar_runtime.render.mesh_renderer import MeshRenderer


def sphere_mesh(n_triangles: int = 9000):
    """UV sphere, radius 0.1 m, with about n_triangles -> (vertices, faces, face_uvs)."""
    resolution = round((1 + (1 + n_triangles) ** 0.5) / 2)  # 4 r (r - 1) triangles
    mesh = o3d.geometry.TriangleMesh.create_sphere(radius=0.1, resolution=resolution,
                                                   create_uv_map=True)
    faces = np.asarray(mesh.triangles)
    return np.asarray(mesh.vertices), faces, np.asarray(mesh.triangle_uvs).reshape(-1, 3, 2)


def sphere_frames(frames: int):
    """Per-frame vertex arrays of a 'breathing' sphere, faces and face uvs."""
    vertices, faces, face_uvs = sphere_mesh()
    return [vertices * (1.0 + 0.01 * np.sin(i)) for i in range(frames)], faces, face_uvs


def head_frames(frames: int):
    """Per-frame vertex arrays of the head driven by the demo clip, faces and face uvs."""
    from avatar_runtime.head.model import load_head_model
    from avatar_runtime.motion.clips import builtin_clip
    from avatar_runtime.motion.pose import quat_to_matrix

    head = load_head_model()
    clip = builtin_clip("demo")
    out = []
    for i in range(frames):
        motion = clip[i % len(clip)]
        shaped = head.shape(None, motion.arkit)
        out.append(head.pose(shaped, quat_to_matrix(motion.head_rotation), motion.head_translation))
    return out, head.faces, head.face_uvs


def render_ms(renderer: MeshRenderer, verts: np.ndarray, camera: Camera):
    """Wall-clock ms and CPU ms (all threads of this process) of one render, and the render."""
    t0, c0 = time.perf_counter(), time.process_time()
    out = renderer.render(verts, camera)
    return (time.perf_counter() - t0) * 1e3, (time.process_time() - c0) * 1e3, out


def bench_size(renderers: dict[str, MeshRenderer], frames: list[np.ndarray], size: int
               ) -> tuple[dict[str, list[float]], int]:
    """Per-frame wall-clock ms per renderer (alternating order), CPU ms of the two aa=4
    modes, and the largest RGBA difference between 'raster' and 'raycast'."""
    camera = Camera.orbit(width=size, height=size)
    for r in renderers.values():  # warm the ray cache, allocator and the visibility hint
        r.render(frames[0], camera)
    t: dict[str, list[float]] = {k: [] for k in [*renderers, "cpu raster", "cpu raycast"]}
    worst = 0
    names = list(renderers)
    for i, verts in enumerate(frames):
        outs = {}
        for name in (names if i % 2 == 0 else names[::-1]):
            ms, cpu, outs[name] = render_ms(renderers[name], verts, camera)
            t[name].append(ms)
            if f"cpu {name}" in t:
                t[f"cpu {name}"].append(cpu)
        diff = np.abs(outs["raster"].rgba.astype(np.int16) - outs["raycast"].rgba)
        worst = max(worst, int(diff.max()))
    return t, worst


def layer_meshes() -> dict:
    """The astronaut avatar's layer sets as AvatarMesh, made by the service."""
    import tempfile

    from skimage import data

    from avatar_runtime.faces.image import encode_png
    from avatar_runtime.head.bust import load_bust_model
    from avatar_runtime.head.hair import hair_shell
    from avatar_runtime.render.avatar_mesh import AvatarMesh
    from avatar_runtime.service import AvatarService

    service = AvatarService(tempfile.mkdtemp(), calibrate_after_create=False)
    t = service.avatar(service.create(encode_png(data.astronaut()), name="a")["id"]).tensors
    head, hair = service.head, hair_shell(service.head, t["hair_offset"])
    bust = dict(bust=load_bust_model(), bust_texture=t["bust_texture"], shoulders=t["shoulder_widths"])
    return {"head": AvatarMesh(head, t["identity"], t["texture"]),
            "head+hair": AvatarMesh(head, t["identity"], t["texture"], hair=hair),
            "head+bust": AvatarMesh(head, t["identity"], t["texture"], **bust),
            "all": AvatarMesh(head, t["identity"], t["texture"], hair=hair, **bust)}


def baseline_renderer(rev: str) -> type:
    """MeshRenderer as of git revision `rev`: its render/raster.py and mesh_renderer.py
    loaded as modules of their own (the rest of the runtime as checked out)."""
    import importlib
    import subprocess
    import sys
    import tempfile

    folder = tempfile.mkdtemp()
    for name in ("raster", "mesh_renderer"):
        source = subprocess.run(["git", "show", f"{rev}:avatar_runtime/render/{name}.py"],
                                capture_output=True, text=True, check=True,
                                cwd=os.path.dirname(os.path.abspath(__file__))).stdout
        source = source.replace("from avatar_runtime.render import raster",
                                "import baseline_raster as raster")
        with open(os.path.join(folder, f"baseline_{name}.py"), "w") as f:
            f.write(source)
    sys.path.insert(0, folder)
    return importlib.import_module("baseline_mesh_renderer").MeshRenderer


def bench_layers(frames: int, baseline: str | None) -> None:
    """Per layer set: ms per frame (mesh.vertices + render), median (min), against the head
    alone, and against the renderer at `baseline` when given."""
    from avatar_runtime.motion.clips import builtin_clip

    meshes = layer_meshes()
    clip = builtin_clip("demo")
    camera = Camera.orbit()
    paths = {"now": MeshRenderer}
    if baseline:
        paths[baseline] = baseline_renderer(baseline)
    renderers = {(n, p): make(m.faces, m.face_uvs, m.texture, aa_samples=4, glossy=m.glossy_faces)
                 for n, m in meshes.items() for p, make in paths.items()}
    covered, worst = {}, {n: 0 for n in meshes}
    for (n, p), r in renderers.items():  # warm up
        covered[n] = int((r.render(meshes[n].vertices(clip[0]), camera).rgba[..., 3] > 0).sum())
    t: dict[tuple[str, str], list[float]] = {k: [] for k in renderers}
    keys = list(renderers)
    for i in range(frames):
        motion = clip[i % len(clip)]
        rgba = {}
        for k in keys[i % len(keys):] + keys[:i % len(keys)]:  # rotating order
            t0 = time.perf_counter()
            rgba[k] = renderers[k].render(meshes[k[0]].vertices(motion), camera).rgba
            t[k].append((time.perf_counter() - t0) * 1e3)
        if baseline:
            for n in meshes:
                diff = np.abs(rgba[n, "now"].astype(np.int16) - rgba[n, baseline]).max()
                worst[n] = max(worst[n], int(diff))
    print(f"astronaut avatar, 512^2, {frames} frames; {os.cpu_count()} CPUs; load average "
          f"{os.getloadavg()[0]:.2f}")
    print("ms/frame median (min); / head = against the head alone on the same renderer"
          + (f"; speed-up = {baseline} / now; max RGBA diff between the two" if baseline else ""))
    print(f"{'layers':>9} | triangles | covered px | "
          + " | ".join(f"{p:>14} | {'/ head':>11}" for p in paths)
          + (" | speed-up (min) | max RGBA diff" if baseline else "") + " | fps now")
    for n in meshes:
        row = f"{n:>9} | {len(meshes[n].faces):9d} | {covered[n]:10d} | "
        for p in paths:
            mine, head = t[n, p], t["head", p]
            row += (f"{fmt(mine)} | {statistics.median(mine) / statistics.median(head):4.2f} "
                    f"({min(mine) / min(head):4.2f}) | ")
        if baseline:
            old, new = t[n, baseline], t[n, "now"]
            row += (f"{statistics.median(old) / statistics.median(new):5.2f} ({min(old) / min(new):4.2f})"
                    f"   | {worst[n]:13d} | ")
        print(row + f"{1e3 / statistics.median(t[n, 'now']):6.1f}")
    print(f"load average at the end {os.getloadavg()[0]:.2f}")


def fmt(samples: list[float]) -> str:
    return f"{statistics.median(samples):6.1f} ({min(samples):5.1f})"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--frames", type=int, default=40)
    parser.add_argument("--mesh", choices=("head", "sphere"), default="head")
    parser.add_argument("--layers", action="store_true",
                        help="an avatar's head / hair / bust layers side by side")
    parser.add_argument("--baseline", metavar="REV",
                        help="with --layers: also the renderer at git revision REV, same frames")
    args = parser.parse_args()
    if args.layers:
        bench_layers(args.frames, args.baseline)
        return

    make = head_frames if args.mesh == "head" else sphere_frames
    all_frames, faces, face_uvs = make(args.frames)
    rng = np.random.default_rng(0)
    texture = rng.integers(0, 256, (1024, 1024, 3), dtype=np.uint8)
    print(f"mesh: {args.mesh}, {len(all_frames[0])} vertices, {len(faces)} triangles; open3d "
          f"{o3d.__version__}; {os.cpu_count()} CPUs; load average {os.getloadavg()[0]:.2f}")
    print("ms/frame, median (min); ratio = raycast / raster (median, min); cpu = process CPU "
          "ms/frame, all threads (open3d's workers spin while casting), median")
    renderers = {
        "raster": MeshRenderer(faces, face_uvs, texture, aa_samples=4),
        "raycast": MeshRenderer(faces, face_uvs, texture, aa_samples=4, visibility="raycast"),
        "raster aa=8": MeshRenderer(faces, face_uvs, texture, aa_samples=8),
        "raster aa=0": MeshRenderer(faces, face_uvs, texture, aa_samples=0),
    }
    titles = ("raster aa=4", "raycast aa=4", "raster aa=8", "raster aa=0")
    print(f"{'size':>5} | " + " | ".join(f"{t:>14}" for t in titles)
          + " |  ratio (min) | fps raster / raycast | cpu raster / raycast | max RGBA diff")
    for size in (256, 512, 1024):
        frames = all_frames if size < 1024 else all_frames[:max(len(all_frames) // 3, 5)]
        t, worst = bench_size(renderers, frames, size)
        new, old = statistics.median(t["raster"]), statistics.median(t["raycast"])
        ratio_min = min(t["raycast"]) / min(t["raster"])
        print(f"{size:>5} | " + " | ".join(fmt(t[k]) for k in renderers)
              + f" | {old / new:5.2f} ({ratio_min:4.2f}) | {1e3 / new:6.1f} / {1e3 / old:6.1f}"
              f"       | {statistics.median(t['cpu raster']):6.1f} / "
              f"{statistics.median(t['cpu raycast']):6.1f}      | {worst:3d}")
    print(f"load average at the end {os.getloadavg()[0]:.2f}")


if __name__ == "__main__":
    main()
