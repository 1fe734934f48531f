"""Long hair: a curtain under the hair shell, hanging beside the neck and down the back.

Made from the astronaut with her own hair stretched down past the chin
(texture_cases.with_long_hair): the added hair is where the curtain must show, seen
through the photo's own camera; the astronaut herself (short hair) gets no curtain.
"""

from __future__ import annotations

import numpy as np
import pytest
from skimage import data

from avatar_runtime.faces.hair_matte import CHIN, hair_matte
from avatar_runtime.faces.image import encode_png, fit_within
from avatar_runtime.head.hair_curtain import COLUMNS, ROWS
from avatar_runtime.motion.frame import MotionFrame
from avatar_runtime.motion.pose import euler_to_quat
from avatar_runtime.reconstruct.fit_reconstructor import avatar_mesh, source_camera
from avatar_runtime.render.mesh_renderer import MeshRenderer
from avatar_runtime.service import AvatarService

from test_bust import iou
from texture_cases import with_long_hair

CURTAIN_TENSORS = ("hair_curtain", "hair_curtain_texture")


@pytest.fixture(scope="module")
def service(tmp_path_factory):
    return AvatarService(tmp_path_factory.mktemp("store"), calibrate_after_create=False)


@pytest.fixture(scope="module")
def long_haired(service):
    """(avatar, photo as the fit saw it, added hair mask, person matte > 0.5)."""
    rgb = data.astronaut()
    landmarks = service.analyzer.landmarks(rgb).landmarks
    photo, added = with_long_hair(rgb, landmarks, hair_matte(rgb, landmarks, service.analyzer.matte(rgb)).mask)
    avatar = service.avatar(service.create(encode_png(photo), name="long")["id"])
    seen = fit_within(photo, 1024)
    assert seen.shape == photo.shape  # the masks below are in the photo's pixels
    return avatar, photo, added, service.analyzer.matte(photo) > 0.5


def without_curtain(avatar):
    return {k: v for k, v in avatar.tensors.items() if k not in CURTAIN_TENSORS}


def rendered(mesh, motion, camera) -> tuple[np.ndarray, np.ndarray]:
    """(RGB [H, W, 3] float, covered [H, W] bool) of the mesh through `camera`."""
    rgba = MeshRenderer(mesh.faces, mesh.face_uvs, mesh.texture).render(mesh.vertices(motion), camera).rgba
    return rgba[..., :3].astype(float), rgba[..., 3] > 127


def test_long_hair_hangs_where_the_photo_shows_it(service, long_haired):
    """Below the chin the added hair falls in front of the neck and shoulders and beside
    them: with the curtain the render covers it, in the hair's colours."""
    avatar, photo, added, person = long_haired
    assert avatar.tensors["hair_curtain"].shape == (ROWS, COLUMNS, 3)
    camera, motion = source_camera(avatar), MotionFrame(avatar.tensors["source_expression"])
    colour, covered = rendered(avatar_mesh(service.head, avatar.tensors, avatar.meta), motion, camera)
    colour_before, covered_before = rendered(
        avatar_mesh(service.head, without_curtain(avatar), avatar.meta), motion, camera)
    below_chin = np.zeros(added.shape, bool)
    below_chin[int(service.analyzer.landmarks(photo).landmarks[CHIN, 1]):] = True
    hanging = added & below_chin & person
    beside = hanging & ~covered_before  # beyond the bust's outline
    error = np.abs(colour - photo)[hanging & covered].mean(1)
    print(f"hanging hair: {hanging.sum()} px, beside the bust {beside.sum()} px, covered there "
          f"{covered_before[beside].mean():.3f} -> {covered[beside].mean():.3f}; mean colour error "
          f"{np.abs(colour_before - photo)[hanging & covered_before].mean():.1f} -> {error.mean():.1f}; "
          f"person IoU {iou(covered_before, person):.3f} -> {iou(covered, person):.3f}")
    assert beside.sum() > 0.1 * hanging.sum() and covered[beside].mean() >= 0.65
    # In the hair's colours (its strands are ~30 levels apart), not the suit's or the sky's.
    assert error.mean() < 12 and np.median(error) < 10
    assert iou(covered, person) > iou(covered_before, person) + 0.01


def test_short_hair_has_no_curtain(service):
    avatar = service.avatar(service.create(encode_png(data.astronaut()), name="short")["id"])
    assert not set(CURTAIN_TENSORS) & set(avatar.tensors)
    assert avatar_mesh(service.head, avatar.tensors, avatar.meta).curtain is None


def test_hair_beside_one_side_only_is_no_curtain(service):
    """What shows beside the neck on one side alone (the nape of a turned head, a dark
    collar) does not hang a curtain behind the head."""
    rgb = data.astronaut()
    landmarks = service.analyzer.landmarks(rgb).landmarks
    hair = hair_matte(rgb, landmarks, service.analyzer.matte(rgb)).mask
    one_side, _ = with_long_hair(rgb, landmarks, hair, sides=(1,))
    avatar = service.avatar(service.create(encode_png(one_side), name="one side")["id"])
    assert "hair_offset" in avatar.tensors and not set(CURTAIN_TENSORS) & set(avatar.tensors)


def test_the_curtain_turns_rigidly_with_the_head(service, long_haired):
    avatar = long_haired[0]
    mesh = avatar_mesh(service.head, avatar.tensors, avatar.meta)
    count = ROWS * COLUMNS
    rest = mesh.vertices(MotionFrame.neutral())[-count:]
    np.testing.assert_allclose(rest, avatar.tensors["hair_curtain"].reshape(-1, 3), atol=1e-6)
    # An expression leaves it where it is; a turn of the head carries it about the pivot.
    smiling = mesh.vertices(MotionFrame.from_weights({"mouthSmileLeft": 1.0, "jawOpen": 0.6}))[-count:]
    np.testing.assert_allclose(smiling, rest, atol=1e-6)
    rotation = euler_to_quat([0.5, -0.3, 0.1])
    turned = mesh.vertices(MotionFrame.from_weights({}, head_rotation=rotation))[-count:]
    pivot = service.head.head_pivot
    np.testing.assert_allclose(np.linalg.norm(turned - pivot, axis=1), np.linalg.norm(rest - pivot, axis=1), atol=1e-5)
    assert np.abs(turned - rest).max() > 0.02

