"""What both framework tests check: TTS speech at its own rate, and which frames are the
avatar's untouched recording (idle) and which have a drawn mouth (speaking)."""

from __future__ import annotations

import numpy as np

from synctalk2d.media.audio import load_audio
from tests.conftest import fixture_path

TTS_RATE = 24000  # a common TTS output rate: the plugins must take any
WIDTH = 160


def tts_speech(seconds: float) -> np.ndarray:
    """``seconds`` of real speech as 16-bit PCM at `TTS_RATE`."""
    wav, _ = load_audio(fixture_path("speech_44k.wav"), sample_rate=TTS_RATE)
    return (np.clip(wav[: int(seconds * TTS_RATE)], -1, 1) * 32767).astype(np.int16)


def recorded(lipsync) -> set[bytes]:
    """The avatar's own frames at `WIDTH`, as RGB bytes: what an idle frame must be."""
    return {np.ascontiguousarray(lipsync.avatar.frame(i, WIDTH)).tobytes() for i in range(len(lipsync.avatar))}
