"""Emission-absorption quadrature: samples along rays -> per-ray feature, opacity, depth."""

from __future__ import annotations

from dataclasses import dataclass

import torch


@dataclass
class RayOutputs:
    """Integrated rays.

    features: [N, F] premultiplied by opacity (channels 0..2 = RGB)
    opacity:  [N] in [0, 1]
    depth:    [N] expected ray distance of the surface, field units (0 where opacity is 0)
    """

    features: torch.Tensor
    opacity: torch.Tensor
    depth: torch.Tensor

    @staticmethod
    def empty(n: int, n_features: int, like: torch.Tensor) -> "RayOutputs":
        return RayOutputs(like.new_zeros(n, n_features), like.new_zeros(n), like.new_zeros(n))

    def scatter(self, index: torch.Tensor, part: "RayOutputs") -> None:
        """Write `part` (rays index [M]) into self in place."""
        self.features[index] = part.features
        self.opacity[index] = part.opacity
        self.depth[index] = part.depth


def weights_from_alpha(alpha: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """alpha [N, S] -> weights [N, S] (alpha x transmittance before) and final transmittance [N]."""
    trans = torch.cumprod(1.0 - alpha + 1e-10, dim=-1)
    before = torch.cat([torch.ones_like(trans[:, :1]), trans[:, :-1]], dim=-1)
    return alpha * before, trans[:, -1]


def integrate(weights: torch.Tensor, features: torch.Tensor, t: torch.Tensor) -> RayOutputs:
    """weights [N, S], features [N, S, F], sample distances t [N, S] -> RayOutputs."""
    return RayOutputs((weights[..., None] * features).sum(1), weights.sum(1), (weights * t).sum(1))


def composite_midpoint(t: torch.Tensor, density: torch.Tensor, features: torch.Tensor
                       ) -> tuple[RayOutputs, torch.Tensor]:
    """EG3D's ray marcher: each interval between sorted samples takes the mean of its ends.

    t [N, S] sorted, density [N, S], features [N, S, F] -> (RayOutputs, weights [N, S - 1]).
    """
    deltas = t[:, 1:] - t[:, :-1]
    mid = lambda x: 0.5 * (x[:, 1:] + x[:, :-1])  # noqa: E731
    alpha = 1.0 - torch.exp(-mid(density) * deltas)
    weights, _ = weights_from_alpha(alpha)
    return integrate(weights, mid(features), mid(t)), weights


def composite_uniform(t: torch.Tensor, density: torch.Tensor, features: torch.Tensor, dt: float,
                      transmittance: torch.Tensor) -> tuple[RayOutputs, torch.Tensor]:
    """One chunk of equal steps `dt`, starting at `transmittance` [N].

    t [N, S], density [N, S], features [N, S, F] -> (this chunk's RayOutputs, transmittance
    after the chunk [N]).
    """
    alpha = 1.0 - torch.exp(-density * dt)
    weights, left = weights_from_alpha(alpha)
    weights = weights * transmittance[:, None]
    return integrate(weights, features, t), transmittance * left
