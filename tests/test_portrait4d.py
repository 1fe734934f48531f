"""Portrait4D reconstructor: caching, checkpoints, presets, refusal without weights."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from avatar_runtime.errors import FailedPrecondition
from avatar_runtime.head.model import load_head_model
from avatar_runtime.motion.frame import MotionFrame
from avatar_runtime.reconstruct.portrait4d import (MOTION_DIM, PRESETS, Portrait4D, Portrait4DConfig,
                                                   Portrait4DDriver, load_checkpoint, motion_batch,
                                                   preset, save_checkpoint)
from avatar_runtime.reconstruct.portrait4d.config import MotionConfig
from avatar_runtime.render.camera import Camera


@pytest.fixture(scope="module")
def tiny():
    torch.manual_seed(0)
    return Portrait4D(preset("tiny")).eval()


def frames(n: int, seed: int = 0) -> list[MotionFrame]:
    rng = np.random.default_rng(seed)
    return [MotionFrame(rng.uniform(0, 1, 52), head_rotation=rng.normal(0, 0.1, 4) + [0, 0, 0, 1])
            for _ in range(n)]


def test_cached_per_frame_path_equals_uncached(tiny):
    image = torch.rand(1, 3, 64, 64)
    source = motion_batch(frames(1, seed=1))
    with torch.no_grad():
        cache = tiny.encode_source(image, source)
        for frame in frames(3):
            driving = motion_batch([frame])
            cached, full = tiny.animate(cache, driving), tiny(image, source, driving)
            assert float((cached - full).abs().max()) <= 1e-5
        cams = [Camera.orbit(15, 5)]
        a = tiny.render(cached, cams, cache)
        b = tiny.render(full, cams, tiny.encode_source(image, source))
        assert float((a.rgb - b.rgb).abs().max()) <= 1e-5


def test_driving_motion_changes_planes(tiny):
    image = torch.rand(1, 3, 64, 64)
    source, (d1, d2) = motion_batch(frames(1, 5)), frames(2, 6)
    with torch.no_grad():
        cache = tiny.encode_source(image, source)
        p1, p2 = tiny.animate(cache, motion_batch([d1])), tiny.animate(cache, motion_batch([d2]))
    assert float((p1 - p2).abs().max()) > 0


def test_checkpoint_round_trip(tiny, tmp_path):
    save_checkpoint(tiny, tmp_path / "ckpt", meta={"data": "none", "cpu_hours": 0})
    loaded = load_checkpoint(tmp_path / "ckpt")
    assert loaded.config == tiny.config
    x, m = torch.rand(1, 3, 64, 64), torch.rand(1, MOTION_DIM)
    with torch.no_grad():
        assert torch.equal(loaded(x, m, m), tiny(x, m, m))
    assert json.loads((tmp_path / "ckpt" / "config.json").read_text())["meta"]["data"] == "none"


@pytest.mark.parametrize("name", list(PRESETS))
def test_config_json_round_trip(name):
    config = preset(name)
    assert Portrait4DConfig.from_json(config.to_json()) == config


def test_no_weights_is_refused(tmp_path, monkeypatch):
    monkeypatch.delenv("AVATAR_PORTRAIT4D_WEIGHTS", raising=False)
    with pytest.raises(FailedPrecondition, match="needs trained weights"):
        load_checkpoint()
    with pytest.raises(FailedPrecondition, match="AVATAR_PORTRAIT4D_WEIGHTS"):
        load_checkpoint(tmp_path)  # a directory without model.safetensors
    with pytest.raises(ValueError, match="unknown Portrait4D preset"):
        preset("huge")


def test_paper_preset_shapes_on_meta_device():
    config = preset("paper")
    with torch.device("meta"):
        model = Portrait4D(config)
        planes = model(torch.empty(1, 3, 512, 512), torch.empty(1, MOTION_DIM),
                       torch.empty(1, MOTION_DIM))
    n_params = sum(p.numel() for p in model.parameters())
    assert 215e6 <= n_params <= 235e6  # the published ~225M
    assert planes.shape == (1, 3, 32, 256, 256)
    assert config.transformer.canonical_blocks == 8 and config.transformer.dim == 1024


def test_opaque_embedding_motion():
    config = Portrait4DConfig(motion=MotionConfig(embedding_dim=128))
    model = Portrait4D(config)
    with torch.no_grad():
        planes = model(torch.rand(2, 3, 64, 64), torch.rand(2, 128), torch.rand(2, 128))
    assert planes.shape == (2, 3, 16, 32, 32)


def test_driver_renders_frames_with_head_band(tiny):
    head = load_head_model()
    image = (np.random.default_rng(0).random((64, 64, 3)) * 255).astype(np.uint8)
    driver = Portrait4DDriver(tiny, image, MotionFrame.neutral(), head=head,
                              identity=np.zeros(head.num_identity, np.float32))
    out = driver.render(frames(1)[0], Camera.orbit(width=80, height=60))
    assert out.rgba.shape == (60, 80, 4) and out.rgba.dtype == np.uint8
    assert out.depth.shape == (60, 80)
