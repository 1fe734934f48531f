"""Few-shot create: several photos or a video make one avatar (views chosen, bad frames
skipped and reported, one identity, the texture fused from every view).

The views are renders of our own avatars with known poses, identities and textures:
ground truth for what a second view can add.
"""

from __future__ import annotations

import math
from dataclasses import replace

import cv2
import numpy as np
import pytest
from skimage import data

from avatar_runtime.faces.image import encode_png
from avatar_runtime.motion.frame import MotionFrame
from avatar_runtime.motion.pose import euler_to_quat
from avatar_runtime.reconstruct.fit import photo_camera
from avatar_runtime.reconstruct.fit_reconstructor import PHOTO_FOV_DEG
from avatar_runtime.render.camera import Camera
from avatar_runtime.render.mesh_renderer import MeshRenderer
from avatar_runtime.service import AvatarService
from tests.bridge_support import TRANSPORTS, running_servers

SIZE = 512


@pytest.fixture(scope="module")
def service(tmp_path_factory):
    return AvatarService(tmp_path_factory.mktemp("store"), calibrate_after_create=False)


@pytest.fixture(scope="module")
def astronaut(service):
    return service.avatar(service.create(encode_png(data.astronaut()), name="astronaut")["id"])


def view(service, avatar_id: str, yaw_deg: float) -> np.ndarray:
    """RGB [SIZE, SIZE, 3]: the avatar with its head turned by yaw_deg, over grey."""
    motion = MotionFrame.from_weights({}, head_rotation=euler_to_quat([math.radians(yaw_deg), 0.0, 0.0]))
    rgba = service.render(avatar_id, motion, Camera.orbit(0, 0, 2.0, (0, -0.05, 0), width=SIZE,
                                                           height=SIZE)).rgba.astype(np.float32)
    alpha = rgba[..., 3:] / 255
    return np.rint(rgba[..., :3] * alpha + 128 * (1 - alpha)).astype(np.uint8)


def video_bytes(frames: list[np.ndarray], path) -> bytes:
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"MJPG"), 10, (SIZE, SIZE))
    for rgb in frames:
        writer.write(cv2.cvtColor(rgb, cv2.COLOR_RGB2BGR))
    writer.release()
    return path.read_bytes()


def test_a_video_with_a_blurred_and_a_faceless_frame_makes_an_avatar_and_says_so(service, astronaut, tmp_path):
    frames = [view(service, astronaut.id, yaw) for yaw in (-24, -12, 0, 12, 24)]
    frames.insert(2, cv2.GaussianBlur(frames[2], (0, 0), 9))
    frames.insert(4, np.full_like(frames[0], 128))  # nobody in the frame
    summary = service.create(b"", "from video", video=video_bytes(frames, tmp_path / "turn.avi"))
    meta = summary["meta"]
    skipped = {s["source"]: s["reason"] for s in meta["skipped"]}
    assert skipped["video frame 4"] == "no face found"
    assert skipped["video frame 2"] == "blurred"
    used = [v["source"] for v in meta["views"]]
    assert len(used) >= 3 and "video frame 2" not in used and "video frame 4" not in used
    yaws = [v["yaw_deg"] for v in meta["views"]]
    assert min(yaws) < -8 and max(yaws) > 8  # both sides of the head are covered
    assert summary["id"] != astronaut.id and service.render(summary["id"]).rgba[..., 3].any()


def test_no_usable_frame_is_a_clear_error(service, tmp_path):
    from avatar_runtime.errors import NoFaceFound

    blank = [np.full((SIZE, SIZE, 3), 128, np.uint8)] * 3
    with pytest.raises(NoFaceFound, match="no usable face.*video frame 0: no face found"):
        service.create(b"", video=video_bytes(blank, tmp_path / "blank.avi"))


def test_bad_extra_views_get_clear_errors(service, astronaut):
    from avatar_runtime.errors import InvalidArgument, LimitExceeded
    from avatar_runtime.limits import Limits

    photo = encode_png(view(service, astronaut.id, 0))
    with pytest.raises(InvalidArgument, match="^image 3: the PNG is corrupt"):
        service.create(photo, more_images=[photo, b"\x89PNG\r\n\x1a\n broken"])
    with pytest.raises(InvalidArgument, match="video bytes could not be decoded"):
        service.create(photo, video=b"not a video at all" * 100)
    small = AvatarService(service.store.root, limits=Limits(max_video_bytes=1000), calibrate_after_create=False)
    with pytest.raises(LimitExceeded, match="max_video_bytes"):
        small.create(photo, video=b"\0" * 2000)


def test_a_second_view_recovers_the_side_the_first_cannot_see(service, astronaut):
    """A mark painted on the left cheek of a known avatar: a photo turned away from it
    cannot show it (the side is filled from the mirror), a second photo that sees it can."""
    texture = astronaut.tensors["texture"].copy()
    from avatar_runtime.reconstruct.texture import texel_map

    tm = texel_map(service.head, texture.shape[0])
    points = tm.surface @ service.head.template.astype(np.float64)
    cheek = (points[:, 0] > 0.035) & (points[:, 2] > 0.0) & (np.abs(points[:, 1] + 0.03) < 0.035)
    flat = texture.reshape(-1, 3)
    flat[tm.texels[cheek]] = (40, 90, 230)
    marked = replace(astronaut, id="ma7ced0000000000", name="marked",
                     tensors={**astronaut.tensors, "texture": texture})
    service.store.put(marked)
    away, toward = view(service, marked.id, 30), view(service, marked.id, -30)  # turned from / to it
    one = service.create(encode_png(away), "one view")["id"]
    two = service.create(encode_png(away), "two views", more_images=[encode_png(toward)])["id"]

    truth = view(service, marked.id, -35).astype(np.float64)
    blue = (truth[..., 2] - truth[..., 0]) > 80  # where the mark shows, seen from its side
    assert blue.sum() > 500

    def error(avatar_id):
        return float(np.abs(view(service, avatar_id, -35).astype(np.float64) - truth)[blue].mean())

    print(f"mark colour error (mean abs, 0-255): one view {error(one):.1f}, two views {error(two):.1f}")
    assert error(two) < 0.5 * error(one)


def identity_error(head, embedding, estimate, truth) -> float:
    """RMS distance (mm) of the landmark points after the best uniform scale (one view
    cannot tell a bigger head from a nearer one)."""
    a, b = (embedding.points(head, head.shape(i)).astype(np.float64) for i in (estimate, truth))
    a, b = a - a.mean(0), b - b.mean(0)
    d = (a * b).sum() / (a * a).sum() * a - b
    return float(np.sqrt((d ** 2).sum(1).mean()) * 1000)


def profile_identity(head, sign: float) -> np.ndarray:
    """A face whose nose and chin stand out (sign +1) or sit back (sign -1): the depth a
    frontal photo shows least."""
    identity = np.zeros(head.num_identity, np.float32)
    for name, value in (("nose-scale-depth-incr", 0.8), ("nose-trans-forward", 0.9),
                        ("chin-prominent-incr", 0.9), ("chin-prognathism-incr", 0.6), ("nose-hump-incr", 0.5)):
        identity[head.identity_names.index(name)] = sign * value
    return identity


def fit_one_and_two(service, astronaut, identity):
    head, fitter = service.head, service.reconstructor.fitter
    renderer = MeshRenderer(head.faces, head.face_uvs, astronaut.tensors["texture"])
    landmarks = []
    for yaw in (0, 28):
        rgba = renderer.render(head.shape(identity), Camera.orbit(yaw, 0, fov_y_deg=PHOTO_FOV_DEG)).rgba
        alpha = rgba[..., 3:] / 255.0
        landmarks.append(service.analyzer.landmarks(
            (rgba[..., :3] * alpha + 128 * (1 - alpha)).astype(np.uint8)).landmarks)
    cameras = [photo_camera(512, 512, PHOTO_FOV_DEG)] * 2
    one = fitter.fit(landmarks[0], cameras[0]).identity
    two, fits = fitter.fit_views(landmarks, cameras)
    assert all(np.array_equal(f.identity, two) for f in fits)  # one identity for both views
    return (identity_error(head, fitter.embedding, one, identity),
            identity_error(head, fitter.embedding, two, identity))


def test_two_views_recover_a_prominent_profile_better_than_one(service, astronaut):
    one, two = fit_one_and_two(service, astronaut, profile_identity(service.head, +1.0))
    print(f"landmark RMS error: one view {one:.2f} mm, two views {two:.2f} mm")
    assert two < one - 0.3


@pytest.mark.xfail(strict=True, reason="MediaPipe reads a flat profile from the side as a typical "
                   "one (its own face prior), so the side view pulls the identity toward the mean")
def test_two_views_recover_a_flat_profile_better_than_one(service, astronaut):
    one, two = fit_one_and_two(service, astronaut, profile_identity(service.head, -1.0))
    assert two < one - 0.3


@pytest.mark.parametrize("transport", TRANSPORTS)
def test_more_images_through_both_transports(service, astronaut, transport):
    views = [encode_png(view(service, astronaut.id, yaw)) for yaw in (0, -20, 20)]
    with running_servers(service) as servers, servers.client(transport) as client:
        stages = []
        summary = client.create_avatar(views[0], f"three photos {transport}", more_images=views[1:],
                                       progress=lambda stage, fraction: stages.append(stage))
    assert [v["source"] for v in summary["meta"]["views"]] == ["image", "image 2", "image 3"]
    assert "choosing views" in stages and stages[-1] == "done"


def test_volume_refine_runs_on_the_cpu_and_exports(service, astronaut, tmp_path):
    """The tiny preset: the per-person field is fitted to the views (its loss falls), stored
    with the avatar and exported as a surface; the report says what it cost."""
    from avatar_runtime.reconstruct.volume_refine import stored_field

    photos = [encode_png(view(service, astronaut.id, yaw)) for yaw in (0, 25)]
    summary = service.create(photos[0], "refined", more_images=photos[1:], refine="volume-tiny")
    report = summary["meta"]["volume"]
    print(f"volume refine (tiny): {report['steps']} steps, {report['seconds']:.1f} s, "
          f"{report['ms_per_step']:.0f} ms/step, loss {report['first_loss']:.3f} -> {report['final_loss']:.3f}")
    assert report["views"] == 2 and report["final_loss"] < 0.6 * report["first_loss"]
    field = stored_field(service.avatar(summary["id"]).tensors)
    assert field is not None and tuple(field.planes.shape) == (3, 8, 16, 16)
    glb = next(iter(service.export_mesh(summary["id"], "glb", source="volume").values()))
    assert glb[:4] == b"glTF" and len(glb) > 10_000
    # Without a refined volume a fit avatar has no field to export.
    from avatar_runtime.errors import Unimplemented

    with pytest.raises(Unimplemented, match="refine"):
        service.export_mesh(astronaut.id, "glb", source="volume")
    with pytest.raises(Exception, match="unknown refine mode"):
        service.create(photos[0], refine="nerf")


def test_a_video_that_does_not_say_its_length_is_still_read(service, astronaut, tmp_path, monkeypatch):
    """Some streams (WebM from browsers) report no frame count: frames are read to the end."""
    import avatar_runtime.reconstruct.views as views

    real = cv2.VideoCapture

    class Uncounted:
        """Wraps, never subclasses, cv2.VideoCapture: OpenCV lets Python subclass it, but its
        deallocator does not untrack the subclass's garbage-collected instances, so a later
        collection walks freed memory and the process segfaults."""

        def __init__(self, *args):
            self._capture = real(*args)

        def get(self, prop):
            return 0.0 if prop == cv2.CAP_PROP_FRAME_COUNT else self._capture.get(prop)

        def __getattr__(self, name):
            return getattr(self._capture, name)

    monkeypatch.setattr(views.cv2, "VideoCapture", Uncounted)
    frames = [view(service, astronaut.id, yaw) for yaw in (-15, 0, 15)] * 20  # 60 frames
    read = views.video_frames(video_bytes(frames, tmp_path / "uncounted.avi"), 10**9, 512, count=8)
    assert len(read) == 8 and read[0][0] == 0 and read[-1][0] == 59
