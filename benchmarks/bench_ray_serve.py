"""The Ray Serve deployment: drive sessions x replicas -> total frames/s and latency.

Per replica count, starts a local Ray cluster (2 CPUs, replicas of 0.5 CPU), the ZeroMQ
front end over the deployment (as `serve --ray` runs it), one avatar per session (same photo,
another name: sessions drive different avatars, as users do; affinity routing keeps each
avatar on one replica), and drives every session at once with one frame in flight (RAW
RGBA at --size). Prints per (replicas, sessions): total frames/s, frame latency (sent ->
received) p50 / p99, render_ms p50 (the front end's call to the replica, render included),
and the CPU this process (front end +
clients + Ray driver) spends per frame; then the scaling ratio 1 -> 2 replicas and an
estimate of streams per GPU for the mesh and the volume paths from measured per-frame costs.
With two replicas it also runs "spread" routing (no avatar id on the calls: Serve's
power-of-two choice alone) beside the deployment's avatar-affinity routing.

    .venv/bin/python benchmarks/bench_ray_serve.py [--frames 40] [--sessions 1,2,4] [--size 512]

On a 2-core machine two replicas share the same two cores, so the ratio says what the
deployment costs rather than what a second machine would add.
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import threading
import time
from pathlib import Path

import numpy as np
from skimage import data

from avatar_runtime.faces.image import encode_png
from avatar_runtime.motion.frame import MotionFrame
from avatar_runtime.render.camera import Camera

sys.path.insert(0, str(Path(__file__).resolve().parent))
STREAM_FPS = 30.0
# Assumptions of the per-GPU estimate (no GPU here): an A10G-class card (24 GB) on a node
# with 8 vCPUs per GPU; fp16 tensor throughput sustained at 30% of its 125 TFLOP/s peak.
NODE_VCPUS_PER_GPU = 8
GPU_SUSTAINED_TFLOPS = 0.30 * 125.0


def motions(n: int, sent: dict[int, float] | None = None, offset: int = 0):
    for i in range(offset, offset + n):
        arkit = np.zeros(52, np.float32)
        arkit[17] = 0.5 + 0.5 * np.sin(i / 4)
        if sent is not None:
            sent[i] = time.perf_counter()  # taken when the window lets the frame go
        yield MotionFrame(arkit, sequence=i, timecode=i / 30)


def in_process_ms(png: bytes, camera: Camera, frames: int) -> float:
    """p50 of AvatarService.render in this process (no deployment, no transport)."""
    from avatar_runtime.service import AvatarService

    with tempfile.TemporaryDirectory() as tmp:
        service = AvatarService(tmp, calibrate_after_create=False)
        avatar_id = service.create(png)["id"]
        service.render(avatar_id, None, camera)
        times = []
        for frame in motions(frames):
            t0 = time.perf_counter()
            service.render(avatar_id, frame, camera)
            times.append((time.perf_counter() - t0) * 1e3)
        return float(np.median(times))


def drive_sessions(address: str, avatar_ids: list[str], camera: Camera, frames: int) -> dict:
    """Every session drives its own avatar at once (window 1); totals and latencies."""
    from engine_bridge.client import connect

    latencies: list[float] = []
    render_ms: list[float] = []
    delivered = [0]
    lock = threading.Lock()
    start = threading.Barrier(len(avatar_ids) + 1)

    def session(avatar_id: str) -> None:
        sent: dict[int, float] = {}
        previous = 0.0
        with connect(address) as client:
            start.wait()
            for out in client.drive(avatar_id, motions(frames, sent), camera, window=1, timeout=120):
                now = time.perf_counter()
                # A frame leaves once it was pulled and the one before came back (window 1).
                left, previous = max(sent[out.sequence], previous), now
                with lock:
                    latencies.append((now - left) * 1e3)
                    render_ms.append(out.render_ms)
                    delivered[0] += 1

    threads = [threading.Thread(target=session, args=(a,), daemon=True) for a in avatar_ids]
    for thread in threads:
        thread.start()
    start.wait()
    t0, cpu0 = time.perf_counter(), time.process_time()
    for thread in threads:
        thread.join(300)
    wall, cpu = time.perf_counter() - t0, time.process_time() - cpu0
    return {"fps": delivered[0] / wall, "p50": float(np.percentile(latencies, 50)),
            "p99": float(np.percentile(latencies, 99)), "render": float(np.median(render_ms)),
            "cpu_ms": cpu * 1e3 / max(delivered[0], 1), "frames": delivered[0]}


def spread(service):
    """The same proxy with Serve's power-of-two choice alone: calls carry no avatar id, so
    any replica takes any frame (each builds every avatar's renderer on first use)."""
    from engine_bridge.ray_serve import ServeAvatarService

    class Spread(ServeAvatarService):
        def _call(self, avatar_id, method, *args, **kwargs):
            return super()._call(None, method, *args, **kwargs)

    return Spread(service.handle, service.limits)


def bench_replicas(replicas: int, store: Path, png: bytes, sessions: list[int], camera: Camera,
                   frames: int) -> dict[tuple[str, int], dict]:
    """{(routing, sessions): figures}; routing "affinity" (the deployment's), and with more
    than one replica also "spread" for comparison."""
    from engine_bridge import zmq_server
    from engine_bridge.client import connect
    from engine_bridge.handlers import RuntimeHandlers
    from engine_bridge.ray_serve import RayDeployment, ServeSettings

    settings = ServeSettings(store, replicas=replicas, replica_cpus=0.5, calibrate_after_create=False)
    deployment = RayDeployment(settings, num_cpus=2, log_to_driver=False)
    results = {}
    try:
        variants = {"affinity": deployment.service}
        if replicas > 1:
            variants["spread"] = spread(deployment.service)
        for routing, service in variants.items():
            server, endpoint = zmq_server.create_server(RuntimeHandlers(service), "tcp://127.0.0.1:0")
            server.start()
            try:
                with connect(endpoint) as client:  # one avatar per session; stored once, reused
                    avatar_ids = [client.create_avatar(png, name=f"bench-{i}")["id"]
                                  for i in range(max(sessions))]
                for count in sessions:
                    drive_sessions(endpoint, avatar_ids[:count], camera, 5)  # replicas load the avatars
                    results[routing, count] = drive_sessions(endpoint, avatar_ids[:count], camera, frames)
                    results[routing, count]["retried"] = service.calls_retried
            finally:
                server.stop(grace=2.0)
        return results
    finally:
        deployment.close()


def volume_estimate() -> str:
    """Streams per GPU of the learned path, from the paper preset's FLOPs per cached frame."""
    from bench_volume import paper_frame_flops

    f = paper_frame_flops()
    frame_tflop = (f["animate"] + f["superres"] + f["render"] / 10) / 1e12  # fast sampler: >= 10x fewer
    fps = GPU_SUSTAINED_TFLOPS / frame_tflop
    return (f"volume path (portrait4d, paper preset): {frame_tflop:.2f} TFLOP per cached frame (counted: "
            f"driving half + plane decoder {f['animate'] / 1e9:.0f} G, "
            f"super-resolution {f['superres'] / 1e9:.0f} G, "
            f"volume decoder {f['render'] / 10 / 1e9:.1f} G at a tenth of EG3D's 96 samples/ray) -> "
            f"{fps:.0f} frames/s at {GPU_SUSTAINED_TFLOPS:.1f} TFLOP/s sustained = "
            f"{fps / STREAM_FPS:.1f} streams of {STREAM_FPS:.0f} fps per GPU")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--frames", type=int, default=40, help="frames per session per run")
    parser.add_argument("--sessions", default="1,2,4", help="session counts, comma-separated")
    parser.add_argument("--replicas", default="1,2", help="replica counts, comma-separated")
    parser.add_argument("--size", type=int, default=512)
    args = parser.parse_args()
    sessions = [int(s) for s in args.sessions.split(",")]
    replica_counts = [int(r) for r in args.replicas.split(",")]
    camera = Camera.orbit(width=args.size, height=args.size)
    png = encode_png(data.astronaut())
    baseline = in_process_ms(png, camera, args.frames)
    results = {}
    with tempfile.TemporaryDirectory() as store:
        for replicas in replica_counts:
            results[replicas] = bench_replicas(replicas, Path(store), png, sessions, camera, args.frames)

    print(f"\ncpus={os.cpu_count()} size={args.size}^2 RAW, {args.frames} frames per session, one frame in "
          f"flight per session, ZeroMQ front end in this process; in-process render p50 {baseline:.1f} ms")
    print(f"{'replicas':>8} {'routing':>8} {'sessions':>8} {'total fps':>9} {'lat p50':>8} {'lat p99':>8} "
          f"{'call p50':>10} {'front CPU/frame':>15} {'retried':>7}")
    for replicas, by_run in results.items():
        for (routing, count), r in by_run.items():
            print(f"{replicas:>8} {routing:>8} {count:>8} {r['fps']:>9.1f} {r['p50']:>6.1f}ms "
                  f"{r['p99']:>6.1f}ms {r['render']:>8.1f}ms {r['cpu_ms']:>13.1f}ms {r['retried']:>7}")
    if 1 in results and 2 in results:
        one, two = results[1], results[2]
        ratios = ", ".join(f"{n} sessions {two['affinity', n]['fps'] / one['affinity', n]['fps']:.2f}x"
                           for n in sessions)
        print(f"scaling 1 -> 2 replicas (total fps, affinity routing): {ratios}")
    best = max((r for by_run in results.values() for r in by_run.values()), key=lambda r: r["fps"])
    core_ms = os.cpu_count() * 1e3 / best["fps"]  # every core busy at the best throughput
    mesh_fps = NODE_VCPUS_PER_GPU * 1e3 / core_ms
    print(f"\nstreams per GPU ({STREAM_FPS:.0f} fps each), estimated:")
    print(f"mesh path: rendered on the CPU (Embree), not the GPU: {core_ms:.0f} core-ms per delivered "
          f"{args.size}^2 frame here (all {os.cpu_count()} cores at the best total, {best['fps']:.1f} fps; "
          f"front end, Ray and render together) -> on a node with {NODE_VCPUS_PER_GPU} vCPUs per GPU "
          f"{mesh_fps:.0f} frames/s = {mesh_fps / STREAM_FPS:.1f} streams per GPU (its share of the "
          f"node's cores; the GPU itself idle)")
    print(volume_estimate())
    print(f"assumptions: {NODE_VCPUS_PER_GPU} vCPUs per GPU, A10G-class GPU at {GPU_SUSTAINED_TFLOPS:.1f} "
          f"TFLOP/s sustained (30% of fp16 tensor peak), the network and transport excluded, trained "
          f"weights as costly as the random ones counted here")
    return 0


if __name__ == "__main__":
    sys.exit(main())
