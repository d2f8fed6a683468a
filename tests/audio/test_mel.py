import librosa
import numpy as np
import soundfile as sf

from conftest import fixture_path
from synctalk2d.audio.mel import MEL_FPS, mel_index, melspectrogram


def test_mel_matches_a_plain_librosa_computation():
    wav, rate = sf.read(fixture_path("speech_hb.wav"), dtype="float32")
    assert rate == 16000
    wav = wav[: 16000 * 5]
    ours = melspectrogram(wav)
    emphasised = np.append(wav[0], wav[1:] - 0.97 * wav[:-1])
    power1 = librosa.feature.melspectrogram(
        y=emphasised, sr=16000, n_fft=800, hop_length=200, win_length=800, power=1.0, n_mels=80, fmin=55, fmax=7600, norm="slaney", htk=False
    )
    db = 20 * np.log10(np.maximum(1e-5, power1)) - 20
    expected = np.clip(8 * (db + 100) / 100 - 4, -4, 4).T
    assert ours.shape == expected.shape == (1 + len(wav) // 200, 80)
    assert np.abs(ours - expected).max() < 1e-3
    assert ours.min() >= -4 and ours.max() <= 4 and ours.std() > 0.5


def test_80_mel_frames_per_second():
    assert MEL_FPS == 80
    assert melspectrogram(np.zeros(16000 * 2, np.float32)).shape[0] == 161
    assert [mel_index(i) for i in (0, 1, 5, 25)] == [0, 3, 16, 80]
