"""avatar-runtime: one photo to an animatable 3D head, driven and rendered on CPU or GPU."""

from .blas_threads import set_blas_threads

__version__ = "0.1.0"

set_blas_threads(1)  # once, before any thread: see blas_threads.py
