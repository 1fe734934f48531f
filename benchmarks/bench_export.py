"""Mesh export speed and size: one astronaut avatar exported as glb / obj / ply.

Run: python benchmarks/bench_export.py [--repeat N]
Prints the median wall time per format (target: <= 1 s for glb) and each file's size.
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from pathlib import Path

from skimage import data

from avatar_runtime.faces.image import encode_png
from avatar_runtime.mesh.export import FORMATS, export_avatar
from avatar_runtime.service import AvatarService

TARGET_S = 1.0


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeat", type=int, default=5, help="exports per format")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        service = AvatarService(Path(tmp) / "store")
        avatar = service.avatar(service.create(encode_png(data.astronaut()))["id"])
        for fmt in FORMATS:
            out = Path(tmp) / f"avatar.{fmt}"
            times = []
            for _ in range(args.repeat):
                started = time.perf_counter()
                paths = export_avatar(avatar, service.head, fmt, out)
                times.append(time.perf_counter() - started)
            sizes = ", ".join(f"{p.name} {p.stat().st_size / 1e6:.2f} MB" for p in paths)
            median = statistics.median(times)
            verdict = "ok" if median <= TARGET_S else f"over the {TARGET_S:.0f} s target"
            print(f"{fmt}: median {median:.3f} s, min {min(times):.3f} s over {args.repeat} "
                  f"({verdict}); {sizes}")


if __name__ == "__main__":
    main()
