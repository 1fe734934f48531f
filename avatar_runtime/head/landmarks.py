"""Where MediaPipe's 478 landmarks sit on the head (data from scripts/derive_landmark_map.py)."""

from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

import numpy as np

from .model import HeadModel

LANDMARK_FILE = Path(__file__).resolve().parents[1] / "data" / "mediapipe_landmarks.npz"
# MediaPipe's face-oval contour: these slide along the silhouette as the head turns.
FACE_OVAL = (10, 21, 54, 58, 67, 93, 103, 109, 127, 132, 136, 148, 149, 150, 152, 162, 172,
             176, 234, 251, 284, 288, 297, 323, 332, 338, 356, 361, 365, 377, 378, 379, 389,
             397, 400, 454)
IRISES = tuple(range(468, 478))


@dataclass(frozen=True)
class LandmarkEmbedding:
    triangles: np.ndarray    # [478] triangle index
    barycentric: np.ndarray  # [478, 3]
    # [52, 478, 3] detected landmark travel per unit weight; None before it is measured
    expression_response: np.ndarray | None = None

    def vertex_weights(self, head: HeadModel) -> tuple[np.ndarray, np.ndarray]:
        """([478, 3] vertex ids, [478, 3] weights): landmark = sum_k w_k * V[id_k]."""
        return head.faces[self.triangles], self.barycentric

    def points(self, head: HeadModel, vertices: np.ndarray) -> np.ndarray:
        """Landmark positions [478, 3] on a deformed mesh `vertices` [V, 3]."""
        ids, w = self.vertex_weights(head)
        return (vertices[ids] * w[..., None]).sum(1)

    def basis(self, head: HeadModel, basis: np.ndarray) -> np.ndarray:
        """Restrict a vertex basis [N, V, 3] to the landmarks: [N, 478, 3]."""
        ids, w = self.vertex_weights(head)
        return (basis[:, ids] * w[None, ..., None]).sum(2)

    def expression_basis(self, head: HeadModel) -> np.ndarray:
        """[52, 478, 3] landmark travel per unit ARKit weight: measured, else geometric."""
        if self.expression_response is not None:
            return self.expression_response
        return self.basis(head, head.expression_basis)

    @staticmethod
    def default_weights() -> np.ndarray:
        """[478] fitting weight per landmark: contour and irises count less."""
        w = np.ones(478, np.float32)
        w[list(FACE_OVAL)] = 0.3
        w[list(IRISES)] = 0.5
        return w


@lru_cache(maxsize=1)
def load_landmark_embedding(path: Path = LANDMARK_FILE) -> LandmarkEmbedding:
    with np.load(path) as d:
        response = d["expression_response"] if "expression_response" in d.files else None
        return LandmarkEmbedding(d["triangles"], d["barycentric"], response)
