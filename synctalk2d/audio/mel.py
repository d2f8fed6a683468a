"""Log-mel spectrogram with the parameters SyncTalk_2D (and Wav2Lip before it) use.

At 16 kHz with hop 200 this gives 80 mel frames per second, i.e. 3.2 per video frame at
25 fps; the mel window of video frame ``i`` starts at mel frame ``int(80 * i / 25)``
(see :func:`mel_index`).
"""

from __future__ import annotations

from functools import lru_cache

import librosa
import numpy as np

from synctalk2d.media.audio import SAMPLE_RATE

N_FFT = 800
HOP = 200
WIN = 800
N_MELS = 80
FMIN = 55.0
FMAX = 7600.0
PREEMPHASIS = 0.97
REF_LEVEL_DB = 20.0
MIN_LEVEL_DB = -100.0
MAX_ABS_VALUE = 4.0
MEL_FPS = SAMPLE_RATE / HOP  # 80 mel frames per second


@lru_cache(maxsize=1)
def _mel_basis() -> np.ndarray:
    return librosa.filters.mel(sr=SAMPLE_RATE, n_fft=N_FFT, n_mels=N_MELS, fmin=FMIN, fmax=FMAX)


def preemphasis(wav: np.ndarray, previous: float = 0.0) -> np.ndarray:
    """``wav[n] - 0.97 * wav[n-1]`` (float32), ``previous`` being the sample before
    ``wav[0]``: applied chunk by chunk it gives exactly what it gives on the whole."""
    wav = np.asarray(wav, dtype=np.float32)
    before = np.concatenate([np.float32([previous]), wav[:-1]]) if len(wav) else wav
    return wav - np.float32(PREEMPHASIS) * before


@lru_cache(maxsize=1)
def _window() -> np.ndarray:
    """librosa's default Hann window, made once (a live stream asks for a few frames at a time)."""
    return librosa.filters.get_window("hann", WIN, fftbins=True)


def mel_frames(emphasised: np.ndarray) -> np.ndarray:
    """(T, 80) float32 normalised log-mel of pre-emphasised audio whose frame ``t`` covers
    samples ``[t * HOP, t * HOP + N_FFT)`` (no padding added): |STFT|, mel projection, dB
    relative to ``REF_LEVEL_DB``, then the symmetric normalisation of the reference,
    clipped to [-4, 4]. Frames depend only on their own samples, so a stream can compute
    them as the audio arrives (`audio.speech_features.MelStream`)."""
    spectrum = np.abs(librosa.stft(y=emphasised, n_fft=N_FFT, hop_length=HOP, win_length=WIN, window=_window(), center=False))
    mel = _mel_basis() @ spectrum
    min_level = np.exp(MIN_LEVEL_DB / 20 * np.log(10))
    db = 20 * np.log10(np.maximum(min_level, mel)) - REF_LEVEL_DB
    normalised = (2 * MAX_ABS_VALUE) * ((db - MIN_LEVEL_DB) / -MIN_LEVEL_DB) - MAX_ABS_VALUE
    return np.clip(normalised, -MAX_ABS_VALUE, MAX_ABS_VALUE).T.astype(np.float32)


def melspectrogram(wav: np.ndarray) -> np.ndarray:
    """(T, 80) float32 normalised log-mel of 16 kHz mono ``wav`` (float in [-1, 1]),
    T = 1 + len // HOP: frames centred on every HOP-th sample, the audio zero-padded by
    half a window at both ends (librosa's ``center=True``)."""
    return mel_frames(np.pad(preemphasis(wav), N_FFT // 2))


def mel_index(frame: int, fps: float = 25.0) -> int:
    """First mel frame of the 16-frame mel window belonging to video frame ``frame``."""
    return int(MEL_FPS * (frame / fps))
