"""Where a solve's time goes, per stage, for the `landmarks` and `image` motion sources:
the solver's fast fit (`motion/expression_fit.py`) and the reference fit
(`LandmarkFitter.fit`) side by side in one run, on the same frames.

    .venv/bin/python benchmarks/bench_solve_speed.py [--frames N] [--repeats R]

Frames: the first real video of benchmarks/solver_material.py as 512 x 512 centre crops
(or, without it, the astronaut), solved with the astronaut's avatar. Stages:
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

from avatar_runtime.blas_threads import set_blas_threads  # noqa: E402
from avatar_runtime.faces.image import decode_image, encode_png  # noqa: E402
from avatar_runtime.motion.expression_fit import ExpressionFitter  # noqa: E402
from avatar_runtime.motion.solver import SOLVER_FOV_DEG, MotionSolver  # noqa: E402
from avatar_runtime.reconstruct.fit import photo_camera  # noqa: E402
from avatar_runtime.service import AvatarService, Smoothing, _neutral_of  # noqa: E402


def frames_to_solve(analyzer, count: int, side: int = 512) -> list[np.ndarray]:
    """`count` side x side frames: the first real video's, scaled to `side` on their short
    side and cropped around the face of the first frame (or the astronaut, when no video
    can be had); frames without a face are left out."""
    from skimage import data

    videos = [c for c in load_clips(with_variants=False) if c.fps]
    frames = videos[0].frames[:count] if videos else [data.astronaut()] * count
    h, w = frames[0].shape[:2]
    s = side / min(h, w)
    size = (max(side, round(w * s)), max(side, round(h * s)))
    scaled = [cv2.resize(rgb, size, interpolation=cv2.INTER_AREA) for rgb in frames]
    x0, y0, x1, y1 = analyzer.landmarks(scaled[0]).box
    x = int(np.clip((x0 + x1) / 2 - side / 2, 0, size[0] - side))
    y = int(np.clip((y0 + y1) / 2 - side / 2, 0, size[1] - side))
    crops = [np.ascontiguousarray(rgb[y:y + side, x:x + side]) for rgb in scaled]
    return [c for c in crops if analyzer.all_landmarks(c)]


def interleaved_ms(cases: dict, count: int, repeats: int) -> dict[str, float]:
    """{name: median ms} of cases[name](i) over frames i < count and `repeats` passes, the
    cases taking turns frame by frame so a busy machine slows them alike (one untimed
    warm-up call each)."""
    times = {name: [] for name in cases}
    for fn in cases.values():
        fn(0)
    for _ in range(repeats):
        for i in range(count):
            for name, fn in cases.items():
                start = time.perf_counter()
                fn(i)
                times[name].append(time.perf_counter() - start)
    return {name: float(np.median(t) * 1e3) for name, t in times.items()}


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
        # The same store and detector, solved with the reference fit.
        reference = AvatarService(root, analyzer=service.analyzer, calibrate_after_create=False)
        reference.solver = MotionSolver(service.analyzer, service.head, reference=True)
        fast = service.solver

        frames = frames_to_solve(service.analyzer, args.frames)
        pngs = [encode_png(f) for f in frames]
        jpegs = [cv2.imencode(".jpg", f[..., ::-1], [cv2.IMWRITE_JPEG_QUALITY, 90])[1].tobytes()
                 for f in frames]
        seen = [(service.analyzer.landmarks(f).landmarks, f.shape[1], f.shape[0]) for f in frames]
        camera = photo_camera(frames[0].shape[1], frames[0].shape[0], SOLVER_FOV_DEG)
        fits = {"reference": reference.solver.fitter.fit, "fast": ExpressionFitter(fast.fitter).fit}

        def fit(how, one_thread=True):
            def run(i):
                if one_thread:  # as the runtime runs it (set at import)
                    return fits[how](seen[i][0], camera, identity, None, bias, response)
                previous = set_blas_threads(os.cpu_count() or 1)  # as the solver ran before
                try:
                    return fits[how](seen[i][0], camera, identity, None, bias, response)
                finally:
                    set_blas_threads(previous or 1)
            return run

        fitted = [fit("fast")(i) for i in range(len(seen))]
        smoother = Smoothing(enabled=True).filter()  # as a Drive session smooths
        solved = [fast.solve_landmarks(*s, identity, bias=bias, response=response, neutral=neutral)[0]
                  for s in seen]
        shared = interleaved_ms({
            "decode PNG": lambda i: decode_image(pngs[i], service.limits.image),
            "decode JPEG": lambda i: decode_image(jpegs[i], service.limits.image),
            "detect (face mesh)": lambda i: service.analyzer.landmarks(frames[i]),
            "features + neutral": lambda i: neutral.apply(fast.observe(seen[i][0], fitted[i]),
                                                          fitted[i].expression),
            "One-Euro smoothing": lambda i: smoother(solved[i]),
        }, len(frames), args.repeats)
        paired = interleaved_ms({
            "fit reference": fit("reference"), "fit fast": fit("fast"),
            "fit reference, all threads": fit("reference", one_thread=False),
            "landmarks reference": lambda i: reference.solve_landmarks(avatar_id, *seen[i]),
            "landmarks fast": lambda i: service.solve_landmarks(avatar_id, *seen[i]),
            "image reference": lambda i: reference.solve_motion(pngs[i], avatar_id),
            "image fast": lambda i: service.solve_motion(pngs[i], avatar_id),
        }, len(frames), args.repeats)
        gaps = []
        for s in seen:
            a = reference.solve_landmarks(avatar_id, *s)
            b = service.solve_landmarks(avatar_id, *s)
            gaps.append((np.abs(a.arkit - b.arkit).max(), np.abs(a.head_rotation - b.head_rotation).max()))
        gaps = np.array(gaps)

    print(f"{len(frames)} frames {frames[0].shape[1]}x{frames[0].shape[0]}, {args.repeats} repeats, "
          f"load average {os.getloadavg()[0]:.2f}; median ms per frame")
    print(f"{'stage':36s} {'reference':>10s} {'fast':>10s} {'ratio':>7s}")
    for name, ms in shared.items():
        print(f"{name:36s} {ms:10.2f} {ms:10.2f} {1:7.2f}")
    rows = (("fit (pose + expression, 6 steps)", "fit reference", "fit fast", ""),
            ("  reference on all BLAS threads", "fit reference, all threads", "fit fast", ""),
            ("solve_landmarks (landmarks source)", "landmarks reference", "landmarks fast",
             "  (target <= 15 ms)"),
            ("solve_motion (image source, PNG)", "image reference", "image fast", "  (target <= 30 ms)"))
    for label, ref, new, note in rows:
        print(f"{label:36s} {paired[ref]:10.2f} {paired[new]:10.2f} {paired[ref] / paired[new]:7.2f}{note}")
    print(f"fast vs reference on these frames: max |ARKit difference| {gaps[:, 0].max():.2e}, "
          f"max |quaternion difference| {gaps[:, 1].max():.2e}")


if __name__ == "__main__":
    main()
