"""The motion solver's landmark fit, made cheap: identity fixed, expression + 6-dof pose
solved as one Gauss-Newton system per step (`LandmarkFitter.fit` with `joint_pose`).

The same steps and the same minimiser as `LandmarkFitter.fit` (kept as the reference),
computed differently: the identity's landmark points are cached per avatar, the design
is built from the expression travel rotated once into camera axes instead of per-axis
einsums, and the bounded solve runs on the 57 x 57 normal equations (`box_qp`), warm-
started from the previous step, instead of scipy's BVLS on the stacked system.
"""

from __future__ import annotations

import cv2
import numpy as np

from ..lru import LruCache
from ..reconstruct.fit import FITTED_EXPRESSIONS, GL_FROM_CV, FitResult, LandmarkFitter
from ..render.camera import Camera
from .arkit import NUM_ARKIT
from .box_qp import solve_box_qp
from .response import ExpressionResponse

POSE_DOF = 6
_CACHED_IDENTITIES = 16


class ExpressionFitter:
    """`fit(...)` == `fitter.fit(..., identity=identity)` for a `joint_pose` fitter."""

    def __init__(self, fitter: LandmarkFitter):
        if not fitter.settings.joint_pose:
            raise ValueError("ExpressionFitter solves pose with the expression: joint_pose fitters only")
        self.fitter = fitter
        n = len(FITTED_EXPRESSIONS)
        self._lower = np.concatenate([np.zeros(n), np.full(POSE_DOF, -np.inf)])
        self._upper = np.concatenate([np.ones(n), np.full(POSE_DOF, np.inf)])
        self._prior = np.concatenate([np.full(n, fitter.settings.expression_prior * 1e4),
                                      np.zeros(POSE_DOF)])
        self._identity_points: LruCache[np.ndarray] = LruCache(_CACHED_IDENTITIES)
        # Every channel but tongueOut, the last: a slice is a view where an index list copies.
        contiguous = np.array_equal(FITTED_EXPRESSIONS, np.arange(n))
        self._fitted = slice(0, n) if contiguous else FITTED_EXPRESSIONS

    def identity_points(self, identity: np.ndarray) -> np.ndarray:
        """[L, 3] the neutral landmark points of a head with this identity (cached: an
        avatar's identity never changes, and this is the fit's largest product)."""
        f = self.fitter
        return self._identity_points.get_or_make(
            np.asarray(identity, np.float32).tobytes(),
            lambda: f.base + np.tensordot(np.asarray(identity, np.float64), f.id_basis, 1))

    def fit(self, landmarks: np.ndarray, camera: Camera, identity: np.ndarray,
            initial: FitResult | None = None, bias: np.ndarray | None = None,
            response: ExpressionResponse | None = None) -> FitResult:
        f, settings = self.fitter, self.fitter.settings
        uv = np.asarray(landmarks, np.float64)[:, :2]
        neutral = self.identity_points(identity)
        base = neutral if bias is None else neutral + bias
        response = response or f.response
        scale = 100.0 / max(np.ptp(uv[:468], axis=0).max(), 1.0)
        expr = np.zeros(NUM_ARKIT)
        if initial is not None:
            expr[FITTED_EXPRESSIONS] = initial.expression[FITTED_EXPRESSIONS]
        rvec, tvec = f._initial_pose(self._points(base, response, expr), uv, camera, initial)
        robust = np.ones(len(uv))
        coarse = 0 if initial is not None else settings.secant_iterations
        for step in range(settings.iterations):
            model = response.secant() if step < coarse else response
            viewed = response.bias_from(f._view_direction(rvec, tvec))
            if viewed is not None:
                base = neutral + viewed
            expr, rvec, tvec = self._step(base, model, uv, camera.intrinsics, rvec, tvec, expr,
                                          scale, robust)
            error = f._errors(self._points(base, model, expr), uv, camera, rvec, tvec)
            robust = np.minimum(1.0, settings.huber_percent / np.maximum(error * scale, 1e-9))
        return FitResult(rotation=GL_FROM_CV @ cv2.Rodrigues(rvec)[0],
                         translation=GL_FROM_CV @ tvec.ravel(),
                         identity=np.asarray(identity, np.float32), expression=expr.astype(np.float32),
                         error_px=error.astype(np.float32))

    @staticmethod
    def _points(base, response: ExpressionResponse, expr) -> np.ndarray:
        slope, offset = response.linearise(expr)
        return base + offset + np.tensordot(expr, slope, 1)

    def _step(self, base, response, uv, k, rvec, tvec, expr, scale, robust):
        """One bounded Gauss-Newton step (see `LandmarkFitter._solve_step` for the equations:
        per landmark and image axis, g . (R P + t) = 0 with g = f e_axis - (u - c) e_z)."""
        rot = cv2.Rodrigues(rvec)[0]
        t = tvec.ravel()
        slope, offset = response.linearise(expr)
        fixed = base + offset                                       # identity + neutral, head frame
        current = (fixed + np.tensordot(expr, slope, 1)) @ rot.T    # R P
        # [3, E, L] the fitted channels' travel in camera axes (one BLAS product over all of it).
        fitted = slope[self._fitted]
        moved = (rot @ fitted.reshape(-1, 3).T).reshape(3, *fitted.shape[:2])
        at_rest = fixed @ rot.T + t                                 # X without the fitted expression
        w = np.sqrt(self.fitter.weights * robust) * scale / (current[:, 2] + t[2])
        n = len(FITTED_EXPRESSIONS)
        design = np.empty((2, len(uv), n + POSE_DOF))
        rhs = np.empty((2, len(uv)))
        for axis in (0, 1):
            focal, du = k[axis, axis], uv[:, axis] - k[axis, 2]
            g = np.zeros((len(uv), 3))
            g[:, axis], g[:, 2] = focal, -du
            design[axis, :, :n] = (focal * moved[axis] - du * moved[2]).T
            design[axis, :, n:n + 3] = np.cross(current, g)
            design[axis, :, n + 3:] = g
            design[axis] *= w[:, None]
            rhs[axis] = -(focal * at_rest[:, axis] - du * at_rest[:, 2]) * w
        design = design.reshape(-1, n + POSE_DOF)
        hessian = design.T @ design
        hessian[np.diag_indices_from(hessian)] += self._prior
        start = np.concatenate([expr[FITTED_EXPRESSIONS], np.zeros(POSE_DOF)])
        solution = solve_box_qp(hessian, design.T @ rhs.ravel(), self._lower, self._upper, start)
        expr = expr.copy()
        expr[FITTED_EXPRESSIONS] = solution[:n]
        update = solution[n:]
        rvec = cv2.Rodrigues(cv2.Rodrigues(update[:3])[0] @ rot)[0]
        return expr, rvec, (t + update[3:]).reshape(3, 1)
