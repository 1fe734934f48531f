"""Training losses: photometric (L1, SSIM), geometry (depth, opacity), triplane prior, and
optional losses that need pretrained networks (perceptual, identity)."""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path

import torch
import torch.nn.functional as F

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class LossWeights:
    """Weight of each loss term (0 switches a term off)."""

    l1: float = 1.0
    l1_low: float = 0.5
    """L1 of the volume-rendered (pre super-resolution) image."""
    ssim: float = 0.2
    depth: float = 0.5
    """L1 on view depth (m x 10) where the target is opaque."""
    opacity: float = 0.3
    triplane: float = 1e-3
    """L2 + total variation of the planes."""
    perceptual: float = 0.1
    identity: float = 0.05


def ssim(a: torch.Tensor, b: torch.Tensor, window: int = 7) -> torch.Tensor:
    """Mean SSIM of images [B, C, H, W] in [0, 1] (box window)."""
    pool = lambda x: F.avg_pool2d(x, window, 1, window // 2, count_include_pad=False)  # noqa: E731
    mu_a, mu_b = pool(a), pool(b)
    var_a, var_b = pool(a * a) - mu_a ** 2, pool(b * b) - mu_b ** 2
    cov = pool(a * b) - mu_a * mu_b
    c1, c2 = 0.01 ** 2, 0.03 ** 2
    num = (2 * mu_a * mu_b + c1) * (2 * cov + c2)
    return (num / ((mu_a ** 2 + mu_b ** 2 + c1) * (var_a + var_b + c2))).mean()


def depth_l1(pred: torch.Tensor, target: torch.Tensor, target_alpha: torch.Tensor) -> torch.Tensor:
    """pred, target [B, h, w] metres (inf = empty); counted where both are finite and the
    target is opaque."""
    valid = torch.isfinite(pred) & torch.isfinite(target) & (target_alpha > 0.99)
    if not bool(valid.any()):
        return pred.new_zeros(())
    return (pred[valid] - target[valid]).abs().mean() * 10.0


def triplane_prior(planes: torch.Tensor) -> torch.Tensor:
    """planes [B, 3, C, R, R] -> L2 + total variation."""
    tv = (planes[..., 1:, :] - planes[..., :-1, :]).abs().mean() + \
        (planes[..., :, 1:] - planes[..., :, :-1]).abs().mean()
    return planes.pow(2).mean() + tv


def distortion(weights: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
    """Mip-NeRF 360's distortion loss: weights [N, S] at sorted distances t [N, S] -> mean
    over rays of sum_ij w_i w_j |t_i - t_j| (the point-sample form). Small when each ray's
    weight sits in one thin layer: a surface rather than fog."""
    w_before = torch.cumsum(weights, 1) - weights
    wt_before = torch.cumsum(weights * t, 1) - weights * t
    return (2 * weights * (t * w_before - wt_before)).sum(1).mean()


class PretrainedLoss:
    """A loss that needs a pretrained network (TorchScript file mapping images [B, 3, H, W]
    in [0, 1] to features). Without a path it is skipped, and says so once."""

    def __init__(self, name: str, path: str | Path | None):
        self.name = name
        self.net = torch.jit.load(str(path)).eval() if path else None
        if self.net is None:
            log.warning("%s loss skipped: no pretrained weights given (pass --%s-weights PATH "
                        "to a TorchScript feature network)", name, name)
        else:
            self.net.requires_grad_(False)

    @property
    def enabled(self) -> bool:
        return self.net is not None

    def __call__(self, pred: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        if self.net is None:
            return pred.new_zeros(())
        return (self.net(pred) - self.net(target)).abs().mean()
