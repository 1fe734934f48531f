"""Image or landmarks -> ARKit weights + head pose, with the avatar's identity held fixed."""

from __future__ import annotations

import threading

import numpy as np

from ..faces.detector import FaceAnalyzer
from ..head.landmarks import load_landmark_embedding
from ..head.model import HeadModel, load_head_model
from ..reconstruct.fit import FitResult, FitSettings, LandmarkFitter, photo_camera
from ..render.mesh_renderer import MeshRenderer
from .frame import MotionFrame
from .pose import matrix_to_quat
from .response import GREY, ExpressionResponse, measure_response

SOLVER_FOV_DEG = 12.0


class MotionSolver:
    """Solves one frame at a time; pass the previous result to warm-start video tracking."""

    def __init__(self, analyzer: FaceAnalyzer, head: HeadModel | None = None):
        self.analyzer = analyzer
        self.head = head or load_head_model()
        self.fitter = LandmarkFitter(self.head, load_landmark_embedding(),
                                     FitSettings(pose_uses_contour=True, joint_pose=True,
                                                 iterations=6), detector_response=True)

    def measure_response(self, identity: np.ndarray, texture: np.ndarray,
                         cancelled: threading.Event | None = None) -> ExpressionResponse | None:
        """How this solver's detector reads the avatar (identity + UV texture): rendered
        and detected per channel and view (see motion/response.py); a few seconds."""
        renderer = MeshRenderer(self.head.faces, self.head.face_uvs, texture, aa_samples=4)
        return measure_response(self.head, self.fitter.embedding, self.analyzer, identity,
                                lambda vertices, camera: renderer.render(vertices, camera, GREY).rgba[..., :3],
                                self.fitter.response, cancelled=cancelled)

    def solve_image(self, rgb: np.ndarray, identity: np.ndarray | None = None,
                    sequence: int = 0, timecode: float = 0.0,
                    fov_y_deg: float = SOLVER_FOV_DEG, bias: np.ndarray | None = None,
                    response: ExpressionResponse | None = None) -> MotionFrame:
        landmarks = self.analyzer.landmarks(rgb).landmarks
        return self.solve_landmarks(landmarks, rgb.shape[1], rgb.shape[0], identity,
                                    sequence, timecode, fov_y_deg, bias=bias,
                                    response=response)[0]

    def solve_landmarks(self, landmarks: np.ndarray, width: int, height: int,
                        identity: np.ndarray | None = None, sequence: int = 0,
                        timecode: float = 0.0, fov_y_deg: float = SOLVER_FOV_DEG,
                        previous: FitResult | None = None,
                        bias: np.ndarray | None = None,
                        response: ExpressionResponse | None = None) -> tuple[MotionFrame, FitResult]:
        """landmarks [478, 2|3] pixels -> (MotionFrame, the fit). Identity None = template head;
        bias [478, 3] = the avatar's `landmark_bias` (its neutral face as the detector sees it);
        response = the avatar's measured expression response (default: the template's)."""
        if identity is None:
            identity = np.zeros(self.head.num_identity, np.float32)
        fit = self.fitter.fit(landmarks, photo_camera(width, height, fov_y_deg), identity, previous,
                              bias, response)
        frame = MotionFrame(fit.expression, head_rotation=matrix_to_quat(fit.rotation),
                            sequence=sequence, timecode=timecode)
        return frame, fit
