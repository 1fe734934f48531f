"""Tests of avatar_runtime.motion: frames, pose maths, smoothing, clips, Live Link Face CSV."""

from __future__ import annotations

import dataclasses
import math
import re

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra.numpy import arrays

from avatar_runtime.errors import InvalidArgument, InvalidMotion
from avatar_runtime.motion.arkit import ARKIT_INDEX, ARKIT_NAMES, NUM_ARKIT
from avatar_runtime.motion.clips import CLIP_NAMES, builtin_clip
from avatar_runtime.motion.frame import MotionFrame
from avatar_runtime.motion.livelink_csv import (
    CSV_COLUMNS,
    format_livelink_csv,
    load_livelink_csv,
    write_livelink_csv,
)
from avatar_runtime.motion.pose import (
    IDENTITY_QUAT,
    euler_to_quat,
    matrix_to_quat,
    normalize_quat,
    quat_to_euler,
    quat_to_matrix,
)
from avatar_runtime.motion.response import ExpressionResponse
from avatar_runtime.motion.smoothing import MotionSmoother, OneEuroFilter

FACE = np.array([0.0, 0.0, 1.0])  # the head faces +Z
UP = np.array([0.0, 1.0, 0.0])


def rot_x(a):
    c, s = math.cos(a), math.sin(a)
    return np.array([[1, 0, 0], [0, c, -s], [0, s, c]])


def rot_y(a):
    c, s = math.cos(a), math.sin(a)
    return np.array([[c, 0, s], [0, 1, 0], [-s, 0, c]])


def rot_z(a):
    c, s = math.cos(a), math.sin(a)
    return np.array([[c, -s, 0], [s, c, 0], [0, 0, 1]])


def same_rotation(q1, q2, atol=1e-5) -> bool:
    """q and -q are the same rotation."""
    return abs(abs(float(np.dot(normalize_quat(q1), normalize_quat(q2)))) - 1.0) < atol


def yaw_pitch_deg(frames):
    return np.degrees(np.array([quat_to_euler(f.head_rotation)[:2] for f in frames]))


# --- ARKit names ---------------------------------------------------------------------------


def test_arkit_order_is_live_link_face_order():
    assert NUM_ARKIT == 52 and len(set(ARKIT_NAMES)) == 52
    assert ARKIT_NAMES[:8] == (
        "eyeBlinkLeft",
        "eyeLookDownLeft",
        "eyeLookInLeft",
        "eyeLookOutLeft",
        "eyeLookUpLeft",
        "eyeSquintLeft",
        "eyeWideLeft",
        "eyeBlinkRight",
    )
    assert ARKIT_NAMES[14:18] == ("jawForward", "jawLeft", "jawRight", "jawOpen")
    assert ARKIT_NAMES[-1] == "tongueOut"
    assert ARKIT_INDEX["jawOpen"] == 17


# --- MotionFrame ---------------------------------------------------------------------------


def test_neutral_frame():
    f = MotionFrame.neutral(sequence=7, timecode=1.5)
    assert f.arkit.dtype == np.float32 and f.arkit.shape == (52,) and not f.arkit.any()
    np.testing.assert_array_equal(f.head_rotation, [0, 0, 0, 1])
    np.testing.assert_array_equal(f.head_translation, [0, 0, 0])
    assert f.head_rotation.dtype == np.float32 and f.head_translation.dtype == np.float32
    assert f.eye_gaze is None and f.sequence == 7 and f.timecode == 1.5


def test_default_rotation_is_a_private_copy():
    a, b = MotionFrame.neutral(), MotionFrame.neutral()
    a.head_rotation[0] = 0.5
    assert b.head_rotation[0] == 0 and IDENTITY_QUAT[0] == 0


def test_from_weights_places_names_at_their_index_and_round_trips():
    f = MotionFrame.from_weights(
        {"jawOpen": 0.5, "tongueOut": 1.0, "eyeBlinkLeft": 0.25}, sequence=3
    )
    assert f.arkit[17] == 0.5 and f.arkit[51] == 1.0 and f.arkit[0] == 0.25
    assert np.count_nonzero(f.arkit) == 3 and f.sequence == 3
    w = f.weights()
    assert list(w) == list(ARKIT_NAMES)
    assert w["jawOpen"] == 0.5 and w["mouthClose"] == 0.0
    assert MotionFrame.from_weights(w).weights() == w


def test_from_weights_unknown_name_suggests_spelling():
    with pytest.raises(
        InvalidMotion, match=re.escape("unknown ARKit name 'JawOpen' (did you mean 'jawOpen'?)")
    ):
        MotionFrame.from_weights({"JawOpen": 0.5})
    with pytest.raises(InvalidMotion, match="unknown ARKit name 'smile'; names are the 52"):
        MotionFrame.from_weights({"smile": 0.5})
    with pytest.raises(InvalidMotion, match="weight for 'jawOpen' must be a number, got None"):
        MotionFrame.from_weights({"jawOpen": None})


def test_arkit_errors_are_precise():
    with pytest.raises(InvalidMotion) as e:
        MotionFrame(np.zeros(51))
    assert e.value.message == "arkit must have 52 values, got 51"
    assert e.value.code == "INVALID_ARGUMENT" and isinstance(e.value, InvalidArgument)

    arkit = np.zeros(52)
    arkit[17] = np.nan
    with pytest.raises(InvalidMotion) as e:
        MotionFrame(arkit)
    assert e.value.message == "arkit[17] (jawOpen) is NaN; values must be finite"

    arkit[17] = -np.inf
    with pytest.raises(
        InvalidMotion, match=re.escape("arkit[17] (jawOpen) is -inf; values must be finite")
    ):
        MotionFrame(arkit)

    arkit[17] = 1.5
    with pytest.raises(InvalidMotion) as e:
        MotionFrame(arkit)
    assert e.value.message == (
        "arkit[17] (jawOpen) is 1.5; allowed range is [0, 1] (excursions of up to 0.01 are clipped)"
    )

    with pytest.raises(
        InvalidMotion, match=r"arkit must be a flat list of 52 values, got shape \(2, 26\)"
    ):
        MotionFrame(np.zeros((2, 26)))
    with pytest.raises(InvalidMotion, match="arkit must be 52 numbers, got a non-numeric value"):
        MotionFrame(["a"] * 52)


def test_small_arkit_excursions_are_clipped():
    arkit = np.full(52, 0.5)
    arkit[0], arkit[1], arkit[2], arkit[3] = -0.01, 1.01, -0.004, 1.0000001
    f = MotionFrame(arkit)
    assert f.arkit[0] == 0.0 and f.arkit[1] == 1.0 and f.arkit[2] == 0.0 and f.arkit[3] == 1.0
    assert f.arkit.min() >= 0 and f.arkit.max() <= 1


def test_quaternion_is_normalised_and_zero_rejected():
    f = MotionFrame(np.zeros(52), head_rotation=[0, 0, 0, 2])
    np.testing.assert_array_equal(f.head_rotation, [0, 0, 0, 1])
    f = MotionFrame(np.zeros(52), head_rotation=[1, 1, 1, 1])
    np.testing.assert_allclose(f.head_rotation, [0.5] * 4)
    with pytest.raises(InvalidMotion, match=r"^head_rotation must be a non-zero quaternion"):
        MotionFrame(np.zeros(52), head_rotation=[0, 0, 0, 0])
    with pytest.raises(InvalidMotion, match="head_rotation must have 4 values, got 3"):
        MotionFrame(np.zeros(52), head_rotation=[0, 0, 1])
    with pytest.raises(
        InvalidMotion, match=re.escape("head_rotation[3] (w) is NaN; values must be finite")
    ):
        MotionFrame(np.zeros(52), head_rotation=[0, 0, 0, np.nan])


def test_other_field_errors():
    z = np.zeros(52)
    with pytest.raises(InvalidMotion, match="head_translation must have 3 values, got 2"):
        MotionFrame(z, head_translation=[0, 0])
    with pytest.raises(InvalidMotion, match=re.escape("head_translation[1] (y) is inf")):
        MotionFrame(z, head_translation=[0, np.inf, 0])
    with pytest.raises(
        InvalidMotion, match=re.escape("head_translation[0] (x) is 1e+39, beyond float32 range")
    ):
        MotionFrame(z, head_translation=[1e39, 0, 0])
    with pytest.raises(InvalidMotion, match="eye_gaze must have 4 values, got 2"):
        MotionFrame(z, eye_gaze=[0.1, 0.2])
    with pytest.raises(InvalidMotion, match=re.escape("eye_gaze[2] (right yaw) is NaN")):
        MotionFrame(z, eye_gaze=[0, 0, np.nan, 0])
    for bad in (-1, 1.5, True, "3"):
        with pytest.raises(InvalidMotion, match="sequence must be a non-negative integer"):
            MotionFrame(z, sequence=bad)
    with pytest.raises(InvalidMotion, match="timecode must be a finite number of seconds, got nan"):
        MotionFrame(z, timecode=float("nan"))


def test_fields_are_coerced_and_replace_revalidates():
    f = MotionFrame(
        [0.5] * 52,
        head_translation=[0, 0.1, 0],
        eye_gaze=[0.1, 0, 0.1, 0],
        sequence=np.int64(4),
        timecode=np.float32(2.0),
    )
    assert f.arkit.dtype == np.float32 and f.eye_gaze.dtype == np.float32
    assert type(f.sequence) is int and type(f.timecode) is float
    with pytest.raises(InvalidMotion, match="arkit must have 52 values, got 3"):
        dataclasses.replace(f, arkit=[0, 0, 0])


# --- pose ----------------------------------------------------------------------------------


def test_euler_order_is_yaw_then_pitch_then_roll():
    yaw, pitch, roll = 0.3, -0.2, 0.5
    expected = rot_y(yaw) @ rot_x(pitch) @ rot_z(roll)
    np.testing.assert_allclose(
        quat_to_matrix(euler_to_quat([yaw, pitch, roll])), expected, atol=1e-12
    )


def test_euler_signs():
    # positive yaw turns the face toward +X, the subject's left
    np.testing.assert_allclose(
        quat_to_matrix(euler_to_quat([math.pi / 2, 0, 0])) @ FACE, [1, 0, 0], atol=1e-12
    )
    # positive pitch turns the face down
    np.testing.assert_allclose(
        quat_to_matrix(euler_to_quat([0, math.pi / 2, 0])) @ FACE, [0, -1, 0], atol=1e-12
    )
    # positive roll tips the top of the head toward -X, the subject's right
    np.testing.assert_allclose(
        quat_to_matrix(euler_to_quat([0, 0, math.pi / 2])) @ UP, [-1, 0, 0], atol=1e-12
    )
    np.testing.assert_allclose(euler_to_quat([0, 0, 0]), IDENTITY_QUAT)


def test_pose_functions_are_vectorised():
    rng = np.random.default_rng(0)
    ypr = rng.uniform(-1, 1, (5, 7, 3))
    q = euler_to_quat(ypr)
    assert q.shape == (5, 7, 4)
    m = quat_to_matrix(q)
    assert m.shape == (5, 7, 3, 3)
    assert matrix_to_quat(m).shape == (5, 7, 4)
    np.testing.assert_allclose(quat_to_euler(q), ypr, atol=1e-10)
    np.testing.assert_allclose(quat_to_matrix(q[2, 3]), m[2, 3])
    with pytest.raises(ValueError, match=r"quat must have shape \[\.\.\., 4\], got \(3,\)"):
        quat_to_matrix([0, 0, 1])


angle = st.floats(-math.pi + 1e-3, math.pi - 1e-3)
pitch_angle = st.floats(-math.pi / 2 + 1e-2, math.pi / 2 - 1e-2)


@given(angle, pitch_angle, angle)
def test_euler_quat_round_trip(yaw, pitch, roll):
    q = euler_to_quat([yaw, pitch, roll])
    assert abs(np.linalg.norm(q) - 1) < 1e-12
    np.testing.assert_allclose(quat_to_euler(q), [yaw, pitch, roll], atol=1e-8)


@given(arrays(np.float64, 4, elements=st.floats(-1, 1)).filter(lambda q: np.linalg.norm(q) > 1e-3))
def test_quat_matrix_round_trip(q):
    m = quat_to_matrix(q)
    np.testing.assert_allclose(m @ m.T, np.eye(3), atol=1e-9)
    assert same_rotation(matrix_to_quat(m), q, atol=1e-9)


def test_gimbal_lock_does_not_warn():
    import warnings

    with warnings.catch_warnings():
        warnings.simplefilter("error")
        ypr = quat_to_euler(euler_to_quat([0.3, math.pi / 2, 0.0]))
    assert abs(ypr[1] - math.pi / 2) < 1e-6


# --- One-Euro filter -----------------------------------------------------------------------


def run_filter(filt, samples, fps=60.0):
    return np.array([filt(x, i / fps) for i, x in enumerate(samples)])


def test_constant_input_passes_unchanged():
    x = np.linspace(0, 1, 52)
    out = run_filter(OneEuroFilter(min_cutoff=0.5, beta=2.0), [x] * 50)
    assert (out == x).all()


def test_first_sample_passes_and_reset_forgets():
    f = OneEuroFilter()
    assert f(np.array([3.0]), 0.0)[0] == 3.0
    assert f(np.array([5.0]), 1 / 60)[0] < 5.0
    f.reset()
    assert f(np.array([5.0]), 10.0)[0] == 5.0


def test_noise_variance_drops_a_lot():
    rng = np.random.default_rng(1)
    noisy = 0.5 + 0.05 * rng.standard_normal((600, 8))
    out = run_filter(OneEuroFilter(min_cutoff=1.0, beta=0.0), noisy)
    assert out[60:].var() < noisy[60:].var() / 10  # an EMA at 1 Hz of 60 Hz white noise: ~1/20
    assert abs(out[60:].mean() - 0.5) < 0.01


def steps_to_follow(beta, level=0.9):
    step = [np.zeros(1)] * 10 + [np.ones(1)] * 200
    out = run_filter(OneEuroFilter(min_cutoff=1.0, beta=beta), step)[10:, 0]
    return int(np.argmax(out >= level))


def test_step_lag_shrinks_with_beta():
    lags = [steps_to_follow(b) for b in (0.0, 0.3, 1.0, 10.0)]
    assert lags[0] > lags[1] > lags[2] > lags[3] > 0
    assert lags[0] >= 20  # beta 0: a plain 1 Hz low-pass, ~0.4 s to 90% at 60 fps


def test_channels_are_independent():
    rng = np.random.default_rng(2)
    x = rng.uniform(0, 1, (100, 3))
    together = run_filter(OneEuroFilter(beta=0.5), x)
    for c in range(3):
        alone = run_filter(OneEuroFilter(beta=0.5), x[:, c : c + 1])
        np.testing.assert_allclose(together[:, c], alone[:, 0], rtol=0, atol=1e-15)


def test_non_increasing_time_is_a_usual_step():
    f = OneEuroFilter()
    f(np.zeros(1), 0.0)
    a = f(np.ones(1), 1 / 30)
    b = f(np.ones(1), 1 / 30)  # duplicate timestamp: one more step of the last size
    c = f(np.ones(1), 0.0)  # backwards
    assert np.isfinite([a, b, c]).all() and 0 < a[0] < b[0] < c[0] < 1
    g = OneEuroFilter()
    g(np.zeros(1), 0.0)
    g(np.ones(1), 1 / 30)
    assert g(np.ones(1), 2 / 30)[0] == pytest.approx(b[0])


def test_filter_parameter_errors():
    with pytest.raises(
        InvalidArgument, match="min_cutoff must be a finite frequency > 0 Hz, got 0"
    ):
        OneEuroFilter(min_cutoff=0)
    with pytest.raises(
        InvalidArgument, match="d_cutoff must be a finite frequency > 0 Hz, got nan"
    ):
        OneEuroFilter(d_cutoff=float("nan"))
    with pytest.raises(InvalidArgument, match="beta must be a finite number >= 0, got -1"):
        MotionSmoother(beta=-1)
    f = OneEuroFilter()
    f(np.zeros(3), 0.0)
    with pytest.raises(ValueError, match=r"sample shape changed from \(3,\) to \(4,\)"):
        f(np.zeros(4), 0.1)


# --- MotionSmoother ------------------------------------------------------------------------


def test_smoother_keeps_sequence_timecode_and_unit_quaternion():
    rng = np.random.default_rng(3)
    smoother = MotionSmoother(min_cutoff=1.0, beta=0.5)
    for i, f in enumerate(builtin_clip("demo", fps=30)):
        noisy = dataclasses.replace(
            f,
            head_rotation=f.head_rotation + 0.02 * rng.standard_normal(4),
            eye_gaze=0.1 * rng.standard_normal(4) if i % 7 else None,
        )
        out = smoother(noisy)
        assert out is not noisy and out.sequence == f.sequence and out.timecode == f.timecode
        assert abs(np.linalg.norm(out.head_rotation) - 1) < 1e-6
        assert (out.eye_gaze is None) == (noisy.eye_gaze is None)
        assert out.arkit.dtype == np.float32 and out.arkit.min() >= 0 and out.arkit.max() <= 1


def test_smoother_constant_frame_is_unchanged():
    frame = MotionFrame.from_weights(
        {"jawOpen": 0.3},
        head_rotation=euler_to_quat([0.2, 0.1, 0.0]),
        head_translation=[0.01, 0.0, 0.02],
        eye_gaze=[0.1, 0.0, 0.1, 0.0],
    )
    smoother = MotionSmoother()
    for i in range(20):
        out = smoother(dataclasses.replace(frame, sequence=i, timecode=i / 60))
    np.testing.assert_array_equal(out.arkit, frame.arkit)
    np.testing.assert_allclose(out.head_rotation, frame.head_rotation, atol=1e-7)
    np.testing.assert_array_equal(out.head_translation, frame.head_translation)
    np.testing.assert_array_equal(out.eye_gaze, frame.eye_gaze)


def test_smoother_keeps_quaternion_hemisphere():
    # The same rotation alternately as q and -q: component-wise filtering without the flip
    # would average towards zero; with it the output is the constant rotation.
    q = euler_to_quat([0.4, -0.1, 0.05])
    smoother = MotionSmoother(min_cutoff=0.5)
    for i in range(30):
        out = smoother(
            MotionFrame(np.zeros(52), head_rotation=q if i % 2 else -q, sequence=i, timecode=i / 60)
        )
        assert abs(np.linalg.norm(out.head_rotation) - 1) < 1e-6
        assert same_rotation(out.head_rotation, q)


def test_smoother_reduces_jitter_and_reset_restarts():
    rng = np.random.default_rng(4)
    base = MotionFrame.from_weights({"jawOpen": 0.5})
    smoother = MotionSmoother(min_cutoff=1.0)
    raw, smooth = [], []
    for i in range(300):
        arkit = np.clip(base.arkit + 0.05 * rng.standard_normal(52), 0, 1)
        f = MotionFrame(arkit, sequence=i, timecode=i / 60)
        raw.append(f.arkit[17])
        smooth.append(smoother(f).arkit[17])
    assert np.var(smooth[60:]) < np.var(raw[60:]) / 10
    smoother.reset()
    jump = MotionFrame.from_weights({"jawOpen": 1.0}, timecode=100.0)
    assert smoother(jump).arkit[17] == 1.0


# --- clips ---------------------------------------------------------------------------------


def test_clip_names():
    assert CLIP_NAMES == ("demo", "talk", "turntable-neutral")


@pytest.mark.parametrize("name", CLIP_NAMES)
def test_clips_number_and_time_frames(name):
    frames = builtin_clip(name, fps=30.0)
    assert [f.sequence for f in frames] == list(range(len(frames)))
    assert [f.timecode for f in frames] == [i / 30.0 for i in range(len(frames))]
    assert len(builtin_clip(name, fps=60.0)) == 2 * len(frames)
    # loops cleanly: starts and ends (within easing) on the neutral pose
    for f in (frames[0], frames[-1]):
        assert f.arkit.max() < 0.02 and same_rotation(f.head_rotation, IDENTITY_QUAT, atol=1e-3)


def test_demo_clip_content():
    frames = builtin_clip("demo", fps=30.0)
    assert len(frames) == 180  # 6 s
    arkit = np.array([f.arkit for f in frames])
    peak = dict(zip(ARKIT_NAMES, arkit.max(axis=0), strict=True))
    assert (
        peak["eyeBlinkLeft"] == pytest.approx(1.0, abs=0.05)
        and peak["eyeBlinkRight"] == peak["eyeBlinkLeft"]
    )
    assert peak["mouthSmileLeft"] >= 0.7 and peak["mouthSmileRight"] >= 0.7
    assert peak["jawOpen"] >= 0.5
    assert min(peak["browInnerUp"], peak["browOuterUpLeft"], peak["browOuterUpRight"]) >= 0.8
    blink = arkit[:, ARKIT_INDEX["eyeBlinkLeft"]]
    closes = np.flatnonzero((blink[1:] > 0.5) & (blink[:-1] <= 0.5))
    assert len(closes) == 3
    assert peak["tongueOut"] == 0 and peak["cheekPuff"] == 0

    yaw, pitch = yaw_pitch_deg(frames).T
    assert yaw.max() == pytest.approx(25, abs=0.5) and yaw.min() == pytest.approx(-25, abs=0.5)
    assert pitch.max() == pytest.approx(12, abs=0.5) and pitch.min() == pytest.approx(-12, abs=0.5)
    # yaw sweeps first, then pitch
    assert np.argmax(yaw) < np.argmin(yaw) < np.argmax(pitch) < np.argmin(pitch)
    # eased: no jumps, and it starts slowly (the ease-in) rather than at full speed
    assert np.abs(np.diff(yaw)).max() < 2.0  # peak speed of a 50 deg, 1.5 s eased sweep: 50 deg/s
    assert abs(yaw[1] - yaw[0]) < 0.1 * np.abs(np.diff(yaw)).max()


def test_turntable_clip_is_still_and_neutral():
    frames = builtin_clip("turntable-neutral", fps=24.0)
    assert len(frames) == 96
    for f in frames:
        assert not f.arkit.any() and f.eye_gaze is None
        np.testing.assert_array_equal(f.head_rotation, IDENTITY_QUAT)
        np.testing.assert_array_equal(f.head_translation, 0)


def test_talk_clip_moves_the_mouth():
    frames = builtin_clip("talk", fps=30.0)
    arkit = np.array([f.arkit for f in frames])
    jaw = arkit[:, ARKIT_INDEX["jawOpen"]]
    assert jaw.std() > 0.05 and jaw.max() > 0.3
    crossings = np.flatnonzero((jaw[1:] > 0.15) & (jaw[:-1] <= 0.15))
    assert len(crossings) >= 8  # many syllables in 4 s
    assert (
        arkit[:, ARKIT_INDEX["mouthFunnel"]].max() > 0.1
        and arkit[:, ARKIT_INDEX["mouthPucker"]].max() > 0.1
    )
    assert np.abs(yaw_pitch_deg(frames)).max() < 5


def test_clip_errors():
    with pytest.raises(InvalidArgument) as e:
        builtin_clip("dance")
    assert (
        e.value.message == "unknown clip 'dance'; built-in clips are: demo, talk, turntable-neutral"
    )
    for fps in (0, -30, float("nan"), 1e6, "30"):
        with pytest.raises(InvalidArgument, match=r"fps must be a number in \(0, 1000\]"):
            builtin_clip("demo", fps=fps)


# --- Live Link Face CSV --------------------------------------------------------------------

APP_HEADER = ",".join(CSV_COLUMNS)


def csv_row(
    timecode="14:23:05:12.345", count="61", values=None, head=(0.0, 0.0, 0.0), eyes=(0.0,) * 6
):
    """One data line in the app's column order; `values` maps CSV column name -> value."""
    values = values or {}
    shapes = [str(values.get(c, 0.0)) for c in CSV_COLUMNS[2:54]]
    return ",".join([timecode, count, *shapes, *map(str, head), *map(str, eyes)])


def bad_csv_message(*lines, fps=60.0) -> str:
    with pytest.raises(InvalidMotion) as e:
        load_livelink_csv("\n".join(lines) + "\n", fps=fps)
    return e.value.message


def test_written_header_is_the_apps():
    assert CSV_COLUMNS[:4] == ("Timecode", "BlendShapeCount", "EyeBlinkLeft", "EyeLookDownLeft")
    # recordings list the jaw and mouth Left/Right pairs swapped relative to ARKit order
    assert CSV_COLUMNS[16:20] == ("JawForward", "JawRight", "JawLeft", "JawOpen")
    assert CSV_COLUMNS[23:25] == ("MouthRight", "MouthLeft")
    assert CSV_COLUMNS[53:] == (
        "TongueOut",
        "HeadYaw",
        "HeadPitch",
        "HeadRoll",
        "LeftEyeYaw",
        "LeftEyePitch",
        "LeftEyeRoll",
        "RightEyeYaw",
        "RightEyePitch",
        "RightEyeRoll",
    )
    text = format_livelink_csv([MotionFrame.neutral()], fps=60.0)
    header, row = text.splitlines()
    assert header == APP_HEADER.replace(
        ",LeftEyeYaw,LeftEyePitch,LeftEyeRoll,RightEyeYaw,RightEyePitch,RightEyeRoll", ""
    )
    assert row.split(",")[:2] == ["00:00:00:00.000", "55"]
    gaze = format_livelink_csv(
        [MotionFrame.neutral(), MotionFrame(np.zeros(52), eye_gaze=[0.1, 0.2, 0.3, 0.4])]
    )
    lines = gaze.splitlines()
    assert lines[0] == APP_HEADER
    assert lines[1].split(",")[1] == "61" and lines[1].split(",")[-6:] == ["0"] * 6
    assert [float(v) for v in lines[2].split(",")[-6:]] == pytest.approx([0.1, 0.2, 0, 0.3, 0.4, 0])


def test_load_app_recording_maps_columns_by_name():
    values = {
        "JawLeft": 0.25,
        "JawRight": 0.75,
        "MouthLeft": 0.1,
        "MouthRight": 0.2,
        "EyeBlinkLeft": 0.9,
        "TongueOut": 0.05,
    }
    text = "\n".join(
        [
            APP_HEADER.replace("BlendShapeCount", "BlendshapeCount"),
            csv_row(
                "14:23:05:12.500",
                values=values,
                head=(0.1, -0.2, 0.3),
                eyes=(0.05, 0.02, 0.5, 0.04, 0.03, 0.5),
            ),
            csv_row("14:23:05:13.500"),
            "",
        ]
    )
    frames = load_livelink_csv(text, fps=60.0)
    assert len(frames) == 2
    w = frames[0].weights()
    assert w["jawLeft"] == 0.25 and w["jawRight"] == 0.75 and w["mouthLeft"] == pytest.approx(0.1)
    assert w["mouthRight"] == pytest.approx(0.2) and w["eyeBlinkLeft"] == pytest.approx(0.9)
    assert w["tongueOut"] == pytest.approx(0.05)
    np.testing.assert_allclose(quat_to_euler(frames[0].head_rotation), [0.1, -0.2, 0.3], atol=1e-6)
    np.testing.assert_allclose(
        frames[0].eye_gaze, [0.05, 0.02, 0.04, 0.03], atol=1e-7
    )  # rolls ignored
    assert [f.sequence for f in frames] == [0, 1]
    assert frames[0].timecode == 0.0 and frames[1].timecode == pytest.approx(1 / 60)
    np.testing.assert_array_equal(frames[1].head_translation, 0)


def test_load_is_case_insensitive_in_any_column_order():
    cols = ["timecode", *(n.lower() for n in ARKIT_NAMES[::-1])]
    row = ["00:00:01:00", *("0.5" if n == "jawOpen" else "0" for n in ARKIT_NAMES[::-1])]
    frames = load_livelink_csv("\n".join([",".join(cols), ",".join(row)]) + "\n", fps=30)
    assert frames[0].arkit[17] == 0.5 and np.count_nonzero(frames[0].arkit) == 1
    assert frames[0].eye_gaze is None
    np.testing.assert_array_equal(frames[0].head_rotation, IDENTITY_QUAT)


def test_load_tolerates_bom_crlf_trailing_commas_and_blank_lines(tmp_path):
    lines = [APP_HEADER + ",", csv_row(values={"JawOpen": 0.5}) + ",", "", csv_row() + ","]
    path = tmp_path / "take.csv"
    path.write_bytes(("\ufeff" + "\r\n".join(lines) + "\r\n").encode("utf-8"))
    frames = load_livelink_csv(path)
    assert len(frames) == 2 and frames[0].arkit[17] == 0.5
    message = bad_csv_message(APP_HEADER, "", csv_row(values={"JawOpen": "?"}))
    assert message.startswith("line 3, column 20 (JawOpen)")  # physical line numbers


def test_timecode_parsing():
    def times(*tcs, fps=60.0):
        return [
            f.timecode
            for f in load_livelink_csv(
                "\n".join([APP_HEADER, *(csv_row(tc) for tc in tcs)]), fps=fps
            )
        ]

    # HH:MM:SS:FF.subframe: the fraction is a fraction of a frame
    assert times("14:23:05:12.345", "14:23:05:13.345", "14:23:06:12.345") == pytest.approx(
        [0, 1 / 60, 1.0]
    )
    assert times("10:00:00:00", "10:00:00:15.5", "10:01:00;00", fps=30.0) == pytest.approx(
        [0, 15.5 / 30, 60.0]
    )
    # a take running across midnight
    assert times("23:59:59:59", "00:00:00:00") == pytest.approx([0, 1 / 60])


def test_round_trip_through_a_file(tmp_path):
    frames = builtin_clip("demo", fps=30.0)
    path = tmp_path / "take.csv"
    write_livelink_csv(frames, path, fps=30.0)
    for source in (path, str(path), path.read_text()):
        back = load_livelink_csv(source, fps=30.0)
        assert len(back) == len(frames)
        for a, b in zip(frames, back, strict=True):
            np.testing.assert_array_equal(a.arkit, b.arkit)
            assert same_rotation(a.head_rotation, b.head_rotation, atol=1e-6)
            assert b.timecode == pytest.approx(a.timecode, abs=1e-6) and b.sequence == a.sequence


frame_st = st.tuples(
    arrays(np.float32, 52, elements=st.floats(0, 1, width=32)),
    st.tuples(st.floats(-3.1, 3.1), st.floats(-1.5, 1.5), st.floats(-3.1, 3.1)),
    st.none() | st.tuples(*[st.floats(-0.8, 0.8)] * 4),
    # time in thousandths of a frame (the written resolution), within 23 h at 24 fps
    st.integers(0, 1000 * 24 * 3600 * 23),
)


@settings(max_examples=50, deadline=None)
@given(
    st.lists(frame_st, min_size=1, max_size=5),
    st.sampled_from([24.0, 30.0, 60.0]),
    st.sampled_from(["radians", "degrees", "normalized"]),
)
def test_csv_round_trip(specs, fps, unit):
    specs.sort(key=lambda s: s[3])
    frames = [
        MotionFrame(arkit, euler_to_quat(ypr), eye_gaze=gaze, sequence=i, timecode=mf / 1000 / fps)
        for i, (arkit, ypr, gaze, mf) in enumerate(specs)
    ]
    back = load_livelink_csv(
        format_livelink_csv(frames, fps=fps, angle_unit=unit), fps=fps, angle_unit=unit
    )
    has_gaze = any(f.eye_gaze is not None for f in frames)
    for a, b in zip(frames, back, strict=True):
        np.testing.assert_array_equal(a.arkit, b.arkit)
        assert same_rotation(a.head_rotation, b.head_rotation, atol=1e-6)
        assert b.timecode == pytest.approx(a.timecode - frames[0].timecode, abs=1e-6)
        if not has_gaze:
            assert b.eye_gaze is None
        else:
            expected = np.zeros(4) if a.eye_gaze is None else a.eye_gaze
            np.testing.assert_allclose(b.eye_gaze, expected, atol=1e-6)


def test_angle_units():
    text = "\n".join([APP_HEADER, csv_row(head=(0.5, 0.0, 0.0), eyes=(0.25, 0, 0, 0, 0, 0))])
    for unit, yaw in (
        ("radians", 0.5),
        ("normalized", 0.5 * math.pi),
        ("degrees", math.radians(0.5)),
    ):
        f = load_livelink_csv(text, angle_unit=unit)[0]
        assert quat_to_euler(f.head_rotation)[0] == pytest.approx(yaw, abs=1e-6)
        assert f.eye_gaze[0] == pytest.approx(yaw / 2, abs=1e-6)
    with pytest.raises(
        InvalidArgument, match="angle_unit must be one of radians, degrees, normalized; got 'rad'"
    ):
        load_livelink_csv(text, angle_unit="rad")


def test_csv_errors_name_line_and_column():
    assert (
        bad_csv_message(APP_HEADER, csv_row(), csv_row(values={"JawOpen": "abc"}))
        == "line 3, column 20 (JawOpen): 'abc' is not a finite number"
    )
    assert (
        bad_csv_message(APP_HEADER, csv_row(count="60"))
        == "line 2, column 2 (BlendShapeCount): 60 does not match the 61 curve columns "
        "in the header"
    )
    assert (
        bad_csv_message(APP_HEADER, csv_row(count="x"))
        == "line 2, column 2 (BlendShapeCount): 'x' is not an integer"
    )
    assert (
        bad_csv_message(APP_HEADER, csv_row() + ",0") == "line 2 has 64 fields, the header has 63"
    )
    assert (
        bad_csv_message(APP_HEADER, csv_row(timecode="14:23:xx:00"))
        == "line 2, column 1 (Timecode): '14:23:xx:00' is not a timecode HH:MM:SS:FF[.subframe]"
    )
    assert bad_csv_message(APP_HEADER, csv_row(timecode="14:23:05:45.000"), fps=30.0) == (
        "line 2, column 1 (Timecode): frame field 45 in '14:23:05:45.000' is not below the "
        "frame rate 30 fps; pass the recording's fps"
    )
    assert (
        bad_csv_message(APP_HEADER, csv_row(head=(0.1, "inf", 0.0)))
        == "line 2, column 56 (HeadPitch): 'inf' is not a finite number"
    )
    assert bad_csv_message(APP_HEADER, csv_row(values={"TongueOut": 2})).startswith(
        "line 2: arkit[51] (tongueOut) is 2; allowed range is [0, 1]"
    )


def test_csv_header_errors():
    no_jaw = APP_HEADER.replace("JawOpen,", "").replace(",TongueOut", "")
    assert bad_csv_message(no_jaw, "x") == (
        "line 1: missing required column(s) JawOpen, TongueOut; a Live Link Face CSV has Timecode, "
        "BlendShapeCount and the 52 ARKit curves"
    )
    assert bad_csv_message(APP_HEADER.replace(",HeadRoll", ""), "x").startswith(
        "line 1: header has some of HeadYaw, HeadPitch, HeadRoll but not HeadRoll"
    )
    assert (
        bad_csv_message(APP_HEADER.replace("TongueOut", "jawopen"), "x")
        == "line 1: column 'jawopen' appears twice (columns 20 and 54)"
    )
    assert (
        bad_csv_message("", "")
        == "Live Link Face CSV is empty: expected a header line starting with Timecode"
    )
    assert bad_csv_message(APP_HEADER) == "Live Link Face CSV has a header but no frames"


def test_csv_unreadable_path_and_bad_fps(tmp_path):
    with pytest.raises(InvalidArgument, match="cannot read Live Link Face CSV .*missing.csv"):
        load_livelink_csv(tmp_path / "missing.csv")
    with pytest.raises(InvalidArgument, match=r"fps must be a number in \(0, 1000\]"):
        load_livelink_csv(APP_HEADER + "\n", fps=0)
    with pytest.raises(InvalidMotion, match="frame 0: timecode -1 s is negative"):
        format_livelink_csv([MotionFrame.neutral(timecode=-1.0)])


# --- measured expression response ----------------------------------------------------

def _response(rng: np.random.Generator) -> ExpressionResponse:
    travel = rng.normal(size=(2, NUM_ARKIT, 5, 3))
    return ExpressionResponse(np.array([0.5, 1.0]), travel)


@given(st.lists(st.floats(0.0, 1.0), min_size=NUM_ARKIT, max_size=NUM_ARKIT))
@settings(max_examples=50, deadline=None)
def test_linearised_response_is_exact_where_it_is_linearised(weights):
    """offset + slope . w equals the piecewise-linear response at w, for every channel."""
    response = _response(np.random.default_rng(0))
    w = np.array(weights)
    slope, offset = response.linearise(w)
    knots = np.array([0.0, 0.5, 1.0])
    values = np.concatenate([np.zeros((1, NUM_ARKIT, 5, 3)), response.travel])
    expected = sum(np.stack([np.interp(w[k], knots, values[:, k, i, j])
                             for i in range(5) for j in range(3)]).reshape(5, 3)
                   for k in range(NUM_ARKIT))
    np.testing.assert_allclose(offset + np.tensordot(w, slope, 1), expected, atol=1e-9)


def test_response_knots_and_secant():
    response = _response(np.random.default_rng(1))
    for level, i in ((0.5, 0), (1.0, 1)):
        w = np.zeros(NUM_ARKIT)
        w[3] = level
        slope, offset = response.linearise(w)
        np.testing.assert_allclose(offset + slope[3] * level, response.travel[i, 3])
    secant = response.secant()
    np.testing.assert_allclose(secant.travel[0], response.travel[1])
    assert list(secant.levels) == [1.0]


def test_view_bias_interpolates_between_measured_directions():
    bias = np.arange(3 * 5, dtype=float).reshape(3, 5, 1, 1) * np.ones((1, 1, 4, 3))
    response = dataclasses.replace(
        _response(np.random.default_rng(2)), view_bias=bias,
        azimuths=np.radians([-30, -15, 0, 15, 30]), elevations=np.radians([-15, 0, 15]))

    def towards(azimuth_deg, elevation_deg):
        a, e = np.radians(azimuth_deg), np.radians(elevation_deg)
        return np.array([np.sin(a) * np.cos(e), np.sin(e), np.cos(a) * np.cos(e)]) * 1.3

    np.testing.assert_allclose(response.bias_from(towards(0, 0)), bias[1, 2])
    np.testing.assert_allclose(response.bias_from(towards(7.5, 0)), (bias[1, 2] + bias[1, 3]) / 2)
    np.testing.assert_allclose(response.bias_from(towards(-15, 7.5)), (bias[1, 1] + bias[2, 1]) / 2)
    np.testing.assert_allclose(response.bias_from(towards(80, -40)), bias[0, 4])  # clamped
    assert _response(np.random.default_rng(3)).bias_from(towards(0, 0)) is None
