"""The offset rule: a recording is called out of sync only on evidence."""

import numpy as np

from synctalk2d.timing import MAX_AV_OFFSET, MIN_OFFSET_GAIN, av_offset, best_lag, correlation_by_lag, offset_evidence


def speech_like(frames: int, seed: int = 0) -> np.ndarray:
    """A mouth opening that opens and closes irregularly, a few times a second."""
    rng = np.random.default_rng(seed)
    return np.convolve(rng.normal(size=frames + 8), np.hanning(7), "valid")[:frames]


def delayed(signal: np.ndarray, frames: int) -> np.ndarray:
    return (
        np.concatenate([np.full(frames, signal[0]), signal[: len(signal) - frames]])
        if frames > 0
        else np.concatenate([signal[-frames:], np.full(-frames, signal[-1])])
    )


def test_a_delay_inside_the_range_is_found_and_one_at_its_edge_is_not_trusted():
    sound = speech_like(400)
    noise = np.random.default_rng(1).normal(scale=0.3, size=400)
    assert av_offset(sound, sound + noise) == 0
    assert av_offset(sound, delayed(sound, 4) + noise) == 4
    assert av_offset(sound, delayed(sound, -3) + noise) == -3
    assert offset_evidence(sound, delayed(sound, MAX_AV_OFFSET) + noise).best == MAX_AV_OFFSET
    assert av_offset(sound, delayed(sound, MAX_AV_OFFSET) + noise) == 0


def test_a_lag_that_the_two_halves_disagree_on_is_not_trusted():
    sound = speech_like(400)
    picture = np.concatenate([delayed(sound, 3)[:200], delayed(sound, -2)[200:]])  # no one offset fits both halves
    evidence = offset_evidence(sound, picture)
    assert evidence.halves == (3, -2) and av_offset(sound, picture) == 0


def test_a_small_gain_over_lag_zero_is_not_an_offset():
    sound = speech_like(400)
    blurred = np.convolve(sound, [0.45, 0.55], "same")  # a slight smear, not a recording error
    evidence = offset_evidence(sound, blurred)
    assert evidence.gain < MIN_OFFSET_GAIN and av_offset(sound, blurred) == 0


def test_correlation_by_lag_and_best_lag_agree_on_the_sign():
    sound = speech_like(300)
    late = delayed(sound, 2)
    by_lag = correlation_by_lag(late, sound, 4)  # positive lag: the first signal trails
    assert best_lag(by_lag) == 2 and by_lag[2] > 0.99
    assert best_lag({-1: float("nan"), 0: float("nan")}) == 0
