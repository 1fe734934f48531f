"""Checks on the arrays callers hand to the exporters (errors name what is allowed)."""

from __future__ import annotations

import numpy as np

from ..errors import InvalidArgument
from ..motion.arkit import NUM_ARKIT


def check_expression(expression: np.ndarray | None) -> np.ndarray:
    """[52] float32 ARKit weights (zeros for None); InvalidArgument on wrong length or NaN."""
    if expression is None:
        return np.zeros(NUM_ARKIT, np.float32)
    weights = np.asarray(expression, np.float32).reshape(-1)
    if weights.shape != (NUM_ARKIT,) or not np.isfinite(weights).all():
        raise InvalidArgument(f"expression must be {NUM_ARKIT} finite ARKit weights in Live Link "
                              f"order, got shape {np.shape(expression)}")
    return weights


def check_texture(texture: np.ndarray) -> np.ndarray:
    """[H, W, 3|4] uint8, row 0 at the top; InvalidArgument otherwise."""
    texture = np.asarray(texture)
    if texture.ndim != 3 or texture.shape[2] not in (3, 4) or texture.dtype != np.uint8 \
            or min(texture.shape[:2]) == 0:
        raise InvalidArgument(f"texture must be a [H, W, 3|4] uint8 image, got shape "
                              f"{texture.shape} dtype {texture.dtype}")
    return texture
