"""Fit the parametric head to 2D face landmarks: pose, scale (via depth), identity, expression.

The photo is seen by a pinhole camera at the world origin (OpenGL axes, `Camera(eye(4))`);
the head sits at `rotation @ vertex + translation` in front of it. Perspective projection
makes each landmark equation `f * X - (u - c) * Z = 0` linear in the 3D point, so for a
fixed pose the identity/expression step is a bounded, regularised linear least squares
(`scipy.optimize.lsq_linear`), alternated with a PnP pose update (OpenCV). Residuals are
measured in per cent of the face size so the priors do not depend on image resolution,
and iteratively reweighted (Huber) so a few bad landmarks cannot drag the fit.
"""

from __future__ import annotations

from dataclasses import dataclass

import cv2
import numpy as np
from scipy.optimize import lsq_linear

from ..head.landmarks import FACE_OVAL, LandmarkEmbedding
from ..head.model import HeadModel
from ..motion.arkit import ARKIT_INDEX, NUM_ARKIT
from ..motion.response import ExpressionResponse
from ..render.camera import Camera

# OpenCV camera axes (x right, y down, looking down +Z) from OpenGL ones, and back.
GL_FROM_CV = np.diag([1.0, -1.0, -1.0])
FITTED_EXPRESSIONS = np.array([i for i in range(NUM_ARKIT) if i != ARKIT_INDEX["tongueOut"]])
INNER_LANDMARKS = np.setdiff1d(np.arange(468), FACE_OVAL)


@dataclass(frozen=True)
class FitSettings:
    identity_prior: float = 0.02   # weight of ||identity||^2 (per cent of face size)^2 units
    expression_prior: float = 0.0005
    iterations: int = 5
    secant_iterations: int = 2     # of those, on a non-linear response's secant (see fit)
    huber_percent: float = 1.5     # residuals above this (per cent of face size) are down-weighted
    # Pose from the contour too: it carries the yaw cue the inner landmarks under-report
    # (a 30 deg turn reads ~5 deg short without it), but a photo's contour is often hidden
    # by hair, so avatar creation leaves it out and the motion solver uses it.
    pose_uses_contour: bool = False
    # Solve a pose update together with the expression (one Gauss-Newton system) instead
    # of alternating with PnP: alternation converges slowly when an expression moves
    # many landmarks (a jaw drop read as pitch, then "corrected" by the brows).
    joint_pose: bool = False


@dataclass(frozen=True)
class FitResult:
    rotation: np.ndarray      # [3, 3] head-to-camera rotation (OpenGL camera axes)
    translation: np.ndarray   # [3] metres, head origin in the camera frame
    identity: np.ndarray      # [K]
    expression: np.ndarray    # [52] ARKit weights (Live Link order)
    error_px: np.ndarray      # [478] final reprojection error per landmark

    def vertices(self, head: HeadModel, expression: np.ndarray | None = None) -> np.ndarray:
        """[V, 3] the fitted head placed in the photo camera's frame."""
        shape = head.shape(self.identity, self.expression if expression is None else expression)
        return shape @ self.rotation.T.astype(np.float32) + self.translation.astype(np.float32)


def photo_camera(width: int, height: int, fov_y_deg: float) -> Camera:
    """The camera that took the photo: at the origin, looking down -Z."""
    return Camera(np.eye(4), fov_y_deg, width, height)


class LandmarkFitter:
    """Fits `HeadModel` to landmarks; `identity` fixed -> expression + pose only (the solver)."""

    def __init__(self, head: HeadModel, embedding: LandmarkEmbedding,
                 settings: FitSettings = FitSettings(), detector_response: bool = False):
        """detector_response: fit expressions against the detector's measured landmark travel
        (best for reading motion) instead of the surface's own (what texture baking needs:
        the geometry must land on the photo's features)."""
        self.head, self.embedding, self.settings = head, embedding, settings
        self.base = embedding.points(head, head.template).astype(np.float64)             # [L, 3]
        self.id_basis = embedding.basis(head, head.identity_basis).astype(np.float64)    # [K, L, 3]
        travel = (embedding.expression_basis(head) if detector_response
                  else embedding.basis(head, head.expression_basis))
        self.response = ExpressionResponse.linear(travel.astype(np.float64))
        self.weights = LandmarkEmbedding.default_weights().astype(np.float64)
        bounds = [(-1.0, 1.0) if not n.startswith("phenotype:") else (-0.5, 0.5)
                  for n in head.identity_names]
        self.id_bounds = np.array(bounds).T
        self._pose_landmarks = np.arange(468) if settings.pose_uses_contour else INNER_LANDMARKS

    def fit(self, landmarks: np.ndarray, camera: Camera, identity: np.ndarray | None = None,
            initial: FitResult | None = None, bias: np.ndarray | None = None,
            response: ExpressionResponse | None = None) -> FitResult:
        """landmarks [478, >=2] pixels in `camera`'s image -> FitResult.

        bias [478, 3]: where the detector puts this face's neutral landmarks relative to
        the model's (measured per avatar); it is added to the model's landmark points.
        response: the avatar's measured landmark travel per expression (see
        motion/response.py); default: the fitter's own, linear in the weights.
        """
        uv = np.asarray(landmarks, np.float64)[:, :2]
        base = self.base if bias is None else self.base + bias
        response = response or self.response
        scale = 100.0 / max(np.ptp(uv[:468], axis=0).max(), 1.0)  # px -> per cent of face size
        fixed_identity = identity is not None
        ident = np.zeros(self.head.num_identity) if identity is None else np.asarray(identity, np.float64)
        expr = np.zeros(NUM_ARKIT)
        if initial is not None:
            expr[FITTED_EXPRESSIONS] = initial.expression[FITTED_EXPRESSIONS]
        points = self._points(base, ident, response, expr)
        rvec, tvec = self._initial_pose(points, uv, camera, initial)
        robust = np.ones(len(uv))
        # From scratch, start on the response's secant, then follow its segments.
        coarse = 0 if initial is not None else self.settings.secant_iterations
        for step in range(self.settings.iterations):
            model = response.secant() if step < coarse else response
            viewed = response.bias_from(self._view_direction(rvec, tvec))
            if viewed is not None:  # the neutral reading from where the camera now is
                base = self.base + viewed
            if not self.settings.joint_pose:
                rvec, tvec = self._solve_pose(points, uv, camera, rvec, tvec)
            ident, expr, rvec, tvec = self._solve_step(base, model, uv, camera, rvec, tvec,
                                                       ident, expr, scale, robust, fixed_identity)
            points = self._points(base, ident, model, expr)
            error = self._errors(points, uv, camera, rvec, tvec)
            robust = np.minimum(1.0, self.settings.huber_percent / np.maximum(error * scale, 1e-9))
        if not self.settings.joint_pose:
            rvec, tvec = self._solve_pose(points, uv, camera, rvec, tvec)
            error = self._errors(points, uv, camera, rvec, tvec)
        rot_cv = cv2.Rodrigues(rvec)[0]
        return FitResult(
            rotation=GL_FROM_CV @ rot_cv, translation=GL_FROM_CV @ tvec.ravel(),
            identity=ident.astype(np.float32), expression=expr.astype(np.float32),
            error_px=error.astype(np.float32))

    def fit_views(self, landmarks: list[np.ndarray], cameras: list[Camera],
                  rounds: int = 2) -> tuple[np.ndarray, list[FitResult]]:
        """One identity for several views of one face, each view with its own pose and
        expression: (identity [K], a FitResult per view, in order).

        Starts from the first view's own fit, then alternates: each view fitted with the
        identity fixed (warm-started from its last fit), and the identity re-solved from
        every view's landmarks at once with poses and expressions fixed (one bounded
        linear least squares: N views give N times the evidence against the same prior).
        """
        identity = self.fit(landmarks[0], cameras[0]).identity.astype(np.float64)
        fits = [self.fit(uv, camera, identity=identity) for uv, camera in zip(landmarks, cameras)]
        for _ in range(rounds):
            identity = self._solve_identity(landmarks, cameras, fits)
            fits = [self.fit(uv, camera, identity=identity, initial=fit)
                    for uv, camera, fit in zip(landmarks, cameras, fits)]
        return identity.astype(np.float32), fits

    def _solve_identity(self, landmarks, cameras, fits: list[FitResult]) -> np.ndarray:
        """[K] the identity that best explains every view's landmarks given its fit's pose
        and expression (Huber weights from each fit's residuals)."""
        rows, rhs = [], []
        for view, (landmarks_px, camera, fit) in enumerate(zip(landmarks, cameras, fits)):
            uv = np.asarray(landmarks_px, np.float64)[:, :2]
            scale = 100.0 / max(np.ptp(uv[:468], axis=0).max(), 1.0)
            robust = np.minimum(1.0, self.settings.huber_percent / np.maximum(fit.error_px * scale, 1e-9))
            if view:  # a turned face's contour is its silhouette, not fixed points of the skin
                robust[list(FACE_OVAL)] = 0.0
            rot = GL_FROM_CV @ fit.rotation.astype(np.float64)
            t = GL_FROM_CV @ fit.translation.astype(np.float64)
            slope, offset = self.response.linearise(fit.expression.astype(np.float64))
            fixed = self.base + offset + np.tensordot(fit.expression.astype(np.float64), slope, 1)
            current = (fixed + np.tensordot(fit.identity.astype(np.float64), self.id_basis, 1)) @ rot.T
            w = np.sqrt(self.weights * robust) * scale / (current[:, 2] + t[2])
            k = camera.intrinsics
            for axis in (0, 1):
                g = np.zeros((len(uv), 3))
                g[:, axis] = k[axis, axis]
                g[:, 2] = -(uv[:, axis] - k[axis, 2])
                a = g @ rot
                rows.append(np.einsum("lc,klc->lk", a, self.id_basis) * w[:, None])
                rhs.append(-(np.einsum("lc,lc->l", a, fixed) + g @ t) * w)
        prior = np.full(self.head.num_identity, np.sqrt(self.settings.identity_prior) * 100)
        design = np.concatenate(rows + [np.diag(prior)])
        target = np.concatenate(rhs + [np.zeros(len(prior))])
        return lsq_linear(design, target, bounds=(self.id_bounds[0], self.id_bounds[1]), method="bvls").x

    # -- steps -------------------------------------------------------------------------
    def _points(self, base, ident, response: ExpressionResponse, expr) -> np.ndarray:
        """[L, 3] landmark points (head frame) for identity `ident` and ARKit weights `expr`."""
        slope, offset = response.linearise(expr)
        return (base + np.tensordot(ident, self.id_basis, 1) + offset
                + np.tensordot(expr, slope, 1))

    def _view_direction(self, rvec, tvec) -> np.ndarray:
        """Head frame: from the landmarks' centre toward the camera."""
        centre = -cv2.Rodrigues(rvec)[0].T @ tvec.ravel()
        return centre - self.base.mean(0)

    def _initial_pose(self, points, uv, camera, initial):
        if initial is not None:
            rvec = cv2.Rodrigues(GL_FROM_CV @ initial.rotation)[0]
            return rvec, (GL_FROM_CV @ initial.translation).reshape(3, 1)
        pnp = self._pose_landmarks
        ok, rvec, tvec = cv2.solvePnP(points[pnp], uv[pnp], camera.intrinsics,
                                      None, flags=cv2.SOLVEPNP_SQPNP)
        return rvec, tvec

    def _solve_pose(self, points, uv, camera, rvec, tvec):
        pnp = self._pose_landmarks
        _, rvec, tvec = cv2.solvePnP(points[pnp], uv[pnp], camera.intrinsics,
                                     None, rvec.copy(), tvec.copy(), useExtrinsicGuess=True,
                                     flags=cv2.SOLVEPNP_ITERATIVE)
        return rvec, tvec

    def _errors(self, points, uv, camera, rvec, tvec) -> np.ndarray:
        projected = cv2.projectPoints(points, rvec, tvec, camera.intrinsics, None)[0][:, 0]
        return np.linalg.norm(projected - uv, axis=1)

    def _solve_step(self, base, response, uv, camera, rvec, tvec, ident, expr, scale, robust,
                    fixed_identity):
        """One bounded linear solve for identity (unless fixed), expression and, with
        `joint_pose`, a small pose update: a Gauss-Newton step on the reprojection error.

        Each landmark gives, per image axis a, `g_a . X = 0` with X = R P + t in camera
        axes and g_a = f_a e_a - (u_a - c_a) e_z: linear in the model point P (hence in
        identity and expression), and in a rotation update dw and shift dt through
        X' = X + dw x (R P) + dt, i.e. (R P x g_a) . dw + g_a . dt.
        """
        rot = cv2.Rodrigues(rvec)[0]
        t = tvec.ravel()
        k = camera.intrinsics
        slope, offset = response.linearise(expr)
        with_identity = base + offset + np.tensordot(ident, self.id_basis, 1)
        fixed = with_identity if fixed_identity else base + offset
        current = (with_identity + np.tensordot(expr, slope, 1)) @ rot.T    # [L, 3] R P
        slope = slope[FITTED_EXPRESSIONS]
        depth = current[:, 2] + t[2]
        w = np.sqrt(self.weights * robust) * scale / depth
        rows, rhs = [], []
        for axis in (0, 1):
            g = np.zeros((len(uv), 3))
            g[:, axis] = k[axis, axis]
            g[:, 2] = -(uv[:, axis] - k[axis, 2])
            a = g @ rot                                                     # acts on P
            design = [np.einsum("lc,klc->lk", a, slope)]
            if not fixed_identity:
                design.insert(0, np.einsum("lc,klc->lk", a, self.id_basis))
            if self.settings.joint_pose:
                design += [np.cross(current, g), g]
            rows.append(np.concatenate(design, 1) * w[:, None])
            rhs.append(-(np.einsum("lc,lc->l", a, fixed) + g @ t) * w)
        n_id = 0 if fixed_identity else self.head.num_identity
        n_ex = len(FITTED_EXPRESSIONS)
        n_pose = 6 if self.settings.joint_pose else 0
        prior = np.concatenate([np.full(n_id, self.settings.identity_prior),
                                np.full(n_ex, self.settings.expression_prior), np.zeros(n_pose)])
        design = np.concatenate(rows + [np.diag(np.sqrt(prior) * 100)])
        target = np.concatenate(rhs + [np.zeros(len(prior))])
        lower = np.concatenate([self.id_bounds[0][:n_id], np.zeros(n_ex), np.full(n_pose, -np.inf)])
        upper = np.concatenate([self.id_bounds[1][:n_id], np.ones(n_ex), np.full(n_pose, np.inf)])
        # Same minimiser, smaller problem: ||A x - b||^2 = ||R x - R^-T A^T b||^2 + const with
        # A^T A = R^T R, so the bounded solver works on a square K x K system, not (2L + K) x K.
        chol = np.linalg.cholesky(design.T @ design).T
        reduced = np.linalg.solve(chol.T, design.T @ target)
        solution = lsq_linear(chol, reduced, bounds=(lower, upper), method="bvls").x
        if not fixed_identity:
            ident = solution[:n_id]
        expr = expr.copy()
        expr[FITTED_EXPRESSIONS] = solution[n_id:n_id + n_ex]
        if self.settings.joint_pose:
            update = solution[n_id + n_ex:]
            rvec = cv2.Rodrigues(cv2.Rodrigues(update[:3])[0] @ rot)[0]
            tvec = (t + update[3:]).reshape(3, 1)
        return ident, expr, rvec, tvec
