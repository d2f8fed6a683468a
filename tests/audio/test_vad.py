"""Voice activity: speech is speech, noise and music are not, and a stream decides as a file does."""

import numpy as np

from conftest import fixture_path
from synctalk2d.audio.vad import LEAD_FRAMES, VoiceActivity, frame_activity, voice_activity, with_lead
from synctalk2d.media.audio import load_audio

RATE = 16000


def pink_noise(seconds: float, peak_db: float = -20.0, seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    n = int(seconds * RATE)
    spectrum = np.fft.rfft(rng.normal(size=n)) / np.sqrt(np.arange(1, n // 2 + 2))
    x = np.fft.irfft(spectrum, n)
    return (x / np.abs(x).max() * 10 ** (peak_db / 20)).astype(np.float32)


def notes(seconds: float, peak_db: float = -20.0) -> np.ndarray:
    """A melody of plucked harmonic notes, one a second: music with no voice in it."""
    t = np.arange(int(seconds * RATE)) / RATE
    x = np.zeros_like(t)
    for k, f0 in enumerate([220, 277, 330, 440, 392, 330, 294, 262][: int(seconds)]):
        on = (t >= k) & (t < k + 1)
        for harmonic in (1, 2, 3):
            x[on] += np.sin(2 * np.pi * f0 * harmonic * t[on]) / harmonic * np.exp(-3 * (t[on] - k))
    return (x / np.abs(x).max() * 10 ** (peak_db / 20)).astype(np.float32)


def speech(seconds: float) -> np.ndarray:
    wav, _ = load_audio(fixture_path("speech_hb.wav"))
    return wav[: int(seconds * RATE)]


def test_noise_music_and_silence_are_not_speech():
    for sound in (pink_noise(6), notes(6), np.zeros(6 * RATE, np.float32)):
        assert voice_activity(sound, len(sound) // 640).mean() < 0.05


def test_speech_is_speech_also_over_noise():
    clean = speech(12)
    frames = len(clean) // 640
    assert voice_activity(clean, frames).mean() > 0.7
    assert voice_activity(clean + 0.5 * pink_noise(12), frames).mean() > 0.6


def test_a_stream_in_any_chunks_decides_as_the_whole_file():
    wav = speech(6)
    frames = len(wav) // 640
    rule, decided, at = VoiceActivity(), [], 0
    for size in np.random.default_rng(0).integers(100, 3000, size=1000):
        if at >= len(wav):
            break
        decided.append(rule.push(wav[at : at + size]))
        at += size
    decided.append(rule.finish())
    assert np.array_equal(np.concatenate(decided)[:frames], frame_activity(wav, frames))


def test_the_mouth_starts_before_the_sound():
    active = np.zeros(20, bool)
    active[10:15] = True
    led = with_lead(active, 20)
    assert led[10 - LEAD_FRAMES : 15].all() and not led[: 10 - LEAD_FRAMES].any() and not led[15:].any()
