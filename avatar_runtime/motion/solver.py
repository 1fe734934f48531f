"""Image or landmarks -> ARKit weights + head pose, with the avatar's identity held fixed."""

from __future__ import annotations

import threading
from dataclasses import dataclass

import numpy as np

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


# How the main channels (blinks, lids, jaw, smiles, brows, gaze) are read:
# "features": from identity-normalised ratios and the head model's own geometry
#   (motion/features.py): what real faces are read with;
# "fit": from the landmark fit through the avatar's measured response, i.e. how the
#   detector reads this avatar's own renders. On those renders the detector sees lids
#   half open at a full blink and brows that hardly move, which the response knows and
#   the geometry does not; on real faces the response misleads (r 0.6 vs 0.95 on blinks).
READINGS = ("features", "fit")

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
                    neutral: Neutral | None = None, reading: str = "features") -> MotionFrame:
        landmarks = self.analyzer.landmarks(rgb).landmarks
        return self.solve_landmarks(landmarks, rgb.shape[1], rgb.shape[0], identity,
                                    sequence, timecode, fov_y_deg, bias=bias,
                                    response=response, neutral=neutral, reading=reading)[0]

    def solve_landmarks(self, landmarks: np.ndarray, width: int, height: int,
                        identity: np.ndarray | None = None, sequence: int = 0,
                        timecode: float = 0.0, fov_y_deg: float = SOLVER_FOV_DEG,
                        previous: FitResult | None = None,
                        bias: np.ndarray | None = None,
                        response: ExpressionResponse | None = None,
                        neutral: Neutral | None = None,
                        reading: str = "features") -> tuple[MotionFrame, FitResult]:
        """landmarks [478, 2|3] pixels -> (MotionFrame, the fit). Identity None = template head;
        bias [478, 3] = the avatar's `landmark_bias` (its neutral face as the detector sees it);
        response = the avatar's measured expression response (default: the template's);
        neutral = the face at rest: its feature channels, eye gaze and calibrated channels
        are read relative to it (default: the template head at rest). reading: see READINGS."""
        if reading not in READINGS:
            raise ValueError(f"reading must be one of {READINGS}, got {reading!r}")
        if identity is None:
            identity = np.zeros(self.head.num_identity, np.float32)
        fit = self._fit(landmarks, photo_camera(width, height, fov_y_deg), identity, previous,
                        bias, response)
        # No avatar: read against the template head at rest.
        neutral = neutral or Neutral(feature_model().template)
        arkit, gaze = neutral.apply(self.observe(landmarks, fit), fit.expression,
                                    read_features=reading == "features")
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

    features [F]: its identity-normalised features (a calibration frame's, else the
    avatar's render at rest as the detector reads it); the feature channels
    (motion/features.py) and the eye gaze are read relative to them. weights [52] or
    None: what the landmark fit read on the calibration frame, subtracted from every
    fitted channel (a channel at w0 at rest maps w0..1 to 0..1)."""

    features: np.ndarray
    weights: np.ndarray | None = None

    def apply(self, observed: np.ndarray, fitted: np.ndarray,
              read_features: bool = True) -> tuple[np.ndarray, np.ndarray]:
        """(ARKit [52], eye gaze [4]) for features `observed` [F] and the fit's weights [52]
        (read_features False: every channel is the fit's)."""
        model = feature_model()
        arkit = np.asarray(fitted, np.float64).copy()
        if self.weights is not None:
            rest = np.clip(self.weights, 0.0, 0.95)
            arkit = np.clip((arkit - rest) / (1.0 - rest), 0.0, 1.0)
        # The feature channels replace the fit's: on real video they agree with an
        # independent blendshape model far better (blinks r 0.6 -> 0.95, smiles 0.35 ->
        # 0.9); the fit explains every point at once and lets one habit leak into others.
        if read_features:
            arkit[CHANNEL_INDEX] = model.solve(observed, self.features)
        return arkit.astype(np.float32), model.gaze(observed, self.features)
