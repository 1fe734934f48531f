"""Runtime core figures on this machine: create time, render fps per size, solve time.

Render figures are deform + render through the service. The mesh renderer's two
visibility modes (scan conversion, the default, and one ray per pixel) render the same
frames alternately, so load from other processes hits both alike.
"""

from __future__ import annotations

import os
import tempfile
import time

import numpy as np
from skimage import data

from avatar_runtime.faces.image import encode_png
from avatar_runtime.motion.clips import builtin_clip
from avatar_runtime.render.camera import Camera
from avatar_runtime.service import AvatarService


def render_side_by_side(service: AvatarService, avatar_id: str, clip, size: int,
                        repeats: int = 40) -> dict[str, list[float]]:
    """Seconds per service.render() for each visibility mode, frames alternating."""
    camera = Camera.orbit(width=size, height=size)
    renderer = service._rig(avatar_id).renderer
    modes = ("raster", "raycast")
    times: dict[str, list[float]] = {m: [] for m in modes}
    try:
        for i in range(repeats + 1):
            frame = clip[i % len(clip)]
            for mode in (modes if i % 2 == 0 else modes[::-1]):
                renderer.visibility = mode
                start = time.perf_counter()
                service.render(avatar_id, frame, camera)
                if i:  # the first round warms caches
                    times[mode].append(time.perf_counter() - start)
    finally:
        renderer.visibility = "raster"
    return times


def timed(fn, repeats: int) -> float:
    """Median seconds per call."""
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return float(np.median(times))


def main() -> None:
    png = encode_png(data.astronaut())
    with tempfile.TemporaryDirectory() as root:
        # The response measurement is timed on its own below, not left running under
        # the render figures.
        service = AvatarService(root, calibrate_after_create=False)
        service.analyzer.landmarks(data.astronaut())  # MediaPipe graph start-up is not per avatar
        start = time.perf_counter()
        avatar_id = service.create(png)["id"]
        print(f"create (fit, astronaut 512x512, first): {time.perf_counter() - start:.2f} s  (target <= 1.5 s)")
        service.store.delete(avatar_id)
        start = time.perf_counter()
        avatar_id = service.create(png)["id"]
        print(f"create (fit, warm caches):             {time.perf_counter() - start:.2f} s")

        clip = builtin_clip("demo")
        print(f"load average {os.getloadavg()[0]:.2f}")
        for size in (256, 512, 1024):
            times = render_side_by_side(service, avatar_id, clip, size)
            new, old = (float(np.median(times[m])) for m in ("raster", "raycast"))
            print(f"render {size}x{size}: {1 / new:6.1f} fps ({new * 1000:.1f} ms/frame, min "
                  f"{min(times['raster']) * 1000:.1f}, deform + render); one ray per pixel: "
                  f"{1 / old:5.1f} fps ({old * 1000:.1f} ms, min {min(times['raycast']) * 1000:.1f})"
                  f"; ratio {old / new:.2f}")

        start = time.perf_counter()
        response = service.calibration.get(avatar_id)
        print(f"expression response measured (once per avatar, in the background after create): "
              f"{time.perf_counter() - start:.1f} s")

        tensors = service.avatar(avatar_id).tensors
        image = data.astronaut()
        landmarks = service.analyzer.landmarks(image).landmarks
        detect = timed(lambda: service.analyzer.landmarks(image), 10)
        solve = timed(lambda: service.solver.solve_landmarks(
            landmarks, 512, 512, tensors["identity"], bias=tensors["landmark_bias"],
            response=response), 10)
        print(f"solve: landmarks {detect * 1000:.1f} ms + fit {solve * 1000:.1f} ms per frame")


if __name__ == "__main__":
    main()
