"""Eyes and mouth, measured on renders: gaze turns the eyeballs, a blink hides them on every
face, jawOpen shows teeth in a dark mouth, tongueOut shows the tongue; the iris colour
comes from the photo."""

from __future__ import annotations

import numpy as np
import pytest
from face_parts import MISS, face_image, part_image, recentred

from avatar_runtime.head.model import EYE_LEFT, EYE_PARTS, MOUTH_INTERIOR, SKIN, TEETH
from avatar_runtime.motion.frame import MotionFrame
from avatar_runtime.reconstruct.face_parts import DEFAULT_IRIS, PUPIL, iris_colour, mouth_cavity
from avatar_runtime.reconstruct.texture import current_texture, texel_map
from avatar_runtime.render.camera import Camera

LUMA = np.array([0.299, 0.587, 0.114])
FRONT = Camera.orbit(width=512, height=512)


@pytest.fixture(scope="module")
def identities(service, astronaut_id) -> list[np.ndarray]:
    """The astronaut's fitted identity and four random ones inside the fitter's bounds."""
    head = service.head
    rng = np.random.default_rng(11)
    bound = np.array([0.5 if n.startswith("phenotype:") else 1.0 for n in head.identity_names])
    randoms = [np.clip(rng.normal(0, 0.25, head.num_identity), -1, 1) * bound for _ in range(4)]
    return [service.avatar(astronaut_id).tensors["identity"], *randoms]


def render(service, avatar_id, weights, camera=FRONT, **motion):
    frame = MotionFrame.from_weights(weights, **motion)
    return service.render(avatar_id, frame, camera).rgba, service.vertices(avatar_id, frame)


def dark_centroid(service, avatar_id, weights, eye=EYE_LEFT, **motion) -> np.ndarray:
    """[2] pixel centroid (x, y) of the iris and pupil of `eye`: its pixels on the render
    darker than half the sclera's brightness."""
    rgba, vertices = render(service, avatar_id, weights, **motion)
    on_eye = part_image(service.head, vertices, FRONT) == eye
    luma = rgba[..., :3] @ LUMA
    dark = on_eye & (luma < 0.5 * np.percentile(luma[on_eye], 95))
    assert dark.sum() > 40, "the iris shows"
    ys, xs = np.nonzero(dark)
    return np.array([xs.mean(), ys.mean()])


def test_eye_look_out_left_turns_the_left_eye_toward_the_subjects_left(service, astronaut_id):
    rest = dark_centroid(service, astronaut_id, {})
    out = dark_centroid(service, astronaut_id, {"eyeLookOutLeft": 1.0})
    half = dark_centroid(service, astronaut_id, {"eyeLookOutLeft": 0.5})
    # ~19 deg on a 16 mm eyeball: its front moves ~5 mm, ~10 px at this framing; the
    # subject's left is image right from the front.
    travel = out - rest
    print(f"iris travel at eyeLookOutLeft=1: {travel} px, at 0.5: {half - rest} px")
    assert 5.0 < travel[0] < 16.0 and abs(travel[1]) < 2.0
    assert 0.3 < (half - rest)[0] / travel[0] < 0.7
    # The right eye stays put.
    still = dark_centroid(service, astronaut_id, {"eyeLookOutLeft": 1.0}, eye=EYE_PARTS[1])
    assert np.abs(still - dark_centroid(service, astronaut_id, {}, eye=EYE_PARTS[1])).max() < 0.5


def test_eye_gaze_turns_the_eyes_and_overrides_the_look_weights(service, astronaut_id):
    rest = dark_centroid(service, astronaut_id, {})
    yaw = dark_centroid(service, astronaut_id, {}, eye_gaze=[0.3, 0.0, 0.3, 0.0])
    up = dark_centroid(service, astronaut_id, {}, eye_gaze=[0.0, 0.25, 0.0, 0.25])
    assert (yaw - rest)[0] > 5.0 and abs((yaw - rest)[1]) < 2.0
    down = dark_centroid(service, astronaut_id, {}, eye_gaze=[0.0, -0.25, 0.0, -0.25])
    # The lids cover part of a raised or lowered iris, so its visible centre moves less.
    assert (up - rest)[1] < -1.5 and (down - rest)[1] > 1.5  # up: the iris rises in the image
    both = dark_centroid(service, astronaut_id, {"eyeLookInLeft": 1.0}, eye_gaze=[0.3, 0.0, 0.3, 0.0])
    assert np.abs(both - yaw).max() < 2.0


def test_full_blink_hides_the_eyes_on_every_face(service, identities):
    head = service.head
    blink = MotionFrame.from_weights({"eyeBlinkLeft": 1.0, "eyeBlinkRight": 1.0}).arkit
    for identity in identities:
        for yaw in (-30, 0, 30):
            camera = Camera.orbit(yaw_deg=yaw, width=512, height=512)
            open_px = np.isin(part_image(head, recentred(head, head.shape(identity)), camera), EYE_PARTS).sum()
            shut_px = np.isin(part_image(head, recentred(head, head.shape(identity, blink)), camera), EYE_PARTS).sum()
            assert open_px > 300 and shut_px == 0, (yaw, open_px, shut_px)


def test_half_blink_still_shows_the_eyes(service, identities):
    head = service.head
    half = MotionFrame.from_weights({"eyeBlinkLeft": 0.5, "eyeBlinkRight": 0.5}).arkit
    for identity in identities:
        open_px = np.isin(part_image(head, recentred(head, head.shape(identity)), FRONT), EYE_PARTS).sum()
        half_px = np.isin(part_image(head, recentred(head, head.shape(identity, half)), FRONT), EYE_PARTS).sum()
        assert 0.2 * open_px < half_px < 0.9 * open_px


def test_jaw_open_shows_bright_teeth_in_a_dark_mouth(service, astronaut_id):
    head = service.head
    _, vertices = render(service, astronaut_id, {})
    resting = (part_image(head, vertices, FRONT) == TEETH).sum()  # a slit between the lips
    rgba, vertices = render(service, astronaut_id, {"jawOpen": 1.0})
    faces = face_image(head, vertices, FRONT)
    parts = np.where(faces == MISS, MISS, head.part_labels[head.faces[np.maximum(faces, 0), 0]])
    luma = rgba[..., :3] @ LUMA
    teeth = parts == TEETH
    assert teeth.sum() > max(150, 5 * resting) and np.percentile(luma[teeth], 75) > 170
    skin_tone = np.median(luma[parts == SKIN])
    cavity = (faces != MISS) & mouth_cavity(head)[head.faces[np.maximum(faces, 0)]].all(-1)
    tongue = parts == MOUTH_INTERIOR
    print(f"teeth {teeth.sum()} px, cavity {cavity.sum()} px at luma {luma[cavity].mean():.0f}, "
          f"tongue {tongue.sum()} px at {luma[tongue].mean():.0f}, skin {skin_tone:.0f}")
    assert cavity.sum() > 100 and luma[cavity].mean() < 0.5 * skin_tone
    assert tongue.sum() > 100 and luma[tongue].mean() < 0.6 * skin_tone


def test_tongue_out_shows_the_tongue_past_the_teeth(service, astronaut_id):
    head = service.head
    _, v_in = render(service, astronaut_id, {"jawOpen": 0.4})
    _, v_out = render(service, astronaut_id, {"jawOpen": 0.4, "tongueOut": 1.0})
    tongue_in = (part_image(head, v_in, FRONT) == MOUTH_INTERIOR).sum()
    tongue_out = (part_image(head, v_out, FRONT) == MOUTH_INTERIOR).sum()
    assert tongue_out > 1.5 * tongue_in and tongue_out > 400
    tongue = head.part_labels == MOUTH_INTERIOR
    teeth_front = v_out[head.part_labels == TEETH, 2].max()
    assert v_out[tongue, 2].max() > teeth_front + 0.005  # the tip well past the teeth


def test_iris_colour_is_read_from_the_iris_ring():
    photo = np.full((200, 200, 3), 200, np.uint8)
    landmarks = np.zeros((478, 3))
    for centre, (x, y) in ((468, (60, 100)), (473, (140, 100))):
        landmarks[centre, :2] = (x, y)
        landmarks[centre + 1:centre + 5, :2] = [(x + 10, y), (x, y - 10), (x - 10, y), (x, y + 10)]
        gy, gx = np.mgrid[0:200, 0:200]
        r = np.hypot(gx + 0.5 - x, gy + 0.5 - y)
        photo[r < 10] = (40, 90, 160)   # blue iris
        photo[r < 3.5] = (5, 5, 5)      # pupil
    np.testing.assert_allclose(iris_colour(photo, landmarks), (40, 90, 160), atol=1)
    np.testing.assert_array_equal(iris_colour(photo, np.zeros((478, 3))), DEFAULT_IRIS)


def test_a_texture_baked_for_the_older_head_gets_eyes_and_mouth_painted_in(service):
    head = service.head
    blank = np.full((1024, 1024, 3), 180, np.uint8)  # what the old bake left in the new islands
    assert current_texture(head, blank, {"head_vertices": head.num_vertices}) is blank
    upgraded = current_texture(head, blank, {"head_vertices": 4538})
    tm = texel_map(head, 1024)
    part = head.part_labels[head.faces[tm.triangles, 0]]
    texels = upgraded.reshape(-1, 3)[tm.texels]
    changed = (texels != 180).any(1)
    assert changed[part == EYE_LEFT].mean() > 0.95 and changed[part == TEETH].mean() > 0.95
    assert (np.abs(texels[part == EYE_LEFT] - PUPIL).max(1) < 10).sum() > 20  # a pupil
    assert not changed[(part == SKIN) & ~mouth_cavity(head)[head.faces[tm.triangles]].any(1)].any()
