"""avatar-runtime: one photo to an animatable 3D head, driven and rendered on CPU or GPU."""

__version__ = "0.1.0"
