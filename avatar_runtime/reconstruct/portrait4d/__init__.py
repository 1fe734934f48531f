"""`portrait4d`: the learned, triplane reconstructor (Portrait4D-v2 design).

No weights are shipped; `load_checkpoint` refuses to run without a trained checkpoint.
"""

from avatar_runtime.reconstruct.portrait4d.checkpoint import (WEIGHTS_ENV, load_checkpoint,
                                                              save_checkpoint)
from avatar_runtime.reconstruct.portrait4d.config import PRESETS, Portrait4DConfig, preset
from avatar_runtime.reconstruct.portrait4d.driver import DriverConfig, Portrait4DDriver, head_camera
from avatar_runtime.reconstruct.portrait4d.model import Portrait4D, Rendered, SourceCache
from avatar_runtime.reconstruct.portrait4d.motion import MOTION_DIM, motion_batch, motion_vector

__all__ = [
    "DriverConfig", "MOTION_DIM", "PRESETS", "Portrait4D", "Portrait4DConfig", "Portrait4DDriver",
    "Rendered", "SourceCache", "WEIGHTS_ENV", "head_camera", "load_checkpoint", "motion_batch",
    "motion_vector", "preset", "save_checkpoint",
]
