"""Transport overhead: gRPC and ZeroMQ vs the in-process render, at 256 and 512 px.

Starts `avatar-runtime serve` as a child process on loopback (as a deployment would run),
creates the astronaut avatar through it, then per transport and size measures:

- RenderFrame round trip (RAW RGBA): p50 / p95 ms over --frames calls;
- Drive throughput: frames/s over --frames motion frames (window of 2 in flight);
- overhead: p50 round trip / p50 in-process `AvatarService.render` (same motions, measured
  in this process before the server starts), and round trip minus the server's own
  render_ms (the transport's share, from the same calls).

    .venv/bin/python benchmarks/bench_bridge.py [--frames 60]
"""

from __future__ import annotations

import argparse
import os
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
from skimage import data

from avatar_runtime.faces.image import encode_png
from avatar_runtime.motion.frame import MotionFrame
from avatar_runtime.render.camera import Camera

REPO = Path(__file__).resolve().parent.parent
SIZES = (256, 512)


def motions(n: int) -> list[MotionFrame]:
    out = []
    for i in range(n):
        arkit = np.zeros(52, np.float32)
        arkit[17] = 0.5 + 0.5 * np.sin(i / 4)
        out.append(MotionFrame(arkit, sequence=i, timecode=i / 30))
    return out


def pct(values: list[float], q: float) -> float:
    return float(np.percentile(values, q))


def in_process(png: bytes, frames: list[MotionFrame]) -> dict[int, float]:
    """p50 ms of AvatarService.render per size (no transport)."""
    from avatar_runtime.service import AvatarService

    with tempfile.TemporaryDirectory() as tmp:
        service = AvatarService(tmp)
        avatar_id = service.create(png)["id"]
        result = {}
        for size in SIZES:
            camera = Camera.orbit(width=size, height=size)
            service.render(avatar_id, frames[0], camera)  # warm the renderer cache
            times = []
            for frame in frames:
                t0 = time.perf_counter()
                service.render(avatar_id, frame, camera)
                times.append((time.perf_counter() - t0) * 1e3)
            result[size] = statistics.median(times)
        return result


def bench_transport(client, avatar_id: str, frames: list[MotionFrame], size: int) -> dict:
    camera = Camera.orbit(width=size, height=size)
    client.render(avatar_id, frames[0], camera)  # warm up
    round_trips, transport = [], []
    for frame in frames:
        t0 = time.perf_counter()
        out = client.render(avatar_id, frame, camera)
        ms = (time.perf_counter() - t0) * 1e3
        round_trips.append(ms)
        transport.append(ms - out.render_ms)
    t0 = time.perf_counter()
    stream = client.drive(avatar_id, frames, camera, window=2)
    delivered = sum(1 for _ in stream)
    fps = delivered / (time.perf_counter() - t0)
    return {"p50": pct(round_trips, 50), "p95": pct(round_trips, 95),
            "transport_p50": pct(transport, 50), "fps": fps, "dropped": stream.status["frames_dropped"]}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--frames", type=int, default=60)
    args = parser.parse_args()
    from engine_bridge.client import connect

    png = encode_png(data.astronaut())
    frames = motions(args.frames)
    baseline = in_process(png, frames)
    with tempfile.TemporaryDirectory() as tmp:
        proc = subprocess.Popen([sys.executable, "-m", "engine_bridge.cli", "serve", "--grpc", "127.0.0.1:0",
                                 "--zmq", "tcp://127.0.0.1:0", "--data-dir", tmp],
                                cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
        try:
            addresses = dict(p.split("=", 1) for p in proc.stdout.readline().split())
            targets = {"grpc": f"grpc://{addresses['grpc']}", "zmq": addresses["zmq"]}
            print(f"cpus={os.cpu_count()} frames={args.frames} (server: separate process, loopback)")
            print(f"{'transport':9} {'size':>4} {'in-proc p50':>11} {'rt p50':>8} {'rt p95':>8} "
                  f"{'transport p50':>13} {'ratio':>6} {'drive fps':>9} {'dropped':>7}")
            for name, address in targets.items():
                with connect(address) as client:
                    avatar_id = client.create_avatar(png)["id"]
                    for size in SIZES:
                        r = bench_transport(client, avatar_id, frames, size)
                        ratio = r["p50"] / baseline[size]
                        print(f"{name:9} {size:>4} {baseline[size]:>9.1f}ms {r['p50']:>6.1f}ms "
                              f"{r['p95']:>6.1f}ms {r['transport_p50']:>11.1f}ms {ratio:>6.2f} "
                              f"{r['fps']:>9.1f} {r['dropped']:>7}")
        finally:
            os.kill(proc.pid, signal.SIGTERM)
            proc.wait(30)
    return 0


if __name__ == "__main__":
    sys.exit(main())
