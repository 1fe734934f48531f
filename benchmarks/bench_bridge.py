"""Transport overhead: gRPC and ZeroMQ vs the in-process render, at 256 and 512 px.

Starts `avatar-runtime serve` as a child process on loopback (as a deployment would run),
creates the astronaut avatar through it, then per transport and size measures:

- RenderFrame round trip (RAW RGBA): p50 / p95 ms over --frames calls;
- Drive throughput: frames/s over --frames motion frames (window of 2 in flight);
- overhead: p50 round trip / p50 in-process `AvatarService.render` (same motions, measured
  in this process before the server starts), and round trip minus the server's own
  render_ms (the transport's share, from the same calls);
- Drive at 512^2 per transport, encoding (raw, jpeg) and frames in flight (1, 2): frames/s,
  latency (frame sent -> its render received) p50 / p95, and where the time goes: the
  server's render_ms and encode_ms per frame, the rest being transport + client decode.

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


def bench_drive(client, avatar_id: str, frames: list[MotionFrame], encoding: str, window: int) -> dict:
    """Drive at 512^2: fps, per-frame latency and the server's render / encode split."""
    camera = Camera.orbit(width=512, height=512)
    sent: dict[int, float] = {}

    def timed():
        for frame in frames:
            sent[frame.sequence] = time.perf_counter()  # taken by the sender when the window opens
            yield frame

    latencies, render, encode, received = [], [], [], []
    t0 = time.perf_counter()
    stream = client.drive(avatar_id, timed(), camera, encoding=encoding, window=window)
    for i, out in enumerate(stream):
        now = time.perf_counter()
        # Frame i leaves once it was pulled and frame i - window came back (the send window).
        left = max(sent[out.sequence], received[i - window]) if i >= window else sent[out.sequence]
        latencies.append((now - left) * 1e3)
        received.append(now)
        render.append(out.render_ms)
        encode.append(out.encode_ms)
    elapsed = time.perf_counter() - t0
    return {"fps": len(latencies) / elapsed, "p50": pct(latencies, 50), "p95": pct(latencies, 95),
            "render": statistics.median(render), "encode": statistics.median(encode),
            "dropped": stream.status["frames_dropped"]}


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
            print(f"\nDrive 512x512 (in-process render p50 {baseline[512]:.1f} ms = "
                  f"{1e3 / baseline[512]:.1f} fps)")
            print(f"{'transport':9} {'encoding':8} {'in flight':>9} {'fps':>6} {'lat p50':>8} "
                  f"{'lat p95':>8} {'render':>7} {'encode':>7} {'rest':>6} {'dropped':>7}")
            for name, address in targets.items():
                with connect(address) as client:
                    avatar_id = client.create_avatar(png)["id"]
                    bench_drive(client, avatar_id, frames[:10], "raw", 2)  # warm up
                    for encoding in ("raw", "jpeg"):
                        for window in (1, 2):
                            r = bench_drive(client, avatar_id, frames, encoding, window)
                            rest = 1e3 / r["fps"] - r["render"] - r["encode"] if window == 1 else float("nan")
                            print(f"{name:9} {encoding:8} {window:>9} {r['fps']:>6.1f} {r['p50']:>6.1f}ms "
                                  f"{r['p95']:>6.1f}ms {r['render']:>5.1f}ms {r['encode']:>5.1f}ms "
                                  f"{rest:>4.1f}ms {r['dropped']:>7}")
        finally:
            os.kill(proc.pid, signal.SIGTERM)
            proc.wait(30)
    return 0


if __name__ == "__main__":
    sys.exit(main())
