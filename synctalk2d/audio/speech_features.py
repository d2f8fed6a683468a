"""Speech features for the mouth model: per-utterance normalised log-mel, windowed per frame.

The mouth model must work for any speaker and microphone, so each mel band is normalised
over the utterance (mean 0, std 1: loudness and channel colour drop out), and each video
frame sees a window of mel frames reaching `PAST_SECONDS` back and at most
`LOOKAHEAD_SECONDS` ahead (counting the STFT window's half width), so a live stream can
render a frame once that little future audio has arrived.
"""

from __future__ import annotations

import numpy as np

from synctalk2d.audio.mel import MEL_FPS, N_FFT, N_MELS, melspectrogram
from synctalk2d.avatar import FPS
from synctalk2d.media.audio import SAMPLE_RATE

LOOKAHEAD_SECONDS = 0.2  # the most future audio a frame may depend on
PAST_SECONDS = 0.4
_HALF_STFT = N_FFT / 2 / SAMPLE_RATE  # a mel frame hears this much beyond its centre
MEL_AHEAD = int((LOOKAHEAD_SECONDS - _HALF_STFT) * MEL_FPS)  # 14 mel frames
MEL_BEHIND = int(PAST_SECONDS * MEL_FPS)  # 32 mel frames
WINDOW = MEL_BEHIND + 1 + MEL_AHEAD


def normalised_mel(wav: np.ndarray) -> np.ndarray:
    """(T, 80) log-mel of 16 kHz mono ``wav``, each band scaled to mean 0 and std 1 over
    the utterance (a silent utterance stays all zeros)."""
    mel = melspectrogram(wav)
    std = mel.std(axis=0, keepdims=True)
    return ((mel - mel.mean(axis=0, keepdims=True)) / np.maximum(std, 1e-3)).astype(np.float32)


def frame_windows(mel: np.ndarray, num_frames: int) -> np.ndarray:
    """(num_frames, WINDOW, 80) float32: for video frame i, the mel frames from
    ``MEL_BEHIND`` before its time i/25 to ``MEL_AHEAD`` after; frames beyond either end of
    the audio repeat the edge frame."""
    centres = np.round(np.arange(num_frames) * MEL_FPS / FPS).astype(int)
    offsets = np.arange(-MEL_BEHIND, MEL_AHEAD + 1)
    index = np.clip(centres[:, None] + offsets[None, :], 0, max(len(mel) - 1, 0))
    if len(mel) == 0:
        return np.zeros((num_frames, WINDOW, N_MELS), np.float32)
    return mel[index]
