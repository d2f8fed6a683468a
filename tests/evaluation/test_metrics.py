import cv2
import numpy as np
import pytest

from synctalk2d.evaluation.metrics import (
    jumps,
    landmark_distance,
    lip_changes,
    lip_regions,
    mean_frame_change,
    mouth_aperture,
    mouth_box,
    psnr,
    seam_strength,
    ssim,
    sync_offset,
)
from synctalk2d.face.lip_shape import crop_coordinates
from synctalk2d.inference.mouth import paste_outline
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


def test_cutting_between_moments_of_a_recording_reads_as_jumps(talk_b_avatar):
    """The recording against itself: about 1 % of its changes are above its own 99th
    percentile. Its frames shuffled in runs of 3 (a mouth cut every 3 frames): many more."""
    crops = np.asarray(talk_b_avatar.crops())
    points = crop_coordinates(talk_b_avatar.landmarks(), talk_b_avatar.boxes())
    real = lip_changes(lip_regions(crops, points))
    itself = jumps(real, real)
    assert itself["jump_rate"] <= 0.02 and itself["change_p95_over_real"] == pytest.approx(1.0)
    runs = np.random.default_rng(0).permutation(len(crops) // 3)
    order = np.concatenate([np.arange(3 * r, 3 * r + 3) for r in runs])
    cut = jumps(lip_changes(lip_regions(crops[order], points[order])), real)
    assert cut["jump_rate"] > 0.1 and cut["change_p95_over_real"] > 1.3


def test_a_hard_edged_patch_raises_the_seam_measure(talk_b_avatar):
    crops = np.asarray(talk_b_avatar.crops()[:10]).copy()
    points = crop_coordinates(talk_b_avatar.landmarks()[:10], talk_b_avatar.boxes()[:10])
    outlines = [paste_outline(p, crops.shape[1]) for p in points]
    before = seam_strength(crops, outlines)
    for crop, outline in zip(crops, outlines):  # a patch 40 grey levels brighter, cut along the outline
        mask = np.zeros(crop.shape[:2], np.uint8)
        cv2.fillConvexPoly(mask, np.round(outline).astype(np.int32), 1)
        crop[mask > 0] = np.clip(crop[mask > 0].astype(int) + 40, 0, 255)
    assert seam_strength(crops, outlines) > 1.5 * before
