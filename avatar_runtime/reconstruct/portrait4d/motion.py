"""Motion tokens: a `MotionFrame` (52 ARKit weights + head pose + gaze) or an opaque
embedding -> a few tokens the canonicaliser cross-attends to."""

from __future__ import annotations

import numpy as np
import torch
from torch import nn

from avatar_runtime.motion.frame import MOTION_CODE_DIM, MotionFrame
from avatar_runtime.reconstruct.portrait4d.config import MotionConfig

MOTION_DIM = MOTION_CODE_DIM  # ARKit + pose + gaze: `MotionFrame.code`


def motion_vector(frame: MotionFrame) -> np.ndarray:
    """[MOTION_DIM] float32 (the frame's motion code)."""
    return frame.code()


def motion_batch(frames: list[MotionFrame], device: torch.device | str = "cpu") -> torch.Tensor:
    """[B, MOTION_DIM] from B frames."""
    return torch.as_tensor(np.stack([motion_vector(f) for f in frames]), device=device)


class MotionEncoder(nn.Module):
    """motion [B, MOTION_DIM] (or [B, embedding_dim]) -> tokens [B, T, dim]."""

    def __init__(self, config: MotionConfig, dim: int):
        super().__init__()
        self.config = config
        in_dim = config.embedding_dim or MOTION_DIM
        self.net = nn.Sequential(nn.Linear(in_dim, config.hidden), nn.GELU(),
                                 nn.Linear(config.hidden, config.tokens * dim))
        self.position = nn.Parameter(torch.zeros(1, config.tokens, dim))
        self.dim = dim

    def forward(self, motion: torch.Tensor) -> torch.Tensor:
        tokens = self.net(motion).reshape(motion.shape[0], self.config.tokens, self.dim)
        return tokens + self.position
