"""Volume path costs: `reference` vs `fast` sampler, and Portrait4D cached vs uncached.

1. Samplers on two fields, both 3 x 32 x R^2 planes + the EG3D decoder: `hull`, the
   closed-form visual hull of the head template (R = 128), and `trained`, a field fitted
   by gradient descent to multi-view renders of the textured head
   (`avatar_runtime.train.triplane_fit`, R = 64; trained on the first run, about two
   minutes, then cached in the temp directory). ms/frame and decoder samples/frame at
   64^2 and 128^2, PSNR between the two (premultiplied RGBA). The fast sampler's
   occupancy grid is built once per field (its cost is printed separately); `fast+band`
   (hull only) also uses the head mesh's depth (as a fitted avatar does) and includes
   the mesh render.
2. Portrait4D `tiny` and `small` (random weights: cost only): per-frame network time of
   the cached path (driving half) vs the uncached forward pass, and the paper preset's
   parameter count and FLOPs per frame (meta device, no memory needed).

    .venv/bin/python benchmarks/bench_volume.py [--frames 5] [--threads N] [--retrain]

Timings are medians (and minima: the least disturbed run on a shared machine).
"""

from __future__ import annotations

import argparse
import shutil
import statistics
import tempfile
import time
from functools import partial
from pathlib import Path

import numpy as np
import torch
from torch.utils.flop_counter import FlopCounterMode

from avatar_runtime.head.model import load_head_model
from avatar_runtime.reconstruct.portrait4d import MOTION_DIM, Portrait4D, preset
from avatar_runtime.render.camera import Camera
from avatar_runtime.render.mesh_renderer import MeshRenderer
from avatar_runtime.render.volume import FastSampler, OccupancyGrid, make_sampler, render_field
from avatar_runtime.render.volume.reference_fields import MeshShellField, hull_field
from avatar_runtime.train.triplane_fit import TriplaneFitConfig, fit_head_field

FIT_CACHE = Path(tempfile.gettempdir()) / "avatar_runtime_fits"


def timed(fn, frames: int) -> tuple[float, float, object]:
    """(median ms, min ms, last result) over `frames` calls after one warm-up."""
    result = fn()
    times = []
    for _ in range(frames):
        t0 = time.perf_counter()
        result = fn()
        times.append((time.perf_counter() - t0) * 1e3)
    return statistics.median(times), min(times), result


def psnr(a: torch.Tensor, b: torch.Tensor) -> float:
    pm = lambda x: torch.cat([x[..., :3] * x[..., 3:], x[..., 3:]], -1)  # noqa: E731
    return float(-10 * torch.log10(((pm(a) - pm(b)) ** 2).mean()))


def bench_samplers(frames: int) -> None:
    head = load_head_model()
    fit_config = TriplaneFitConfig()
    trained, report = fit_head_field(fit_config, head, cache_dir=FIT_CACHE)
    print(f"trained field: {report.steps} Adam steps ({fit_config.rays_per_step} rays each, "
          f"{fit_config.views} views at {fit_config.image_size}^2) in {report.seconds:.0f} s"
          f"{' (cached)' if report.cached else ''}; final loss {report.final_loss:.4f}, held-out "
          f"PSNR vs the mesh {report.heldout_psnr:.2f} dB")
    mesh = MeshRenderer(head.faces, head.face_uvs, np.zeros((4, 4, 3), np.uint8), aa_samples=0)
    for name, field in (("hull", hull_field(head.template, head.faces)), ("trained", trained)):
        t0 = time.perf_counter()
        fast = make_sampler("fast", field)
        build_ms = (time.perf_counter() - t0) * 1e3
        grid: OccupancyGrid = fast.grid
        print(f"\n{name} field, planes R = {field.planes.shape[-1]}; occupancy grid "
              f"{grid.resolution}^3 built once per field in {build_ms:.0f} ms "
              f"({grid.build_samples} decoder samples), {float(grid.mask.float().mean()):.1%} occupied")
        print(f"{'size':>5} {'sampler':>10} {'ms/frame':>9} {'min':>7} {'samples/frame':>14} "
              f"{'per px':>7} {'ratio':>6} {'PSNR dB':>8}")
        for res in (64, 128):
            cam = Camera.orbit(25, 10, width=res, height=res)
            runs = {"fast": partial(render_field, field, cam, fast)}
            if name == "hull":
                runs["fast+band"] = partial(_with_band, field, cam, fast, mesh, head.template)
            with torch.inference_mode():
                ref_ms, ref_min, ref = timed(partial(render_field, field, cam, make_sampler("reference")),
                                             max(1, frames // 2))
                _row(res, "reference", ref_ms, ref_min, ref, ref, res)
                for run, fn in runs.items():
                    ms, ms_min, out = timed(fn, frames)
                    _row(res, run, ms, ms_min, out, ref, res)


def _with_band(field, cam, sampler, mesh: MeshRenderer, vertices: np.ndarray):
    """The fitted-avatar path: mesh depth first, then the band-limited volume render."""
    return render_field(field, cam, sampler, mesh.render(vertices, cam).depth)


def _row(res, name, ms, ms_min, out, ref, size) -> None:
    ratio = ref.n_samples / max(out.n_samples, 1)
    # The hull field's surface is not the mesh's, so the band clips it: no PSNR there
    # (band quality is measured on a field whose surface is the mesh, below).
    quality = "" if out is ref or "band" in name else f"{psnr(ref.rgba, out.rgba):8.2f}"
    print(f"{res:>4}^2 {name:>10} {ms:9.1f} {ms_min:7.1f} {out.n_samples:14d} "
          f"{out.n_samples / size ** 2:7.2f} {ratio:6.1f} {quality}")


def band_quality() -> None:
    """Band sampling on a field whose surface is the (expressive) head mesh, 64^2."""
    head = load_head_model()
    verts = head.shape(expression=np.eye(52, dtype=np.float32)[24] * 0.8)  # jawOpen
    field = MeshShellField(verts, head.faces, edge=0.002)
    mesh = MeshRenderer(head.faces, head.face_uvs, np.zeros((4, 4, 3), np.uint8), aa_samples=0)
    cam = Camera.orbit(20, 5, width=64, height=64)
    with torch.no_grad():
        ref = render_field(field, cam, make_sampler("reference"))
        out = render_field(field, cam, FastSampler(), mesh.render(verts, cam).depth)
    print(f"band only (no grid) on a mesh-shell field, 64^2: {out.n_samples / 64 ** 2:.2f} samples/px, "
          f"{ref.n_samples / out.n_samples:.1f}x fewer than reference, PSNR {psnr(ref.rgba, out.rgba):.2f} dB")


def bench_portrait4d(frames: int) -> None:
    print("\nPortrait4D network time per frame (random weights; rendering excluded)")
    print(f"{'preset':>7} {'params':>9} {'uncached ms':>12} {'cached ms':>10} {'speed-up':>9}")
    for name in ("tiny", "small"):
        config = preset(name)
        model = Portrait4D(config).eval()
        s = config.encoder.image_size
        image, src, drv = torch.rand(1, 3, s, s), torch.rand(1, MOTION_DIM), torch.rand(1, MOTION_DIM)
        with torch.no_grad():
            cache = model.encode_source(image, src)
            full_ms, _, _ = timed(partial(model, image, src, drv), frames)
            cached_ms, _, _ = timed(partial(model.animate, cache, drv), frames)
        n = sum(p.numel() for p in model.parameters()) / 1e6
        print(f"{name:>7} {n:8.2f}M {full_ms:12.1f} {cached_ms:10.1f} {full_ms / cached_ms:8.1f}x")


def paper_frame_flops() -> dict[str, float]:
    """FLOPs (multiply-add = 2) of the paper preset, counted on the meta device: `source`
    (once per avatar), and per frame `animate` (driving half + plane decoder), `render`
    (volume decoder at 128^2 x 96 samples, EG3D's count) and `superres` (to 512^2)."""
    config = preset("paper")
    with torch.device("meta"):
        model = Portrait4D(config)
        image, motion = torch.empty(1, 3, 512, 512), torch.empty(1, MOTION_DIM)
        counter = FlopCounterMode(display=False)
        with counter:
            cache = model.encode_source(image, motion)
        source = counter.get_total_flops()
        with counter:
            planes = model.animate(cache, motion)
        animate = counter.get_total_flops()
        with counter:
            model.superres(torch.empty(1, config.planes.decoder.out_features, 128, 128))
        superres = counter.get_total_flops()
    del planes
    dec = config.planes.decoder
    per_sample = 2 * (dec.in_channels * dec.hidden + dec.hidden * (1 + dec.out_features))
    per_sample += 3 * dec.in_channels * 4 * 2  # three bilinear lookups
    return {"source": source, "animate": animate, "render": 96 * 128 * 128 * per_sample,
            "superres": superres, "parameters": sum(p.numel() for p in model.parameters())}


def paper_flops() -> None:
    f = paper_frame_flops()
    source, animate, render_ref, superres = f["source"], f["animate"], f["render"], f["superres"]
    print(f"\npaper preset: {f['parameters'] / 1e6:.1f}M parameters; FLOPs (multiply-add = 2): source encoding "
          f"{source / 1e9:.0f} G (once), per frame: driving half + plane decoder "
          f"{animate / 1e9:.0f} G, volume decoder at 128^2 x 96 samples {render_ref / 1e9:.1f} G, "
          f"super-resolution to 512^2 {superres / 1e9:.0f} G; "
          f"uncached frame {(source + animate + render_ref + superres) / 1e12:.2f} TFLOP, "
          f"cached frame {(animate + render_ref + superres) / 1e12:.2f} TFLOP")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--frames", type=int, default=5)
    parser.add_argument("--threads", type=int, help="torch intra-op threads (default: torch's)")
    parser.add_argument("--retrain", action="store_true", help="fit the trained field again")
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    if args.retrain:
        shutil.rmtree(FIT_CACHE, ignore_errors=True)
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads")
    bench_samplers(args.frames)
    band_quality()
    bench_portrait4d(args.frames)
    paper_flops()


if __name__ == "__main__":
    main()
