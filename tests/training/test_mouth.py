"""Stage ``mouth`` on real fixture data: the shipped prior, adaptation, silence, the stage's record."""

from __future__ import annotations

import copy
import json

import numpy as np
import pytest
import torch

from synctalk2d.audio.vad import voice_activity
from synctalk2d.face.lip_shape import aperture
from synctalk2d.media.audio import load_audio
from synctalk2d.models.checkpoint import trained_stem
from synctalk2d.models.mouth import LinearPredictor, MouthModelConfig, predict_shapes
from synctalk2d.timing import MAX_AV_OFFSET, av_offset
from synctalk2d.training.config import MouthStageConfig
from synctalk2d.training.mouth import Clip, PriorConfig, fit, fit_ridge, load_prior, train_prior, warp_bands
from tests.conftest import fixture_path

pytestmark = pytest.mark.slow


def test_shipped_prior_loads_and_predicts_a_lip_shape_per_frame(talk_b_avatar):
    prior = load_prior()
    clip = Clip.of(talk_b_avatar)
    shapes = predict_shapes(prior, clip.windows, clip.shapes.mean(axis=0))
    assert shapes.shape == clip.shapes.shape
    assert np.isfinite(shapes).all()
    # the opening it predicts follows the real one on a clip of real speech
    assert np.corrcoef(aperture(shapes), aperture(clip.shapes))[0, 1] > 0.2


def test_adaptation_lowers_the_error_on_real_landmarks(talk_b_avatar):
    torch.manual_seed(0)
    prior = load_prior()
    clip = Clip.of(talk_b_avatar)
    mean = clip.shapes.mean(axis=0)
    targets = prior.coefficients(torch.from_numpy(clip.shapes - mean)).numpy()

    def error(model):
        return float(np.mean((predict_shapes(model, clip.windows, mean) - clip.shapes) ** 2))

    adapted = copy.deepcopy(prior)
    stage = MouthStageConfig()
    fit(adapted, clip.windows, targets, stage.epochs, stage.lr, stage.batch_size, anchor=prior, anchor_weight=stage.prior_weight)
    assert error(adapted) < 0.8 * error(prior)


def test_prior_training_fits_both_predictors_on_real_speech(talk_b_avatar):
    torch.manual_seed(0)
    clip = Clip.of(talk_b_avatar)
    model, offsets = train_prior([clip], PriorConfig(epochs=8))
    assert offsets == {clip.name: 0}  # one clip: nothing else to judge its sync by
    x = torch.from_numpy(clip.windows)
    truth = aperture(clip.shapes)
    with torch.no_grad():
        for predictor in (model.conv, model.linear):
            opening = aperture(clip.shapes.mean(axis=0) + model.shape_change(predictor(x)).numpy())
            assert np.corrcoef(opening, truth)[0, 1] > 0.3  # each learned the clip it was fitted on
        assert torch.allclose(model(x), (model.conv(x) + model.linear(x)) / 2)


@pytest.mark.parametrize("delay", [4, -3, MAX_AV_OFFSET])
def test_av_offset_finds_how_far_the_picture_trails_the_sound(talk_b_avatar, delay):
    """talk_b, which is in sync, is found in sync; a copy of it whose lips come ``delay``
    frames late (early, when negative) is found that far out of sync, except at the edge of
    the search, where a maximum is not trusted; `realigned` pairs each sound with its own
    lips again."""
    prior = load_prior()
    clip = Clip.of(talk_b_avatar)
    sound, picture = (slice(delay, None), slice(0, -delay)) if delay > 0 else (slice(0, delay), slice(-delay, None))
    shifted = Clip(clip.name, clip.windows[sound], clip.shapes[picture], clip.speech[sound])

    def offset(c):
        return av_offset(aperture(predict_shapes(prior, c.windows, c.shapes.mean(axis=0))), aperture(c.shapes))

    assert offset(clip) == 0
    assert offset(shifted) == (delay if abs(delay) < MAX_AV_OFFSET else 0)
    realigned = shifted.realigned(delay)
    for a, b in zip(realigned.windows, realigned.shapes):  # every window is back with the lips recorded with it
        (k,) = np.flatnonzero((clip.windows == a).all(axis=(1, 2)))[:1]
        assert np.array_equal(clip.shapes[k], b)


def test_ridge_fit_recovers_a_linear_function_of_the_block_averages(talk_b_avatar):
    windows = Clip.of(talk_b_avatar).windows
    predictor = LinearPredictor(MouthModelConfig())
    with torch.no_grad():
        features = predictor.features(torch.from_numpy(windows)).numpy()
    truth = np.random.default_rng(0).normal(size=(features.shape[1], 3))
    targets = features @ truth + np.array([1.0, -2.0, 0.5])
    fit_ridge(predictor, windows, targets, strength=1e-6)
    with torch.no_grad():
        predicted = predictor(torch.from_numpy(windows)).numpy()
    assert np.abs(predicted - targets).max() < 1e-2 * np.abs(targets).max()


def test_frequency_warp_moves_formants_by_at_most_the_amount():
    torch.manual_seed(0)
    windows = torch.zeros(64, 5, 80)
    windows[:, :, 40] = 1.0  # one formant, at band 40
    warped = warp_bands(windows, 0.12)
    assert warped.shape == windows.shape
    peaks = warped[:, 2].argmax(dim=1).float()
    assert peaks.min() >= 40 / 1.12 - 1 and peaks.max() <= 40 / 0.88 + 1
    assert peaks.min() < 38 and peaks.max() > 42  # voices both shorter and longer than the speaker's
    assert torch.equal(warp_bands(windows, 0.0), windows)


def test_voice_activity_follows_speech_and_pauses():
    speech, _ = load_audio(fixture_path("speech_44k.wav"))
    wav = np.concatenate([speech[: 3 * 16000], np.zeros(2 * 16000, np.float32), speech[3 * 16000 : 6 * 16000]])
    active = voice_activity(wav, len(wav) // 640)
    assert active[:75].mean() > 0.6  # speech
    assert not active[82:122].any()  # the pause, after the hangover and before the lead into the next word
    assert active[125:].mean() > 0.6
    assert not voice_activity(np.zeros(16000, np.float32), 25).any()


def test_stage_records_shapes_and_whether_it_beat_the_prior(mouth_avatar):
    state = json.loads(trained_stem(mouth_avatar.root, "mouth").with_suffix(".json").read_text())["state"]
    assert state["completed"] and state["kept"] in ("adapted", "prior")
    result = state["result"]
    assert result["best_val"]["aperture_r"] == max(result["val"]["aperture_r"], result["start_val"]["aperture_r"])
    rest, mean = np.array(state["rest_shape"]), np.array(state["mean_shape"])
    assert rest.shape == mean.shape == (40,)
    assert aperture(rest) < aperture(mean)  # at rest the mouth is more closed than on average
    assert state["picture_delay_frames"] == 0  # talk_b's picture and sound are in sync


def test_motion_gain_restores_the_speakers_amount_of_movement(talk_b_avatar):
    """Predictions regress towards the mean; scaled by the gain, the predicted opening
    moves about as much as the real one while speaking (unless capped)."""
    from synctalk2d.inference.mouth import amplify
    from synctalk2d.training.mouth import MAX_MOTION_GAIN, motion_gain

    prior = load_prior()
    clip = Clip.of(talk_b_avatar)
    mean = clip.shapes.mean(axis=0)
    predicted = predict_shapes(prior, clip.windows, mean)[clip.speech]
    gain = motion_gain(prior, clip, mean)
    assert 1.0 <= gain <= MAX_MOTION_GAIN
    real_std = aperture(clip.shapes[clip.speech]).std()
    assert aperture(predicted).std() < 0.8 * real_std  # unscaled: a mumbling mouth
    scaled_std = aperture(amplify(predicted, mean, gain)).std()
    assert scaled_std > aperture(predicted).std() and (gain == MAX_MOTION_GAIN or abs(scaled_std / real_std - 1) < 0.35)
