"""Where a solve's time goes, per stage, for the `landmarks` and `image` motion sources:
the solver's fast fit (`motion/expression_fit.py`) and the reference fit
(`LandmarkFitter.fit`) side by side in one run, on the same frames.

    .venv/bin/python benchmarks/bench_solve_speed.py [--frames N] [--repeats R]

Frames: the first real video of benchmarks/solver_material.py scaled to 512 px on its
long side (or, without it, the astronaut), solved with the astronaut's avatar. Stages:
decode (PNG and JPEG), detection (MediaPipe face mesh), fit, features + neutral, One-Euro
smoothing, and the whole `AvatarService.solve_landmarks` / `solve_motion` call. Also
prints how far the fast solve's answers are from the reference's.
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from pathlib import Path

import cv2
import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from solver_material import load_clips  # noqa: E402

from avatar_runtime.blas_threads import single_blas_thread  # noqa: E402
from avatar_runtime.faces.image import decode_image, encode_png, fit_within  # noqa: E402
from avatar_runtime.motion.expression_fit import ExpressionFitter  # noqa: E402
from avatar_runtime.motion.solver import SOLVER_FOV_DEG, MotionSolver  # noqa: E402
from avatar_runtime.reconstruct.fit import photo_camera  # noqa: E402
from avatar_runtime.service import AvatarService, Smoothing, _neutral_of  # noqa: E402


def frames_to_solve(count: int) -> list[np.ndarray]:
    from skimage import data

    videos = [c for c in load_clips(with_variants=False) if c.fps]
    frames = videos[0].frames[:count] if videos else [data.astronaut()] * count
    return [fit_within(f, 512) for f in frames]


def median_ms(fn, items, repeats: int) -> float:
    """Median over every item and repeat of fn(item), in ms (one untimed warm-up call)."""
    fn(items[0])
    times = []
    for _ in range(repeats):
        for item in items:
            start = time.perf_counter()
            fn(item)
            times.append(time.perf_counter() - start)
    return float(np.median(times) * 1e3)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--frames", type=int, default=30)
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()
    from skimage import data

    with tempfile.TemporaryDirectory() as root:
        service = AvatarService(root)
        avatar_id = service.create(encode_png(data.astronaut()), name="astronaut")["id"]
        response = service.calibration.get(avatar_id)
        tensors = service.avatar(avatar_id).tensors
        identity, bias, neutral = tensors["identity"], tensors["landmark_bias"], _neutral_of(tensors)
        frames = frames_to_solve(args.frames)
        pngs = [encode_png(f) for f in frames]
        jpegs = [cv2.imencode(".jpg", f[..., ::-1], [cv2.IMWRITE_JPEG_QUALITY, 90])[1].tobytes()
                 for f in frames]
        seen = [(service.analyzer.landmarks(f).landmarks, f.shape[1], f.shape[0]) for f in frames]
        reference = MotionSolver(service.analyzer, service.head, reference=True)
        fast = service.solver
        fits = {"reference": reference.fitter.fit, "fast": ExpressionFitter(fast.fitter).fit}

        def fit(how):
            def run(s):
                with single_blas_thread():  # as MotionSolver runs it
                    return fits[how](s[0], photo_camera(s[1], s[2], SOLVER_FOV_DEG), identity,
                                     None, bias, response)
            return run

        fitted = [fits["fast"](p, photo_camera(w, h, SOLVER_FOV_DEG), identity, None, bias, response)
                  for p, w, h in seen]
        smoother = Smoothing(enabled=True).filter()  # as a Drive session smooths
        solved = [fast.solve_landmarks(p, w, h, identity, bias=bias, response=response,
                                       neutral=neutral)[0] for p, w, h in seen]
        shared = {
            "decode PNG": median_ms(lambda b: decode_image(b, service.limits.image), pngs, args.repeats),
            "decode JPEG": median_ms(lambda b: decode_image(b, service.limits.image), jpegs, args.repeats),
            "detect (face mesh)": median_ms(service.analyzer.landmarks, frames, args.repeats),
            "features + neutral": median_ms(
                lambda i: neutral.apply(fast.observe(seen[i][0], fitted[i]), fitted[i].expression),
                list(range(len(seen))), args.repeats),
            "One-Euro smoothing": median_ms(smoother, solved, args.repeats),
        }
        per_fit = {how: median_ms(fit(how), seen, args.repeats) for how in fits}
        # As the solver ran before it kept to one BLAS thread.
        all_threads = median_ms(lambda s: fits["reference"](
            s[0], photo_camera(s[1], s[2], SOLVER_FOV_DEG), identity, None, bias, response),
            seen, args.repeats)

        def whole(solver, source):
            service.solver = solver
            if source == "landmarks":
                return median_ms(lambda s: service.solve_landmarks(avatar_id, *s), seen, args.repeats)
            return median_ms(lambda b: service.solve_motion(b, avatar_id), pngs, args.repeats)

        calls = {(how, source): whole(solver, source) for how, solver in (("reference", reference),
                                                                          ("fast", fast))
                 for source in ("landmarks", "image")}
        service.solver = fast
        gaps = []
        for p, w, h in seen:
            a = reference.solve_landmarks(p, w, h, identity, bias=bias, response=response, neutral=neutral)[0]
            b = fast.solve_landmarks(p, w, h, identity, bias=bias, response=response, neutral=neutral)[0]
            gaps.append((np.abs(a.arkit - b.arkit).max(), np.abs(a.head_rotation - b.head_rotation).max()))
        gaps = np.array(gaps)

    print(f"{len(frames)} frames {frames[0].shape[1]}x{frames[0].shape[0]}, {args.repeats} repeats, "
          f"load average {os.getloadavg()[0]:.2f}; median ms per frame")
    print(f"{'stage':34s} {'reference':>10s} {'fast':>10s} {'ratio':>7s}")
    for name, ms in shared.items():
        print(f"{name:34s} {ms:10.2f} {ms:10.2f} {1:7.2f}")
    print(f"{'fit (pose + expression, 6 steps)':34s} {per_fit['reference']:10.2f} {per_fit['fast']:10.2f} "
          f"{per_fit['reference'] / per_fit['fast']:7.2f}")
    print(f"{'  reference fit, BLAS on all cores':34s} {all_threads:10.2f} {per_fit['fast']:10.2f} "
          f"{all_threads / per_fit['fast']:7.2f}")
    for source, target in (("landmarks", 15), ("image", 30)):
        ref, new = calls["reference", source], calls["fast", source]
        label = f"solve_{'landmarks' if source == 'landmarks' else 'motion'} ({source}, PNG)"
        if source == "landmarks":
            label = "solve_landmarks (landmarks)"
        print(f"{label:34s} {ref:10.2f} {new:10.2f} {ref / new:7.2f}  (target <= {target} ms)")
    print(f"fast vs reference on these frames: max |ARKit difference| {gaps[:, 0].max():.2e}, "
          f"max |quaternion difference| {gaps[:, 1].max():.2e}")


if __name__ == "__main__":
    main()
