"""Head and eye rotations: quaternions, rotation matrices and yaw/pitch/roll angles.

Conventions (DESIGN.md section 5): world right-handed, metres, +Y up, the head faces +Z, so
the subject's left is +X. The identity rotation faces the default frontal camera (on +Z).

Quaternions are (x, y, z, w), scalar last. Euler angles are (yaw, pitch, roll) in radians,
applied intrinsically in that order, i.e. R = Ry(yaw) @ Rx(pitch) @ Rz(roll):

- yaw about +Y: positive turns the face toward +X, the subject's left;
- pitch about +X: positive turns the face toward -Y, chin down (looking down);
- roll about +Z: positive tips the top of the head toward -X, the subject's right shoulder.

`quat_to_euler` returns yaw and roll in [-pi, pi] and pitch in [-pi/2, pi/2]. At pitch
+-pi/2 (gimbal lock) roll is reported as 0 and folded into yaw.

Every function takes a single value or a batch (any leading shape) and returns float64.
"""

from __future__ import annotations

import warnings

import numpy as np
from numpy.typing import ArrayLike
from scipy.spatial.transform import Rotation

IDENTITY_QUAT = np.array([0.0, 0.0, 0.0, 1.0], np.float32)
IDENTITY_QUAT.flags.writeable = False  # a shared default: nobody may edit it in place

# Intrinsic (upper-case) Y, then X, then Z: yaw, pitch, roll as documented above.
_EULER_SEQ = "YXZ"


def _flatten(values: ArrayLike, tail: tuple[int, ...], name: str) -> tuple[np.ndarray, tuple]:
    """[..., *tail] -> ([N, *tail] float64, leading shape), since scipy wants flat batches."""
    arr = np.asarray(values, dtype=np.float64)
    if arr.shape[arr.ndim - len(tail) :] != tail:
        raise ValueError(
            f"{name} must have shape [..., {', '.join(map(str, tail))}], got {arr.shape}"
        )
    lead = arr.shape[: arr.ndim - len(tail)]
    return arr.reshape((-1, *tail)), lead


def quat_to_matrix(quat: ArrayLike) -> np.ndarray:
    """Quaternions [..., 4] (x, y, z, w) -> rotation matrices [..., 3, 3]."""
    flat, lead = _flatten(quat, (4,), "quat")
    return Rotation.from_quat(flat).as_matrix().reshape(*lead, 3, 3)


def matrix_to_quat(matrix: ArrayLike) -> np.ndarray:
    """Rotation matrices [..., 3, 3] -> unit quaternions [..., 4] (x, y, z, w)."""
    flat, lead = _flatten(matrix, (3, 3), "matrix")
    return Rotation.from_matrix(flat).as_quat().reshape(*lead, 4)


def euler_to_quat(ypr: ArrayLike) -> np.ndarray:
    """(yaw, pitch, roll) radians [..., 3] -> unit quaternions [..., 4] (x, y, z, w)."""
    flat, lead = _flatten(ypr, (3,), "ypr")
    return Rotation.from_euler(_EULER_SEQ, flat).as_quat().reshape(*lead, 4)


def quat_to_euler(quat: ArrayLike) -> np.ndarray:
    """Quaternions [..., 4] (x, y, z, w) -> (yaw, pitch, roll) radians [..., 3]."""
    flat, lead = _flatten(quat, (4,), "quat")
    with warnings.catch_warnings():
        # Gimbal lock is documented above; a warning per frame of a live stream helps nobody.
        warnings.simplefilter("ignore", UserWarning)
        ypr = Rotation.from_quat(flat).as_euler(_EULER_SEQ)
    return ypr.reshape(*lead, 3)


def normalize_quat(quat: ArrayLike, eps: float = 1e-6) -> np.ndarray:
    """Quaternions [..., 4] scaled to unit length; ValueError if any is shorter than `eps`."""
    q = np.asarray(quat, dtype=np.float64)
    norm = np.linalg.norm(q, axis=-1, keepdims=True)
    if np.any(norm < eps):
        raise ValueError("cannot normalise a zero quaternion")
    return q / norm
