"""numpy's OpenBLAS on one thread, set once when the runtime is imported.

numpy's OpenBLAS splits even a 57 x 57 solve or a 1000 x 57 product across every core,
and its threads spin while they wait for each other. On a 2-core machine that is also
busy elsewhere, that made the motion solver's per-frame algebra 3-10x slower and erratic
(measured: benchmarks/bench_solve_speed.py); nothing else the runtime does with numpy's
BLAS is large enough to gain from threads (torch keeps its own). The count is
process-wide and OpenBLAS does not support changing it while another thread is inside a
BLAS call, so it is set once, at import, before the runtime starts any thread, and never
switched per call. Other BLAS builds (MKL, Accelerate) are left alone.
"""

from __future__ import annotations

import ctypes
from functools import lru_cache
from pathlib import Path

import numpy as np


@lru_cache(maxsize=1)
def _openblas():
    """(get, set) of numpy's bundled OpenBLAS thread count, or None."""
    libs = Path(np.__file__).resolve().parent.parent / "numpy.libs"
    for path in sorted(libs.glob("*openblas*.so*")):  # numpy 1.x: libopenblas64_, 2.x: libscipy_openblas64_
        lib = ctypes.CDLL(str(path))
        for prefix in ("openblas", "scipy_openblas"):
            for suffix in ("64_", "_64_", ""):
                get = getattr(lib, f"{prefix}_get_num_threads{suffix}", None)
                set_ = getattr(lib, f"{prefix}_set_num_threads{suffix}", None)
                if get is not None and set_ is not None:
                    get.restype = ctypes.c_int
                    set_.argtypes = [ctypes.c_int]
                    return get, set_
    return None


def blas_threads() -> int | None:
    """numpy's OpenBLAS thread count (None: numpy is not on OpenBLAS)."""
    blas = _openblas()
    return None if blas is None else blas[0]()


def set_blas_threads(count: int) -> int | None:
    """Set numpy's OpenBLAS thread count; returns the previous one (None: not OpenBLAS).
    Only while no other thread runs numpy algebra (start-up, single-threaded benchmarks)."""
    blas = _openblas()
    if blas is None:
        return None
    previous = blas[0]()
    blas[1](count)
    return previous
