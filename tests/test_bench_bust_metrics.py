"""The bust benchmark's yardsticks (benchmarks/bust_metrics.py) on masks and photos whose
answers are known independently of them."""

from __future__ import annotations

import sys
from pathlib import Path

import cv2
import numpy as np
import pytest
from skimage import data

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "benchmarks"))
import bust_metrics as metrics  # noqa: E402


def box(shape, y0, y1, x0, x1) -> np.ndarray:
    mask = np.zeros(shape, bool)
    mask[y0:y1, x0:x1] = True
    return mask


def test_iou_of_overlapping_boxes_is_their_shared_area_over_their_joint_area():
    a, b = box((100, 100), 10, 50, 10, 50), box((100, 100), 30, 70, 20, 60)
    shared = (50 - 30) * (50 - 20)
    assert metrics.iou(a, b) == pytest.approx(shared / (40 * 40 + 40 * 40 - shared))
    assert metrics.iou(a, a) == 1.0
    assert metrics.iou(a, box((100, 100), 60, 90, 60, 90)) == 0.0
    assert np.isnan(metrics.iou(np.zeros((4, 4), bool), np.zeros((4, 4), bool)))


def test_rows_above_the_chin_and_the_landmark_hull():
    assert metrics.rows_above((10, 6), 4.5).sum(1).tolist() == [6] * 5 + [0] * 5
    corners = np.array([[10, 20], [60, 20], [60, 80], [10, 80], [35, 50]], float)  # + one inside
    hull = metrics.hull_mask((100, 100), corners)
    assert hull.sum() == 51 * 61  # the filled polygon includes its edges
    assert hull[50, 35] and not hull[10, 35]


def test_psnr_and_ssim_read_only_the_region():
    rng = np.random.default_rng(0)
    photo = rng.integers(0, 256, (80, 80, 3), dtype=np.uint8)
    region = box((80, 80), 20, 60, 20, 60)
    render = photo.copy()
    render[~box((80, 80), 17, 63, 17, 63)] = 0  # beyond SSIM's 7x7 windows on the region: ignored
    assert metrics.region_psnr(photo, render, region) == float("inf")
    assert metrics.region_ssim(photo, render, region) == pytest.approx(1.0)
    shifted = np.clip(photo.astype(int) + 10, 0, 255).astype(np.uint8)
    error = (shifted[region].astype(float) - photo[region]) ** 2
    assert metrics.region_psnr(photo, shifted, region) == pytest.approx(10 * np.log10(255 ** 2 / error.mean()))
    assert metrics.region_ssim(photo, rng.integers(0, 256, photo.shape, dtype=np.uint8), region) < 0.2


def test_over_blends_by_straight_alpha():
    rgba = np.array([[[200, 100, 0, 255], [200, 100, 0, 0], [200, 100, 0, 128]]], np.uint8)
    out = metrics.over(rgba, 50)
    assert out[0, 0].tolist() == [200, 100, 0] and out[0, 1].tolist() == [50, 50, 50]
    assert out[0, 2].tolist() == np.round(np.array([200, 100, 0]) * 128 / 255 + 50 * 127 / 255).tolist()


@pytest.fixture(scope="module")
def identity_model():
    pytest.importorskip("dlib", reason="the bench extra (dlib-bin) is not installed")
    return metrics.IdentityModel()


def test_identity_distance_tells_one_person_from_another(identity_model):
    from matplotlib import cbook

    astronaut = data.astronaut()
    hopper = cv2.cvtColor(cv2.imread(cbook.get_sample_data("grace_hopper.jpg", asfileobj=False)),
                          cv2.COLOR_BGR2RGB)
    ok, jpeg = cv2.imencode(".jpg", cv2.resize(astronaut, (384, 384))[..., ::-1], [cv2.IMWRITE_JPEG_QUALITY, 60])
    smaller_jpeg = cv2.imdecode(jpeg, cv2.IMREAD_COLOR)[..., ::-1]
    a, b, c = (identity_model.descriptor(x) for x in (astronaut, smaller_jpeg, hopper))
    assert a.shape == (128,)
    assert metrics.identity_distance(a, identity_model.descriptor(astronaut.copy())) < 1e-6
    assert metrics.identity_distance(a, b) < 0.25                # the same photo, re-encoded
    assert metrics.identity_distance(a, c) > 0.4                 # two different people
    assert metrics.identity_distance(a, c) > metrics.SAME_PERSON
    assert identity_model.descriptor(np.full((200, 200, 3), 128, np.uint8)) is None  # no face: a miss
    assert np.isnan(metrics.identity_distance(a, None))
