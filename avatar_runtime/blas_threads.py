"""Run small linear algebra on one BLAS thread.

numpy's OpenBLAS splits even a 57 x 57 solve or a 1000 x 57 product across every core,
and its threads spin while they wait for each other. On a 2-core machine that is also
busy elsewhere, that makes the motion solver's per-frame algebra 3-10x slower and erratic
(measured: benchmarks/bench_solve_speed.py). Inside `single_blas_thread()` numpy's
OpenBLAS uses one thread; the previous count comes back when the last caller leaves.
Other BLAS builds (MKL, Accelerate) are left alone.
"""

from __future__ import annotations

import ctypes
import threading
from contextlib import contextmanager
from functools import lru_cache
from pathlib import Path
from typing import Iterator

import numpy as np

_lock = threading.Lock()
_inside = 0
_restore = 0


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


@contextmanager
def single_blas_thread() -> Iterator[None]:
    global _inside, _restore
    blas = _openblas()
    if blas is None:
        yield
        return
    get, set_ = blas
    with _lock:
        if _inside == 0:
            _restore = get()
            set_(1)
        _inside += 1
    try:
        yield
    finally:
        with _lock:
            _inside -= 1
            if _inside == 0:
                set_(_restore)
