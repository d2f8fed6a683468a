"""The mouth model's speech features: a live stream computes what a whole file gives, and
never needs more than 200 ms of audio past a frame."""

from __future__ import annotations

import numpy as np

from synctalk2d.audio.mel import melspectrogram
from synctalk2d.audio.speech_features import LOOKAHEAD_SECONDS, SpeechFeatureStream
from synctalk2d.media.audio import load_audio
from tests.conftest import fixture_path


def speech(seconds: float) -> np.ndarray:
    wav, _ = load_audio(fixture_path("speech_44k.wav"))
    return wav[: int(seconds * 16000)]


def stream_of(wav: np.ndarray) -> SpeechFeatureStream:
    mel = melspectrogram(wav)
    return SpeechFeatureStream(mel.mean(axis=0), mel.std(axis=0))


def test_chunks_of_any_size_give_the_windows_of_the_whole_file():
    wav = speech(5.0)[:-123]  # not a whole number of frames
    whole = stream_of(wav)
    whole.push(wav)
    whole.end()
    first, expected = whole.take()
    assert first == 0 and len(expected) == -(-len(wav) // 640)

    live, got, position = stream_of(wav), [], 0
    for size in np.random.default_rng(0).integers(1, 3000, 1000):
        if position >= len(wav):
            break
        live.push(wav[position : position + size])
        position += size
        start, windows = live.take()
        assert start == sum(len(w) for w in got)
        got.append(windows)
    live.end()
    got.append(live.take()[1])
    np.testing.assert_allclose(np.concatenate(got), expected, atol=1e-5)


def test_a_frame_is_ready_once_about_200_ms_of_audio_past_it_arrived():
    """200 ms by design, up to 5 ms more where a frame's time rounds up to the mel grid."""
    wav = speech(3.0)
    for seconds in np.arange(0.1, 2.5, 0.013):
        stream = stream_of(wav)
        stream.push(wav[: int(seconds * 16000)])
        needs = np.arange(100) / 25 + LOOKAHEAD_SECONDS
        assert np.sum(needs + 0.0051 <= seconds) <= stream.ready_frames() <= np.sum(needs - 0.0051 <= seconds), seconds
