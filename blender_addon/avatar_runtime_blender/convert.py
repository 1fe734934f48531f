"""Where Blender's world meets avatar-runtime's: every axis conversion goes through `convert_world`.

The runtime (glTF's convention): right-handed, metres, +Y up, the head faces +Z.
Blender: right-handed, metres, +Z up. Blender's glTF importer puts runtime (x, y, z) at
Blender (x, -z, y), so an imported avatar faces -Y, toward Blender's front view, and its
armature space *is* the converted runtime world.

Cameras are "OpenGL" cameras in both programs (they look down their local -Z, local +Y
up), so a Blender camera's matrix_world needs only the world change, not a local one.

No bpy here: matrices are anything numpy accepts (mathutils matrices included).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Literal

import numpy as np
from numpy.typing import ArrayLike

# Blender coordinates of the runtime's axes (as columns): p_blender = _BLENDER_FROM_RUNTIME @ p_runtime.
_BLENDER_FROM_RUNTIME = np.array([[1.0, 0.0, 0.0],
                                  [0.0, 0.0, -1.0],
                                  [0.0, 1.0, 0.0]])


def convert_world(matrix: ArrayLike, to: Literal["runtime", "blender"]) -> np.ndarray:
    """Re-express a transform given in one world's coordinates in the other's.

    `matrix` is 4x4 (an object-to-world transform: a camera's matrix_world, a bone's pose)
    or 3x3 (an orientation). Only the world's axes change; the object's own local axes do
    not, which is right for cameras (OpenGL axes in both) and for anything whose local
    frame came through the glTF importer. to="runtime": Blender -> runtime; to="blender":
    runtime -> Blender. A point is the translation column of such a transform.
    """
    m = np.asarray(matrix, dtype=np.float64)
    if m.shape not in ((3, 3), (4, 4)):
        raise ValueError(f"expected a 3x3 or 4x4 matrix, got shape {m.shape}")
    if to not in ("runtime", "blender"):
        raise ValueError(f"to must be 'runtime' or 'blender', got {to!r}")
    basis = np.eye(m.shape[0])
    basis[:3, :3] = _BLENDER_FROM_RUNTIME.T if to == "runtime" else _BLENDER_FROM_RUNTIME
    return basis @ m


# -- cameras -----------------------------------------------------------------------------
@dataclass(frozen=True)
class RuntimeCamera:
    """A camera as the runtime's protocol wants it (avatar.v1 Camera)."""

    c2w: tuple[float, ...]  # 16 doubles, row-major camera-to-world, OpenGL axes
    fov_y_deg: float
    width: int
    height: int


def fov_y_deg(lens_mm: float, sensor_width_mm: float, sensor_height_mm: float,
              sensor_fit: str, width: int, height: int) -> float:
    """Vertical field of view of a Blender perspective camera rendering width x height pixels.

    Follows Blender's sensor fit: AUTO fits `sensor_width` to the larger image side,
    HORIZONTAL to the width, VERTICAL fits `sensor_height` to the height. Square pixels.
    """
    if lens_mm <= 0 or width <= 0 or height <= 0:
        raise ValueError("lens and image size must be positive")
    if sensor_fit == "AUTO":
        sensor_fit = "HORIZONTAL" if width >= height else "VERTICAL"
        sensor_height_mm = sensor_width_mm
    if sensor_fit == "HORIZONTAL":
        sensor_y = sensor_width_mm * height / width
    elif sensor_fit == "VERTICAL":
        sensor_y = sensor_height_mm
    else:
        raise ValueError(f"unknown sensor fit {sensor_fit!r}")
    return math.degrees(2.0 * math.atan(0.5 * sensor_y / lens_mm))


def camera_to_runtime(matrix_world: ArrayLike, fov_y: float, width: int, height: int) -> RuntimeCamera:
    """A Blender camera (its matrix_world, in the avatar's armature space) -> runtime camera.

    Object scale does not change what a camera sees, so it is divided out.
    """
    m = np.array(matrix_world, dtype=np.float64)
    scale = np.linalg.norm(m[:3, :3], axis=0)
    if np.any(scale < 1e-12):
        raise ValueError("camera matrix has a zero scale")
    m[:3, :3] /= scale
    c2w = convert_world(m, to="runtime")
    return RuntimeCamera(tuple(float(v) for v in c2w.ravel()), float(fov_y), int(width), int(height))


# -- head rotation -----------------------------------------------------------------------
def quat_xyzw_to_matrix(q: ArrayLike) -> np.ndarray:
    """Quaternion (x, y, z, w), normalised here -> 3x3 rotation matrix."""
    x, y, z, w = np.asarray(q, dtype=np.float64) / np.linalg.norm(q)
    return np.array([
        [1 - 2 * (y * y + z * z), 2 * (x * y - z * w), 2 * (x * z + y * w)],
        [2 * (x * y + z * w), 1 - 2 * (x * x + z * z), 2 * (y * z - x * w)],
        [2 * (x * z - y * w), 2 * (y * z + x * w), 1 - 2 * (x * x + y * y)],
    ])


def matrix_to_quat_wxyz(m: ArrayLike) -> tuple[float, float, float, float]:
    """3x3 rotation matrix -> unit quaternion (w, x, y, z), Blender's order, with w >= 0."""
    m = np.asarray(m, dtype=np.float64)
    trace = m[0, 0] + m[1, 1] + m[2, 2]
    if trace > 0:
        s = 2.0 * math.sqrt(trace + 1.0)
        q = (0.25 * s, (m[2, 1] - m[1, 2]) / s, (m[0, 2] - m[2, 0]) / s, (m[1, 0] - m[0, 1]) / s)
    else:
        i = int(np.argmax(np.diag(m)))
        j, k = (i + 1) % 3, (i + 2) % 3
        s = 2.0 * math.sqrt(max(1.0 + m[i, i] - m[j, j] - m[k, k], 1e-300))
        v = [0.0, 0.0, 0.0]
        v[i] = 0.25 * s
        v[j] = (m[j, i] + m[i, j]) / s
        v[k] = (m[k, i] + m[i, k]) / s
        q = ((m[k, j] - m[j, k]) / s, *v)
    q = np.array(q) / np.linalg.norm(q)
    if q[0] < 0:
        q = -q
    return tuple(float(v) for v in q)


def head_pose_rotation(head_rotation_xyzw: ArrayLike, bone_rest: ArrayLike) -> tuple[float, ...]:
    """The runtime's head rotation -> the head pose bone's rotation_quaternion (w, x, y, z).

    The runtime turns the head by R about the head pivot, in its world. In the armature
    space of the imported avatar that turn is R_b = convert(R) @ convert(I)^-1; a pose
    bone's rotation is relative to its rest frame B (bone.matrix_local; the parents are
    assumed at rest), so the bone's rotation is B^-1 @ R_b @ B.
    """
    rotation = quat_xyzw_to_matrix(head_rotation_xyzw)
    turn = convert_world(rotation, to="blender") @ np.linalg.inv(convert_world(np.eye(3), to="blender"))
    rest = np.asarray(bone_rest, dtype=np.float64)[:3, :3]
    rest = rest / np.linalg.norm(rest, axis=0)
    return matrix_to_quat_wxyz(rest.T @ turn @ rest)


def head_rotation_from_pose(pose_rotation_wxyz: ArrayLike, bone_rest: ArrayLike) -> tuple[float, ...]:
    """The inverse of `head_pose_rotation`: a head pose bone's rotation -> runtime (x, y, z, w)."""
    w, x, y, z = pose_rotation_wxyz
    rest = np.asarray(bone_rest, dtype=np.float64)[:3, :3]
    rest = rest / np.linalg.norm(rest, axis=0)
    turn = rest @ quat_xyzw_to_matrix((x, y, z, w)) @ rest.T
    rotation = convert_world(turn, to="runtime") @ np.linalg.inv(convert_world(np.eye(3), to="runtime"))
    qw, qx, qy, qz = matrix_to_quat_wxyz(rotation)
    return (qx, qy, qz, qw)
