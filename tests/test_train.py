"""Training pipeline: synthetic data, losses, a few optimiser steps, resuming."""

from __future__ import annotations

import logging
import math

import numpy as np
import pytest
import torch

from avatar_runtime.reconstruct.portrait4d import Portrait4DConfig, load_checkpoint
from avatar_runtime.reconstruct.portrait4d.config import EncoderConfig, PlaneConfig
from avatar_runtime.render.volume import DecoderConfig, ReferenceSamplerConfig
from avatar_runtime.train.data import StageSampler, SyntheticSet
from avatar_runtime.train.losses import PretrainedLoss, ssim
from avatar_runtime.train.synthetic import SyntheticConfig, SyntheticHeads
from avatar_runtime.train.trainer import TrainConfig, Trainer

# Smaller than `tiny` so that CI steps take a fraction of a second.
MICRO = Portrait4DConfig(
    encoder=EncoderConfig(image_size=32, global_channels=(16, 32), detail_channels=8),
    planes=PlaneConfig(resolution=16, channels=16, render_size=16,
                       decoder=DecoderConfig(in_channels=16, hidden=32, out_features=16),
                       sampler=ReferenceSamplerConfig(n_stratified=12, n_importance=12)))


def micro_config(**kw) -> TrainConfig:
    base = dict(model=MICRO, subjects=2, expressions=2, views=3, eval_examples=2, batch=1,
                eval_every=1000, checkpoint_every=1000, lr=2e-3)
    return TrainConfig(**{**base, **kw})


def test_synthetic_cameras_follow_the_portrait_ranges():
    gen = SyntheticHeads(SyntheticConfig(image_size=32))
    rng = np.random.default_rng(0)
    for _ in range(20):
        cam = gen.camera(rng)
        offset = cam.position - np.array([0.0, -0.02, 0.0])
        radius = np.linalg.norm(offset)
        assert 3.65 * 0.3 - 1e-6 <= radius <= 4.45 * 0.3 + 1e-6
        assert -0.25 - 1e-6 <= math.asin(offset[1] / radius) <= 0.65 + 1e-6
        assert abs(math.atan2(offset[0], offset[2])) <= 0.78 + 1e-6
        assert cam.fov_y_deg == 12.0
    view = gen.render(gen.subject(rng), gen.expression(rng), gen.camera(rng))
    assert view.rgb.shape == (32, 32, 3) and 0 <= view.rgb.min() and view.rgb.max() <= 1
    assert view.alpha.max() > 0.5  # the head is in frame


def test_loss_is_finite_and_falls_on_a_fixed_batch(tmp_path):
    trainer = Trainer(micro_config(steps=20), tmp_path)
    batch = trainer.sampler.batch(np.random.default_rng(0), 1)
    losses = [trainer.train_step(batch)["total"] for _ in range(20)]
    assert all(math.isfinite(x) for x in losses)
    assert np.mean(losses[-3:]) < 0.8 * np.mean(losses[:3])


def test_run_logs_checkpoints_and_resumes(tmp_path):
    records = Trainer(micro_config(steps=2, checkpoint_every=2, eval_every=2), tmp_path).run()
    assert [r["step"] for r in records] == [1, 2] and math.isfinite(records[-1]["heldout_psnr"])
    resumed = Trainer(micro_config(steps=3, checkpoint_every=3, eval_every=3), tmp_path)
    assert resumed.step == 2
    assert [r["step"] for r in resumed.run()] == [3]
    assert len((tmp_path / "log.jsonl").read_text().splitlines()) == 3
    assert load_checkpoint(tmp_path / "checkpoint").config == MICRO


def test_stage2_pairs_and_missing_real_frames_are_reported(caplog):
    gen = SyntheticHeads(SyntheticConfig(image_size=32))
    data = SyntheticSet(gen, subjects=2, expressions=3, views=3, low_size=16)
    with caplog.at_level(logging.WARNING):
        sampler = StageSampler(data, stage=2)
    assert "substitution" in caplog.text
    rng = np.random.default_rng(0)
    examples = [sampler.example(rng) for _ in range(10)]
    assert any(not np.array_equal(e.source_motion, e.driving_motion) for e in examples)
    assert examples[0].target_low.rgb.shape == (16, 16, 3)


def test_pretrained_losses_are_skipped_without_weights(caplog):
    with caplog.at_level(logging.WARNING):
        loss = PretrainedLoss("perceptual", None)
    assert not loss.enabled and "skipped" in caplog.text
    x = torch.rand(1, 3, 8, 8)
    assert float(loss(x, x)) == 0.0
    assert float(ssim(x, x)) == pytest.approx(1.0, abs=1e-5)

