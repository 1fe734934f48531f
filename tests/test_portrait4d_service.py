"""`portrait4d` avatars through the AvatarService: refused without weights; with a
checkpoint they create, render, drive and export like `fit` avatars. The checkpoint here
is an untrained `tiny` network: a test fixture for the plumbing, not a model."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from avatar_runtime import errors
from avatar_runtime.motion.frame import MotionFrame
from avatar_runtime.reconstruct.portrait4d import Portrait4D, preset, save_checkpoint
from avatar_runtime.render.camera import Camera
from avatar_runtime.service import AvatarService


def test_portrait4d_without_weights_is_refused(tmp_path, astronaut_png, monkeypatch):
    monkeypatch.delenv("AVATAR_PORTRAIT4D_WEIGHTS", raising=False)
    service = AvatarService(tmp_path)
    with pytest.raises(errors.FailedPrecondition, match="needs trained weights"):
        service.create(astronaut_png, reconstructor="portrait4d")
    assert service.list() == []


@pytest.fixture(scope="module")
def learned_service(tmp_path_factory):
    torch.manual_seed(0)
    weights = save_checkpoint(Portrait4D(preset("tiny")), tmp_path_factory.mktemp("ckpt"),
                              meta={"note": "untrained test fixture"})
    return AvatarService(tmp_path_factory.mktemp("runtime"), portrait4d_weights=weights)


def test_portrait4d_avatar_renders_drives_and_exports(learned_service, astronaut_png):
    summary = learned_service.create(astronaut_png, reconstructor="portrait4d")
    assert summary["reconstructor"] == "portrait4d"
    avatar = learned_service.avatar(summary["id"])
    size = preset("tiny").encoder.image_size
    assert avatar.tensors["source_image"].shape == (size, size, 3)

    camera = Camera.orbit(width=48, height=40)
    out = learned_service.render(summary["id"], MotionFrame.neutral(), camera)
    assert out.rgba.shape == (40, 48, 4) and out.rgba.dtype == np.uint8
    assert out.depth.shape == (40, 48)
    frames = [MotionFrame.from_weights({"jawOpen": w}, sequence=i) for i, w in enumerate((0.0, 1.0))]
    driven = list(learned_service.drive(summary["id"], frames, camera))
    assert [f.sequence for f, _ in driven] == [0, 1]
    glb = learned_service.export_mesh(summary["id"], "glb")
    assert next(iter(glb.values()))[:4] == b"glTF"


def test_portrait4d_volume_export_goes_through_the_field(learned_service, astronaut_png):
    """The untrained fixture's field may or may not have a surface: either a valid glb or a
    clear FAILED_PRECONDITION, never an internal error."""
    avatar_id = learned_service.create(astronaut_png, reconstructor="portrait4d")["id"]
    try:
        files = learned_service.export_mesh(avatar_id, "glb", source="volume")
    except errors.FailedPrecondition as err:
        assert "density" in err.message
    else:
        assert next(iter(files.values()))[:4] == b"glTF"
    with pytest.raises(errors.InvalidArgument, match="glb only"):
        learned_service.export_mesh(avatar_id, "obj", source="volume")
