"""Image or landmarks -> ARKit weights + head pose, with the avatar's identity held fixed."""

from __future__ import annotations

import threading
from dataclasses import dataclass

import numpy as np

from ..blas_threads import single_blas_thread
from ..faces.detector import FaceAnalyzer
from ..head.landmarks import load_landmark_embedding
from ..head.model import HeadModel, load_head_model
from ..reconstruct.fit import FitResult, FitSettings, LandmarkFitter, photo_camera
from ..render.mesh_renderer import MeshRenderer
from .expression_fit import ExpressionFitter
from .features import CHANNEL_INDEX, feature_model, features, head_frame
from .frame import MotionFrame
from .pose import matrix_to_quat
from .response import GREY, ExpressionResponse, measure_response

SOLVER_FOV_DEG = 12.0


class MotionSolver:
    """Solves one frame at a time; pass the previous result to warm-start video tracking."""

    def __init__(self, analyzer: FaceAnalyzer, head: HeadModel | None = None,
                 reference: bool = False):
        """reference: fit with `LandmarkFitter.fit` itself (the slow, plain formulation the
        fast `ExpressionFitter` is checked against) instead of `ExpressionFitter`."""
        self.analyzer = analyzer
        self.head = head or load_head_model()
        self.fitter = LandmarkFitter(self.head, load_landmark_embedding(),
                                     FitSettings(pose_uses_contour=True, joint_pose=True,
                                                 iterations=6), detector_response=True)
        self._fit = self.fitter.fit if reference else ExpressionFitter(self.fitter).fit

    def measure_response(self, identity: np.ndarray, texture: np.ndarray,
                         cancelled: threading.Event | None = None, mesh=None) -> ExpressionResponse | None:
        """How this solver's detector reads the avatar (identity + UV texture): rendered
        and detected per channel and view (see motion/response.py); a few seconds.
        mesh: the avatar's `AvatarMesh` (hair and bust rendered too, as drives show them)."""
        if mesh is None:
            renderer = MeshRenderer(self.head.faces, self.head.face_uvs, texture, aa_samples=4)
            whole = lambda vertices: vertices  # noqa: E731
        else:
            renderer = MeshRenderer(mesh.faces, mesh.face_uvs, mesh.texture, aa_samples=4)
            whole = mesh.around
        return measure_response(self.head, self.fitter.embedding, self.analyzer, identity,
                                lambda vertices, camera: renderer.render(whole(vertices), camera, GREY).rgba[..., :3],
                                self.fitter.response, cancelled=cancelled)

    def solve_image(self, rgb: np.ndarray, identity: np.ndarray | None = None,
                    sequence: int = 0, timecode: float = 0.0,
                    fov_y_deg: float = SOLVER_FOV_DEG, bias: np.ndarray | None = None,
                    response: ExpressionResponse | None = None,
                    neutral: Neutral | None = None) -> MotionFrame:
        landmarks = self.analyzer.landmarks(rgb).landmarks
        return self.solve_landmarks(landmarks, rgb.shape[1], rgb.shape[0], identity,
                                    sequence, timecode, fov_y_deg, bias=bias,
                                    response=response, neutral=neutral)[0]

    def solve_landmarks(self, landmarks: np.ndarray, width: int, height: int,
                        identity: np.ndarray | None = None, sequence: int = 0,
                        timecode: float = 0.0, fov_y_deg: float = SOLVER_FOV_DEG,
                        previous: FitResult | None = None,
                        bias: np.ndarray | None = None,
                        response: ExpressionResponse | None = None,
                        neutral: Neutral | None = None) -> tuple[MotionFrame, FitResult]:
        """landmarks [478, 2|3] pixels -> (MotionFrame, the fit). Identity None = template head;
        bias [478, 3] = the avatar's `landmark_bias` (its neutral face as the detector sees it);
        response = the avatar's measured expression response (default: the template's);
        neutral = the face at rest: its feature channels, eye gaze and calibrated channels
        are read relative to it (without one, every channel is the landmark fit's)."""
        if identity is None:
            identity = np.zeros(self.head.num_identity, np.float32)
        with single_blas_thread():  # a few dozen unknowns: threads cost more than they give
            fit = self._fit(landmarks, photo_camera(width, height, fov_y_deg), identity, previous,
                            bias, response)
            arkit, gaze = fit.expression, None
            if neutral is not None:
                arkit, gaze = neutral.apply(self.observe(landmarks, fit), fit.expression)
        frame = MotionFrame(arkit, head_rotation=matrix_to_quat(fit.rotation), eye_gaze=gaze,
                            sequence=sequence, timecode=timecode)
        return frame, fit

    def observe(self, landmarks: np.ndarray, fit: FitResult) -> np.ndarray:
        """[F] the identity-normalised features (motion/features.py) of detected landmarks
        [478, 2|3], in the head frame the fit found."""
        points = np.zeros((len(landmarks), 3))
        points[:, :min(3, landmarks.shape[1])] = landmarks[:, :3]
        return features(head_frame(points, fit.rotation))


@dataclass(frozen=True)
class Neutral:
    """A face at rest, what live motion is read against (as Live Link Face's calibration).

    features [F]: its identity-normalised features; weights [52] or None: what the landmark
    fit reads on it, subtracted from every fitted channel (a channel at w0 at rest maps
    w0..1 to 0..1), and the feature channels (motion/features.py) then replace the fit's.
    None until a neutral frame was sent: only the eye gaze is read from the features."""

    features: np.ndarray
    weights: np.ndarray | None = None

    def apply(self, observed: np.ndarray, fitted: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """(ARKit [52], eye gaze [4]) for features `observed` [F] and the fit's weights [52]."""
        model = feature_model()
        arkit = np.asarray(fitted, np.float64).copy()
        if self.weights is not None:
            # Calibrated on the driving face itself: its features are read against its own
            # rest. Uncalibrated, the fit's channels are kept: the features' spans are the
            # template's geometry, which the detector under-reads on rendered faces.
            rest = np.clip(self.weights, 0.0, 0.95)
            arkit = np.clip((arkit - rest) / (1.0 - rest), 0.0, 1.0)
            arkit[CHANNEL_INDEX] = model.solve(observed, self.features)
        return arkit.astype(np.float32), model.gaze(observed, self.features)
