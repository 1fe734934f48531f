"""Motion: ARKit + head pose frames, pose maths, smoothing, built-in clips, Live Link Face CSV."""

from avatar_runtime.motion.arkit import ARKIT_INDEX, ARKIT_NAMES, NUM_ARKIT
from avatar_runtime.motion.clips import CLIP_NAMES, builtin_clip
from avatar_runtime.motion.frame import MotionFrame
from avatar_runtime.motion.livelink_csv import (
    format_livelink_csv,
    load_livelink_csv,
    write_livelink_csv,
)
from avatar_runtime.motion.smoothing import MotionSmoother, OneEuroFilter

__all__ = [
    "ARKIT_INDEX",
    "ARKIT_NAMES",
    "NUM_ARKIT",
    "CLIP_NAMES",
    "builtin_clip",
    "MotionFrame",
    "format_livelink_csv",
    "load_livelink_csv",
    "write_livelink_csv",
    "MotionSmoother",
    "OneEuroFilter",
]
