"""Runtime core figures on this machine: create time, render fps per size, solve time."""

from __future__ import annotations

import tempfile
import time

import numpy as np
from skimage import data

from avatar_runtime.faces.image import encode_png
from avatar_runtime.motion.clips import builtin_clip
from avatar_runtime.render.camera import Camera
from avatar_runtime.service import AvatarService


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
        service = AvatarService(root)
        service.analyzer.landmarks(data.astronaut())  # MediaPipe graph start-up is not per avatar
        start = time.perf_counter()
        avatar_id = service.create(png)["id"]
        print(f"create (fit, astronaut 512x512, first): {time.perf_counter() - start:.2f} s  (target <= 1.5 s)")
        service.store.delete(avatar_id)
        start = time.perf_counter()
        avatar_id = service.create(png)["id"]
        print(f"create (fit, warm caches):             {time.perf_counter() - start:.2f} s")

        clip = builtin_clip("demo")
        for size in (256, 512, 1024):
            camera = Camera.orbit(width=size, height=size)
            frames = iter(clip * 4)
            per = timed(lambda: service.render(avatar_id, next(frames), camera), 30)
            print(f"render {size}x{size}: {1 / per:6.1f} fps ({per * 1000:.1f} ms/frame, deform + render)")

        identity = service.avatar(avatar_id).tensors["identity"]
        image = data.astronaut()
        landmarks = service.analyzer.landmarks(image).landmarks
        detect = timed(lambda: service.analyzer.landmarks(image), 10)
        solve = timed(lambda: service.solver.solve_landmarks(landmarks, 512, 512, identity), 10)
        print(f"solve: landmarks {detect * 1000:.1f} ms + fit {solve * 1000:.1f} ms per frame")


if __name__ == "__main__":
    main()
