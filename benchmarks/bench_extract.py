"""Volume surface extraction: time, field evaluations, triangles and glb size at 128^3 and
256^3 on the head template's hull field (closed form, no weights).

    .venv/bin/python benchmarks/bench_extract.py
"""

from __future__ import annotations

import time

import torch

from avatar_runtime.head.model import load_head_model
from avatar_runtime.mesh.extract import extract_surface
from avatar_runtime.mesh.gltf_static import static_glb
from avatar_runtime.render.volume.reference_fields import hull_field


def main() -> None:
    head = load_head_model()
    field = hull_field(head.template, head.faces)
    print(f"torch threads: {torch.get_num_threads()}")
    print(f"{'grid':>6} {'time s':>7} {'coarse':>8} {'fine':>9} {'colour':>7} {'total':>9} "
          f"{'dense':>10} {'ratio':>6} {'raw tris':>9} {'tris':>6} {'glb KB':>7}")
    for resolution in (128, 256):
        extract_surface(field, resolution=resolution)  # warm-up (allocator, thread pools)
        start = time.perf_counter()
        surface = extract_surface(field, resolution=resolution)
        seconds = time.perf_counter() - start
        glb = static_glb(*surface)
        s = surface.stats
        print(f"{resolution:>5}^3 {seconds:7.2f} {s.coarse:8d} {s.fine:9d} {s.colour:7d} {s.total:9d} "
              f"{s.dense:10d} {s.total / s.dense:6.3f} {s.raw_triangles:9d} {len(surface.faces):6d} "
              f"{len(glb) / 1024:7.0f}")


if __name__ == "__main__":
    main()
