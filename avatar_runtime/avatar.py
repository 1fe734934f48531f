"""The avatar record: what a reconstructor produces and the store persists."""

from __future__ import annotations

import time
from dataclasses import dataclass, field

import numpy as np


@dataclass
class Avatar:
    """A reconstructed head.

    `tensors` holds the arrays a reconstructor needs to drive and render the head
    (for `fit`: identity coefficients [K], UV texture [T, T, 3] uint8, the source's
    own expression [52]); `meta` holds JSON-serialisable facts (source size, fit error,
    head-model version). The id is a content hash, so the same photo and settings give
    the same avatar.
    """

    id: str
    name: str
    reconstructor: str
    tensors: dict[str, np.ndarray]
    meta: dict = field(default_factory=dict)
    created_at: float = field(default_factory=time.time)

    def summary(self) -> dict:
        """Small JSON-able description (for listings and manifests)."""
        return {
            "id": self.id,
            "name": self.name,
            "reconstructor": self.reconstructor,
            "created_at": self.created_at,
            "meta": self.meta,
        }
