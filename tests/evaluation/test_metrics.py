import numpy as np
import pytest

from synctalk2d.evaluation.metrics import (
    landmark_distance,
    mean_frame_change,
    mouth_aperture,
    mouth_box,
    psnr,
    ssim,
    sync_offset,
)
from synctalk2d.timing import lagged_correlation


def test_identical_signals_and_images(talk_b_avatar):
    lm = talk_b_avatar.landmarks()
    aperture = mouth_aperture(lm)
    r, lag = lagged_correlation(aperture, aperture)
    assert r == pytest.approx(1.0) and lag == 0
    assert landmark_distance(lm, lm) == 0
    crop = np.asarray(talk_b_avatar.crops()[0])
    assert psnr(crop, crop) == float("inf")
    assert ssim(crop, crop) == pytest.approx(1.0)


def test_unchanged_source_is_a_poor_match_for_other_speech(talk_b_avatar):
    """The 'no lip sync' baseline: the first half's mouth against the second half's."""
    aperture = mouth_aperture(talk_b_avatar.landmarks())
    half = len(aperture) // 2
    r, _ = lagged_correlation(aperture[:half], aperture[half : 2 * half])
    assert abs(r) < 0.4


def test_best_lag_is_found():
    rng = np.random.default_rng(0)
    real = rng.normal(size=300)
    generated = np.roll(real, 2)  # generated trails by two frames
    r0, lag = lagged_correlation(generated, real)
    assert lag == 2 and r0 < 0.3


def test_degraded_images_score_lower(talk_b_avatar):
    crop = np.asarray(talk_b_avatar.crops()[0])
    noisy = np.clip(crop + np.random.default_rng(0).normal(0, 10, crop.shape), 0, 255).astype(np.uint8)
    assert 25 < psnr(crop, noisy) < 35
    assert ssim(crop, noisy) < 0.95


def test_aperture_and_mouth_box_geometry():
    lm = np.zeros((68, 2), np.float32)
    lm[0], lm[16] = (0, 50), (100, 50)
    lm[48:68] = (50, 70)
    lm[[61, 62, 63], 1] = 65
    lm[[67, 66, 65], 1] = 75
    lm[48, 0], lm[54, 0] = 35, 65
    assert mouth_aperture(lm[None])[0] == pytest.approx(0.1)
    x1, y1, x2, y2 = mouth_box(lm)
    assert x1 < 35 and x2 > 65 and y1 < 65 and y2 > 75


def test_frame_change_and_sync_offset():
    still = np.full((10, 8, 8), 100, np.uint8)
    assert mean_frame_change(still) == 0
    moving = still.copy()
    moving[::2] = 110
    assert mean_frame_change(moving) == pytest.approx(10)
    offsets = np.arange(-3, 4)
    offset, confidence = sync_offset(np.array([0.1, 0.1, 0.2, 0.9, 0.2, 0.1, 0.1]), offsets)
    assert offset == 0 and confidence == pytest.approx(0.8)
