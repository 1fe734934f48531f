"""Pseudo multi-view videos from a monocular video, and stage-2 training on them.

The "real" video is rendered here: the astronaut avatar with known jawOpen and head yaw
per frame, over a gradient background, written as an .mp4. Everything downstream (avatar
fit, motion solve, matte, cameras) only sees the video file.
"""

from __future__ import annotations

import json
import math

import cv2
import numpy as np
import pytest
from skimage import data as skdata

from avatar_runtime.faces.image import encode_png
from avatar_runtime.motion.frame import MotionFrame
from avatar_runtime.motion.pose import euler_to_quat, quat_to_euler
from avatar_runtime.reconstruct.portrait4d.driver import head_camera
from avatar_runtime.reconstruct.portrait4d.motion import MOTION_DIM
from avatar_runtime.render.camera import Camera
from avatar_runtime.train.data import StageSampler, SyntheticSet, collate
from avatar_runtime.train.pseudo_multiview import (
    PseudoMultiView,
    PseudoMultiViewConfig,
    list_videos,
    read_frames,
)
from avatar_runtime.train.synthetic import SyntheticConfig, SyntheticHeads

JAW = np.array([0.0, 0.8, 0.3, 1.0, 0.5, 0.1, 0.65, 0.2])
YAW = np.array([-0.3, 0.2, 0.0, -0.15, 0.3, 0.1, -0.2, 0.25])   # rad, head turn
SIZE, LOW, VIEWS = 64, 32, 3                                       # the `tiny` preset's sizes
# The clip is rendered from our own avatar: read it as such (see motion/solver.py READINGS).
CONFIG = PseudoMultiViewConfig(image_size=SIZE, low_size=LOW, views=VIEWS, calibrate=False, reading="fit")
VIDEO_CAMERA = Camera.orbit(radius=1.75, fov_y_deg=12.0, width=256, height=256)


def _motion(i: int) -> MotionFrame:
    return MotionFrame.from_weights({"jawOpen": float(JAW[i])},
                                    head_rotation=euler_to_quat([YAW[i], 0.0, 0.0]))


@pytest.fixture(scope="module")
def video(tmp_path_factory):
    from avatar_runtime.service import AvatarService

    root = tmp_path_factory.mktemp("video")
    service = AvatarService(root / "runtime", calibrate_after_create=False)
    avatar_id = service.create(encode_png(skdata.astronaut()))["id"]
    yy, xx = np.mgrid[:256, :256]
    background = np.stack([60 + xx * 0.5, 90 + yy * 0.4, 140 - xx * 0.2], -1)
    path = root / "talking.mp4"
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"mp4v"), 25, (256, 256))
    for i in range(len(JAW)):
        rgba = service.render(avatar_id, _motion(i), VIDEO_CAMERA).rgba
        alpha = rgba[..., 3:] / 255.0
        writer.write((rgba[..., :3] * alpha + background * (1 - alpha)).astype(np.uint8)[..., ::-1])
    writer.release()
    return path, service.head


@pytest.fixture(scope="module")
def pmv(video, tmp_path_factory):
    path, head = video
    cache = tmp_path_factory.mktemp("cache")
    return PseudoMultiView.from_videos([path], cache, CONFIG, head=head), cache


def test_video_reading_and_listing(video, tmp_path):
    path, _ = video
    frames = [f for _, f in read_frames(path)]
    assert len(frames) == len(JAW) and frames[0].shape == (256, 256, 3) and frames[0].dtype == np.uint8
    folder = tmp_path / "clip"
    folder.mkdir()
    for i, f in enumerate(frames[:3]):
        cv2.imwrite(str(folder / f"{i:04d}.png"), f[..., ::-1])
    assert [i for i, _ in read_frames(folder)] == [0, 1, 2]
    assert np.array_equal(next(read_frames(folder))[1], frames[0])
    assert list_videos([folder, path]) == [folder, path]
    assert list_videos([tmp_path]) == [folder]  # a folder of videos


def test_solved_motion_follows_the_known_motion(pmv):
    data, _ = pmv
    video = data.videos[0]
    assert list(video.frames) == list(range(len(JAW)))
    jaw = np.asarray(video.arkit[:, 17])
    rank = lambda x: np.argsort(np.argsort(x))  # noqa: E731
    assert np.corrcoef(rank(jaw), rank(JAW))[0, 1] > 0.95  # jawOpen ordering
    assert np.abs(jaw - JAW).max() < 0.3
    yaw = quat_to_euler(np.asarray(video.rotation))[:, 0]
    assert np.corrcoef(yaw, YAW)[0, 1] > 0.98 and np.abs(yaw - YAW).max() < 0.12


def test_real_frames_carry_their_own_camera(pmv, video):
    data, _ = pmv
    _, head = video
    for t in range(len(JAW)):
        full, low = data.real(0, t)
        assert full.camera.width == SIZE and low.camera.width == LOW
        assert np.array_equal(full.camera.c2w, data.videos[0].real_c2w[t])
        # The camera in the head's frame looks from where the video camera saw the head.
        # (The solver over-reads a 17 deg head turn by up to ~5 deg without calibration.)
        truth = head_camera(VIDEO_CAMERA, _motion(t), head.head_pivot)
        cos = float(truth.c2w[:3, 2] @ full.camera.c2w[:3, 2])
        assert math.degrees(math.acos(min(cos, 1.0))) < 7.0
        look_at = np.array([0.0, -0.02, 0.0])
        distance = np.linalg.norm(full.camera.position - look_at)
        assert abs(distance / np.linalg.norm(truth.position - look_at) - 1) < 0.05
        # The fitted mesh seen from it covers the matted head.
        mesh, matte = np.isfinite(low.depth), low.alpha > 0.5
        assert (mesh & matte).sum() / (mesh | matte).sum() > 0.7
        assert np.isfinite(low.depth[mesh]).all() and 0.5 < np.median(low.depth[mesh]) < 5.0


def test_synthesised_views_use_the_rig_cameras(pmv):
    data, _ = pmv
    video = data.videos[0]
    gen = SyntheticHeads(SyntheticConfig(image_size=SIZE), data.head)
    for k in range(VIEWS):
        cam = video.rig_camera(k, SIZE)
        offset = cam.position - np.array([0.0, -0.02, 0.0])
        radius = np.linalg.norm(offset)
        assert 3.65 * 0.3 - 1e-6 <= radius <= 4.45 * 0.3 + 1e-6
        assert abs(math.atan2(offset[0], offset[2])) <= 0.78 + 1e-6
        full, low = data.synthesised(0, 3, k)
        assert np.array_equal(full.camera.c2w, cam.c2w) and full.camera.width == SIZE
        assert low.camera.width == LOW and low.rgb.shape == (LOW, LOW, 3)
        assert full.alpha.max() > 0.99 and full.alpha.mean() > 0.05
        assert np.isfinite(full.depth).sum() > 0.05 * SIZE * SIZE
        # The same render as the synthetic data's renderer (same View format).
        assert gen.camera(np.random.default_rng(k)).fov_y_deg == full.camera.fov_y_deg
    # The open jaw (frame 3) differs from the closed one (frame 0) at the same view.
    assert np.abs(data.synthesised(0, 3, 0)[0].rgb - data.synthesised(0, 0, 0)[0].rgb).max() > 0.2


def test_substitution_frequencies_and_batches(pmv):
    data, _ = pmv
    video = data.videos[0]
    synthetic = SyntheticSet(SyntheticHeads(SyntheticConfig(image_size=SIZE), data.head),
                             subjects=1, expressions=1, views=2, low_size=LOW)
    sampler = StageSampler(synthetic, stage=2, real=data)
    rng, n = np.random.default_rng(0), 2000
    examples = [sampler.example(rng) for _ in range(n)]
    for prob, seen in ((0.1, [e.source_real for e in examples]), (0.8, [e.target_real for e in examples])):
        assert abs(np.mean(seen) - prob) < 4 * math.sqrt(prob * (1 - prob) / n)
    both = np.mean([e.source_real and e.target_real for e in examples])
    assert abs(both - 0.08) < 4 * math.sqrt(0.08 * 0.92 / n)  # independent draws
    motions = np.stack([np.concatenate([video.arkit[t], video.rotation[t]]) for t in range(len(video))])
    for e in examples[:200]:
        d = int(np.argmin(np.abs(motions - e.driving_motion[:56]).sum(1)))
        if e.target_real:   # the real frame d at its own camera
            assert np.array_equal(e.target.camera.c2w, video.real_c2w[d])
            assert np.array_equal(e.target_low.rgb, data.real(0, d)[1].rgb)
        else:               # frame d at one of the rig's cameras
            assert any(np.array_equal(e.target.camera.c2w, c) for c in video.rig_c2w)
        if e.source_real:
            assert any(np.array_equal(e.source, data.source_crop(0, t)) for t in range(len(video)))
        assert np.allclose(e.source_motion[52:56], [0, 0, 0, 1])  # expression-only source motion
    batch = collate(examples[:4])
    assert batch.source.shape == (4, 3, SIZE, SIZE) and batch.rgb.shape == (4, 3, SIZE, SIZE)
    assert batch.source_motion.shape == batch.driving_motion.shape == (4, MOTION_DIM)
    assert batch.rgb_low.shape == (4, 3, LOW, LOW)
    assert batch.alpha_low.shape == batch.depth_low.shape == (4, LOW, LOW)
    assert len(batch.cameras) == 4 and all(c.width == SIZE for c in batch.cameras)
    assert 0 <= float(batch.rgb.min()) and float(batch.rgb.max()) <= 1


def test_custom_probabilities_and_validation(pmv):
    data, _ = pmv
    synthetic = SyntheticSet(SyntheticHeads(SyntheticConfig(image_size=SIZE), data.head),
                             subjects=1, expressions=1, views=2, low_size=LOW)
    sampler = StageSampler(synthetic, stage=2, real=data, real_source_prob=1.0, real_target_prob=0.0,
                           video_prob=0.5)
    rng = np.random.default_rng(1)
    examples = [sampler.example(rng) for _ in range(400)]
    from_video = np.mean([e.source_real for e in examples])  # only video examples are real here
    assert abs(from_video - 0.5) < 4 * math.sqrt(0.25 / 400)
    assert not any(e.target_real for e in examples)
    with pytest.raises(ValueError, match="real_target_prob"):
        StageSampler(synthetic, stage=2, real=data, real_target_prob=1.5)


def test_stage2_training_on_videos_from_the_command_line(pmv, video, tmp_path):
    from avatar_runtime.train.__main__ import main

    _, cache = pmv
    path, _ = video
    prepared = sorted(p.name for p in cache.iterdir())
    main(["--out", str(tmp_path), "--preset", "tiny", "--stage", "2", "--steps", "2", "--batch", "1",
          "--subjects", "2", "--eval-every", "2", "--videos", str(path), "--video-cache", str(cache),
          "--video-views", str(VIEWS), "--no-calibrate", "--video-reading", "fit"])
    assert sorted(p.name for p in cache.iterdir()) == prepared  # the cached preparation was reused
    records = [json.loads(line) for line in (tmp_path / "log.jsonl").read_text().splitlines()]
    assert [r["step"] for r in records] == [1, 2] and all(math.isfinite(r["total"]) for r in records)
    assert (tmp_path / "checkpoint" / "model.safetensors").is_file()
    meta = json.loads((tmp_path / "checkpoint" / "config.json").read_text())
    assert "pseudo multi-view" in json.dumps(meta)
