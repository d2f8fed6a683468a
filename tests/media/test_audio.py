import numpy as np
import pytest
import soundfile as sf

from conftest import fixture_path
from synctalk2d.errors import UserError
from synctalk2d.media.audio import fit_length, load_audio, load_audio_track


@pytest.mark.parametrize(
    "name,seconds",
    [("speech_44k.wav", 22.5), ("speech_pauses_de.mp3", 107.8), ("talk_b.mp4", 5.0)],
)
def test_any_audio_becomes_16k_mono(name, seconds):
    samples, start = load_audio(fixture_path(name))
    assert samples.dtype == np.float32 and samples.ndim == 1
    assert abs(len(samples) / 16000 - seconds) < 0.1
    assert 0.01 < np.abs(samples).max() <= 1.0
    assert start == pytest.approx(0.0, abs=0.05)


@pytest.mark.parametrize("name,shape,rate", [("speech_44k.wav", (991764, 1), 44100), ("talk_b.mp4", (221184, 2), 44100)])
def test_output_track_keeps_the_files_rate_and_channels(name, shape, rate):
    """What `infer` muxes into its MP4: the input as it is, the same length as the 16 kHz copy."""
    samples, track_rate = load_audio_track(fixture_path(name))
    assert samples.shape == shape and samples.dtype == np.float32 and track_rate == rate
    if name.endswith(".wav"):
        np.testing.assert_allclose(samples[:, 0], sf.read(fixture_path(name), dtype="float32")[0], atol=1e-4)
    assert abs(len(samples) / rate - len(load_audio(fixture_path(name))[0]) / 16000) < 0.01


def test_resampling_keeps_the_signal():
    """44.1 kHz -> 16 kHz matches the source resampled independently (same speech)."""
    import librosa

    samples, _ = load_audio(fixture_path("speech_44k.wav"))
    source, rate = sf.read(fixture_path("speech_44k.wav"), dtype="float32")
    reference = librosa.resample(source, orig_sr=rate, target_sr=16000)
    n = min(len(samples), len(reference))
    assert np.corrcoef(samples[:n], reference[:n])[0, 1] > 0.99


def test_fit_length_pads_and_trims():
    x = np.arange(1, 11, dtype=np.float32)
    assert fit_length(x, 4).tolist() == [1, 2, 3, 4]
    assert fit_length(x, 4, offset=8).tolist() == [9, 10, 0, 0]
    assert fit_length(x, 4, offset=-2).tolist() == [0, 0, 1, 2]


def test_file_without_audio():
    with pytest.raises(UserError, match="no audio track"):
        load_audio(fixture_path("silent_portrait_22s.mp4"))
