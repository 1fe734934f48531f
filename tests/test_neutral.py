"""Neutral calibration and eye gaze from the irises (AvatarService level), on our own
renders: faces with known weights."""

from __future__ import annotations

import numpy as np
import pytest

from avatar_runtime import errors
from avatar_runtime.faces.image import encode_png
from avatar_runtime.motion.arkit import ARKIT_INDEX
from avatar_runtime.motion.features import feature_model, features, head_frame
from avatar_runtime.motion.frame import MotionFrame

from conftest import over_grey


def render_png(service, avatar_id, **weights) -> bytes:
    return encode_png(over_grey(service.render(avatar_id, MotionFrame.from_weights(weights)).rgba))


def read(frame: MotionFrame, *names: str) -> float:
    return float(np.mean([frame.arkit[ARKIT_INDEX[n]] for n in names]))


def test_template_features_travel_the_documented_way():
    """The head's own geometry: a blink closes the lid aperture, a jaw drop opens the lips,
    a look to the subject's left moves both irises toward +X."""
    model = feature_model()
    span = dict(zip(("eyeBlinkLeft", "jawOpen", "eyeLookOutLeft", "eyeLookInRight", "browInnerUp"),
                    model.span[[0, 4, 13, 16, 7]]))
    assert span["eyeBlinkLeft"][0] < -0.2          # apertureL
    assert span["jawOpen"][2] > 0.3                # lipGap
    assert span["eyeLookOutLeft"][9] > 0.1 and span["eyeLookInRight"][11] > 0.1  # irisX both +X
    assert span["browInnerUp"][5] > 0.03 and span["browInnerUp"][6] > 0.03
    # Features do not change with the head's turn: rotation is undone.
    rng = np.random.default_rng(0)
    points = rng.normal(size=(478, 3)) * 50
    turn = np.array([[np.cos(0.4), 0, np.sin(0.4)], [0, 1, 0], [-np.sin(0.4), 0, np.cos(0.4)]])
    camera_points = (points @ turn.T) * np.array([1, -1, -1])  # head frame -> MediaPipe pixels
    np.testing.assert_allclose(features(head_frame(camera_points, turn)),
                               features(head_frame(points * np.array([1, -1, -1]), np.eye(3))),
                               atol=1e-9)


@pytest.mark.xfail(strict=True, reason="known regression: since the avatar's texture is baked onto the "
                   "hair-raised scalp the right brow's full frown reads 0.27-0.28 (left 0.37; before, "
                   "0.31 / 0.41): the brow reading is this sensitive to the texture")
def test_raised_brow_source_then_neutral_frame_then_frown(service, astronaut_id):
    """A source whose neutral reads with raised brows: after one neutral frame, a frown reads
    as a frown (browDown > 0.3) and the neutral frame itself reads at rest."""
    raised = render_png(service, astronaut_id, browInnerUp=1.0, browOuterUpLeft=1.0,
                        browOuterUpRight=1.0)
    neutral = render_png(service, astronaut_id)
    frown = render_png(service, astronaut_id, browDownLeft=1.0, browDownRight=1.0)
    driven = service.create(raised, name="created-from-a-raised-brow-render")["id"]
    # The driving face at rest is the raised-brow one: calibrate on it, as a user would
    # press "calibrate" with that face at rest.
    service.calibrate_neutral(driven, image=raised)
    at_rest = service.solve_motion(raised, driven)
    assert read(at_rest, "browInnerUp", "browDownLeft", "browDownRight") < 0.15
    lowered = service.solve_motion(neutral, driven)   # brows come down from the raised rest
    frowning = service.solve_motion(frown, driven)
    print(f"calibrated on raised brows: rest {read(at_rest, 'browDownLeft', 'browDownRight'):.2f}, "
          f"plain {read(lowered, 'browDownLeft', 'browDownRight'):.2f}, "
          f"frown {read(frowning, 'browDownLeft', 'browDownRight'):.2f} browDown")
    assert read(frowning, "browDownLeft") > 0.3 and read(frowning, "browDownRight") > 0.3
    assert read(frowning, "browDownLeft") > read(lowered, "browDownLeft")


@pytest.mark.xfail(strict=True, reason="known weakness: on our renders the detector's brows travel "
                   "less than the head's geometry gives real faces; from a plain rest a full frown "
                   "reads ~0.04")
def test_plain_neutral_then_raise_and_frown_read(service, astronaut_id):
    """Calibrated on the plain neutral, a raise reads raised and a frown reads a frown."""
    raised = render_png(service, astronaut_id, browInnerUp=1.0, browOuterUpLeft=1.0,
                        browOuterUpRight=1.0)
    neutral = render_png(service, astronaut_id)
    frown = render_png(service, astronaut_id, browDownLeft=1.0, browDownRight=1.0)
    driven = service.create(raised, name="created-from-a-raised-brow-render")["id"]
    service.calibrate_neutral(driven, image=neutral)
    try:
        assert read(service.solve_motion(raised, driven), "browInnerUp") > 0.2
        assert read(service.solve_motion(frown, driven), "browDownLeft", "browDownRight") > 0.3
    finally:
        service.reset_neutral(driven)


def test_calibrate_neutral_errors(service, astronaut_id, astronaut_png):
    with pytest.raises(errors.InvalidArgument, match="one neutral frame"):
        service.calibrate_neutral(astronaut_id)
    with pytest.raises(errors.AvatarNotFound):
        service.calibrate_neutral("0" * 16, image=astronaut_png)
    with pytest.raises(errors.NoFaceFound):
        service.calibrate_neutral(astronaut_id, image=encode_png(np.full((64, 64, 3), 128, np.uint8)))


def test_eye_gaze_follows_the_irises(service, astronaut_id):
    """Both eyes turned toward the subject's left: positive yaw on both eyes and the
    matching eyeLook channels; turned right: the opposite."""
    left = service.solve_motion(render_png(service, astronaut_id, eyeLookOutLeft=0.9, eyeLookInRight=0.9),
                                astronaut_id)
    right = service.solve_motion(render_png(service, astronaut_id, eyeLookInLeft=0.9, eyeLookOutRight=0.9),
                                 astronaut_id)
    print(f"gaze looking left {np.degrees(left.eye_gaze).round(1)}, right {np.degrees(right.eye_gaze).round(1)}")
    assert left.eye_gaze is not None and right.eye_gaze is not None
    assert left.eye_gaze[0] > right.eye_gaze[0] + 0.1 and left.eye_gaze[2] > right.eye_gaze[2] + 0.1
    assert read(left, "eyeLookOutLeft") > read(left, "eyeLookInLeft")
    assert read(right, "eyeLookInLeft") > read(right, "eyeLookOutLeft")
    assert read(left, "eyeLookInRight") > read(left, "eyeLookOutRight")
