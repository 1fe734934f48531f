"""The whole bust: hair with volume over the scalp, neck and shoulders welded to the head.

Measured through the photo's own camera against what the photo shows (its person matte
and hair region), on the astronaut; the bald head (the same avatar without its layers)
is the baseline each layer must beat.
"""

from __future__ import annotations

import math

import numpy as np
import pytest
from skimage import data

from avatar_runtime.faces.hair_matte import CHIN, hair_matte
from avatar_runtime.faces.image import encode_png, fit_within
from avatar_runtime.head.bust import load_bust_model
from avatar_runtime.head.hair import hair_shell
from avatar_runtime.motion.frame import MotionFrame
from avatar_runtime.motion.pose import euler_to_quat
from avatar_runtime.reconstruct.fit_reconstructor import avatar_mesh, source_camera
from avatar_runtime.render.avatar_mesh import AvatarMesh
from avatar_runtime.render.camera import Camera
from avatar_runtime.render.mesh_renderer import MeshRenderer
from avatar_runtime.service import AvatarService


@pytest.fixture(scope="module")
def service(tmp_path_factory):
    return AvatarService(tmp_path_factory.mktemp("store"), calibrate_after_create=False)


@pytest.fixture(scope="module")
def astronaut(service):
    avatar = service.avatar(service.create(encode_png(data.astronaut()), name="astronaut")["id"])
    photo = fit_within(data.astronaut(), 1024)
    landmarks = service.analyzer.landmarks(photo).landmarks
    person = service.analyzer.matte(photo)
    return avatar, photo, landmarks, person


def coverage(mesh: AvatarMesh, motion: MotionFrame, camera: Camera) -> np.ndarray:
    """[H, W] bool: where the mesh covers the image."""
    renderer = MeshRenderer(mesh.faces, mesh.face_uvs, mesh.texture)
    return renderer.render(mesh.vertices(motion), camera).rgba[..., 3] > 127


def iou(a: np.ndarray, b: np.ndarray) -> float:
    return float((a & b).sum() / max((a | b).sum(), 1))


def layers(service, avatar, hair=True, bust=True) -> AvatarMesh:
    t = avatar.tensors
    return AvatarMesh(service.head, t["identity"], t["texture"],
                      hair=hair_shell(service.head, t["hair_offset"]) if hair else None,
                      bust=load_bust_model() if bust else None, bust_texture=t["bust_texture"],
                      shoulders=t["shoulder_widths"])


def test_hair_fills_the_photos_head_silhouette(service, astronaut):
    avatar, photo, landmarks, person = astronaut
    head_region = hair_matte(photo, landmarks, person).head
    above_chin = np.zeros(head_region.shape, bool)
    above_chin[: int(landmarks[CHIN, 1])] = True
    motion, camera = MotionFrame(avatar.tensors["source_expression"]), source_camera(avatar)
    bald = iou(coverage(layers(service, avatar, hair=False, bust=False), motion, camera) & above_chin,
               head_region & above_chin)
    haired = iou(coverage(layers(service, avatar, bust=False), motion, camera) & above_chin,
                 head_region & above_chin)
    print(f"head silhouette IoU above the chin: bald {bald:.3f}, with hair {haired:.3f}")
    assert haired >= 0.88 and haired > bald + 0.1
    offset = avatar.tensors["hair_offset"]
    assert 0.01 < offset.max() <= 0.07  # centimetres of hair, not a helmet


def test_the_bust_covers_the_person(service, astronaut):
    avatar, photo, landmarks, person = astronaut
    motion, camera = MotionFrame(avatar.tensors["source_expression"]), source_camera(avatar)
    head_only = iou(coverage(layers(service, avatar, bust=False), motion, camera), person > 0.5)
    whole = iou(coverage(layers(service, avatar), motion, camera), person > 0.5)
    print(f"person silhouette IoU: head {head_only:.3f}, bust {whole:.3f}")
    assert whole >= 0.8 and whole > 4 * head_only


def test_the_service_renders_hair_and_bust(service, astronaut):
    avatar = astronaut[0]
    rendered = service.render(avatar.id, MotionFrame.neutral(), Camera.orbit(0, 0, 1.6, target=(0, -0.15, 0)))
    bare = coverage(layers(service, avatar, hair=False, bust=False), MotionFrame.neutral(),
                    Camera.orbit(0, 0, 1.6, target=(0, -0.15, 0)))
    covered = rendered.rgba[..., 3] > 127
    assert covered.sum() > 2 * bare.sum() and (covered | bare).sum() == covered.sum()


def test_the_head_turns_on_the_neck_without_tearing(service, astronaut):
    avatar = astronaut[0]
    mesh = avatar_mesh(service.head, avatar.tensors, avatar.meta)
    head, bust = service.head, mesh.bust
    start = head.num_vertices + mesh.hair.num_vertices
    for yaw, pitch, roll in ((40, 0, 0), (-35, 20, 10), (0, -25, 0)):
        rotation = euler_to_quat([math.radians(yaw), math.radians(pitch), math.radians(roll)])
        vertices = mesh.vertices(MotionFrame.from_weights({"jawOpen": 0.7}, head_rotation=rotation))
        body = vertices[start:]
        np.testing.assert_array_equal(body[bust.seam_body], vertices[bust.seam_head])
        # The neck stretches smoothly: no bust edge lands more than 2 cm from its rest length.
        rest = mesh.vertices(MotionFrame.neutral())[start:]
        edges = np.concatenate([bust.faces[:, [0, 1]], bust.faces[:, [1, 2]], bust.faces[:, [2, 0]]])
        stretch = (np.linalg.norm(body[edges[:, 0]] - body[edges[:, 1]], axis=1)
                   - np.linalg.norm(rest[edges[:, 0]] - rest[edges[:, 1]], axis=1))
        assert np.abs(stretch).max() < 0.02
    # Seen from the side with the head turned, the neck shows no gap between head and bust.
    turned = MotionFrame.from_weights({}, head_rotation=euler_to_quat([math.radians(40), 0.0, 0.0]))
    side = Camera.orbit(90, 0, 1.2, target=(0, -0.12, 0), width=256, height=256)
    renderer = MeshRenderer(mesh.faces, mesh.face_uvs, mesh.texture)
    alpha = renderer.render(mesh.vertices(turned), side).rgba[..., 3]
    pixels, _ = side.project(mesh.vertices(turned)[head.num_vertices + mesh.hair.num_vertices:][bust.seam_body])
    rows = slice(int(pixels[:, 1].min()) - 3, int(pixels[:, 1].max()) + 4)
    column = int(np.median(pixels[:, 0]))
    assert (alpha[rows, column] == 255).all()


def test_the_hair_turns_with_the_head_and_rides_on_the_skin(service, astronaut):
    avatar = astronaut[0]
    mesh = avatar_mesh(service.head, avatar.tensors, avatar.meta)
    n, h = service.head.num_vertices, mesh.hair.num_vertices
    rest = mesh.vertices(MotionFrame.neutral())[n:n + h]
    # A raised brow lifts the fringe with the forehead under it.
    raised = MotionFrame.from_weights({"browInnerUp": 1.0})
    lift = mesh.vertices(raised)[n:n + h] - rest
    skin = service.head.shape(avatar.tensors["identity"], raised.arkit) - service.head.shape(avatar.tensors["identity"])
    np.testing.assert_allclose(lift, skin[mesh.hair.ids], atol=3e-4)
    assert lift[:, 1].max() > 1e-3
    turned = mesh.vertices(MotionFrame.from_weights(
        {}, head_rotation=euler_to_quat([0.3, -0.5, 0.1])))[n:n + h]
    pivot = service.head.head_pivot
    # Distances to the pivot and between hair vertices are kept (a rigid turn).
    np.testing.assert_allclose(np.linalg.norm(turned - pivot, axis=1), np.linalg.norm(rest - pivot, axis=1),
                               atol=1e-5)
    np.testing.assert_allclose(np.linalg.norm(turned[1:] - turned[0], axis=1),
                               np.linalg.norm(rest[1:] - rest[0], axis=1), atol=1e-5)


def test_avatars_made_before_layers_render_the_head_alone(service, astronaut):
    avatar = astronaut[0]
    old = {k: v for k, v in avatar.tensors.items()
           if k not in ("hair_offset", "bust_texture", "shoulder_widths")}
    mesh = avatar_mesh(service.head, old, avatar.meta)
    assert len(mesh.faces) == len(service.head.faces) and mesh.texture.shape == avatar.tensors["texture"].shape
    assert len(mesh.vertices(MotionFrame.neutral())) == service.head.num_vertices


def test_a_bald_crown_grows_no_hair(service, astronaut):
    """The avatar's own bald render (skin painted over the scalp) reads as bald: no shell."""
    avatar, photo, landmarks, person = astronaut
    skin = np.median(photo[int(landmarks[205, 1]) - 5:int(landmarks[205, 1]) + 5,
                           int(landmarks[205, 0]) - 5:int(landmarks[205, 0]) + 5].reshape(-1, 3), 0)
    bald = photo.copy()
    hair = hair_matte(photo, landmarks, person).mask
    bald[hair] = skin.astype(np.uint8)
    assert not hair_matte(bald, landmarks, person).present
