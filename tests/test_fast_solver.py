"""The motion solver's fast path gives the reference path's answers: the bounded QP against
scipy's BVLS, `ExpressionFitter` against `LandmarkFitter.fit`, and the whole solve with
its neutral, on real and rendered faces."""

from __future__ import annotations


import numpy as np
import pytest
from scipy.optimize import lsq_linear
from skimage import data

from avatar_runtime import blas_threads
from avatar_runtime.motion.box_qp import solve_box_qp
from avatar_runtime.motion.expression_fit import ExpressionFitter
from avatar_runtime.motion.features import CHANNELS, RIDGE, feature_model
from avatar_runtime.motion.frame import MotionFrame
from avatar_runtime.motion.solver import MotionSolver
from avatar_runtime.reconstruct.fit import photo_camera
from avatar_runtime.service import _neutral_of

from conftest import over_grey


@pytest.mark.parametrize("seed", range(40))
def test_box_qp_finds_bvls_minimiser(seed):
    rng = np.random.default_rng(seed)
    rows, n = int(rng.integers(5, 120)), int(rng.integers(2, 60))
    design = np.concatenate([rng.normal(size=(rows, n)), np.eye(n) * rng.uniform(0.01, 1.0)])
    target = rng.normal(size=rows + n) * 3
    unbounded = int(rng.integers(0, min(7, n)))
    lower = np.r_[np.zeros(n - unbounded), np.full(unbounded, -np.inf)]
    upper = np.r_[np.ones(n - unbounded), np.full(unbounded, np.inf)]
    expected = lsq_linear(design, target, bounds=(lower, upper), method="bvls", tol=1e-12).x
    for start in (None, rng.uniform(-0.5, 1.5, n)):
        got = solve_box_qp(design.T @ design, design.T @ target, lower, upper, start)
        np.testing.assert_allclose(got, expected, atol=1e-8)


def test_feature_channels_are_the_bvls_answer():
    """FeatureModel.solve on its normal equations == BVLS on the stacked ridge system."""
    model = feature_model()
    n = len(model.span)
    rng = np.random.default_rng(3)
    for _ in range(20):
        neutral = model.template
        observed = neutral + rng.uniform(0, 1, n) @ model.span + rng.normal(0, 0.01, len(neutral))
        design = np.concatenate([model.span.T, np.sqrt(RIDGE) * np.eye(n)])
        target = np.concatenate([observed - neutral, np.zeros(n)])
        expected = lsq_linear(design, target, bounds=(0.0, 1.0), method="bvls", tol=1e-12).x
        np.testing.assert_allclose(model.solve(observed, neutral), expected[:len(CHANNELS)], atol=1e-8)


def test_the_runtime_keeps_numpy_blas_on_one_thread():
    """Set once at import (never per call: OpenBLAS cannot change it under a running call)."""
    if blas_threads.blas_threads() is None:
        pytest.skip("numpy is not built on OpenBLAS here")
    assert blas_threads.blas_threads() == 1
    assert blas_threads.set_blas_threads(2) == 1
    try:
        assert blas_threads.blas_threads() == 2
    finally:
        assert blas_threads.set_blas_threads(1) == 2


def _faces(service, avatar_id):
    """Detected landmarks of the photo and of renders with known weights, head turned."""
    images = [data.astronaut()]
    for weights, yaw in (({"jawOpen": 0.6}, 0.0), ({"eyeBlinkLeft": 1.0, "browInnerUp": 0.5}, 0.3),
                         ({"mouthSmileLeft": 0.8, "eyeBlinkRight": 0.5}, -0.25)):
        frame = MotionFrame.from_weights(weights)
        frame.head_rotation = np.array([0.0, np.sin(yaw / 2), 0.0, np.cos(yaw / 2)], np.float32)
        images.append(over_grey(service.render(avatar_id, frame).rgba))
    return [(service.analyzer.landmarks(rgb).landmarks, rgb.shape[1], rgb.shape[0]) for rgb in images]


def test_expression_fitter_is_the_reference_fit(service, astronaut_id):
    response = service.calibration.get(astronaut_id)
    t = service.avatar(astronaut_id).tensors
    reference = service.solver.fitter
    fast = ExpressionFitter(reference)
    for landmarks, w, h in _faces(service, astronaut_id):
        camera = photo_camera(w, h, 12.0)
        for bias, resp in ((t["landmark_bias"], response), (None, None)):
            expected = reference.fit(landmarks, camera, t["identity"], None, bias, resp)
            got = fast.fit(landmarks, camera, t["identity"], None, bias, resp)
            np.testing.assert_allclose(got.expression, expected.expression, atol=1e-5)
            np.testing.assert_allclose(got.rotation, expected.rotation, atol=1e-6)
            np.testing.assert_allclose(got.translation, expected.translation, atol=1e-7)
            np.testing.assert_allclose(got.error_px, expected.error_px, atol=1e-3)
            # Warm-started from a previous frame's fit, as video tracking does.
            again = reference.fit(landmarks, camera, t["identity"], expected, bias, resp)
            np.testing.assert_allclose(fast.fit(landmarks, camera, t["identity"], expected, bias,
                                                resp).expression, again.expression, atol=1e-5)


def test_fast_solve_reads_what_the_reference_solve_reads(service, astronaut_id):
    response = service.calibration.get(astronaut_id)
    t = service.avatar(astronaut_id).tensors
    reference = MotionSolver(service.analyzer, service.head, reference=True)
    for landmarks, w, h in _faces(service, astronaut_id):
        args = dict(identity=t["identity"], bias=t["landmark_bias"], response=response,
                    neutral=_neutral_of(t))
        expected = reference.solve_landmarks(landmarks, w, h, **args)[0]
        got = service.solver.solve_landmarks(landmarks, w, h, **args)[0]
        np.testing.assert_allclose(got.arkit, expected.arkit, atol=1e-5)
        np.testing.assert_allclose(got.head_rotation, expected.head_rotation, atol=1e-6)
        np.testing.assert_allclose(got.eye_gaze, expected.eye_gaze, atol=1e-5)
