"""Decode any audio PyAV reads (wav, mp3, m4a/aac, flac, ogg/opus, or a video's track)
into mono float32 at one sample rate (16 kHz for the models)."""

from __future__ import annotations

from pathlib import Path

import av
import numpy as np
import soundfile as sf

from synctalk2d.errors import UserError
from synctalk2d.media.errors import media_errors, open_media

SAMPLE_RATE = 16000


def load_audio(path: str | Path, sample_rate: int = SAMPLE_RATE) -> tuple[np.ndarray, float]:
    """Return ``(samples, start_time)``: mono float32 in [-1, 1] at ``sample_rate``, and the
    timestamp (s) of the first sample, so callers can align it with a video's frames."""
    container = open_media(path, "audio file")
    with container, media_errors(path, "audio file"):
        if not container.streams.audio:
            raise UserError(f"{path} has no audio track")
        stream = container.streams.audio[0]
        resampler = av.AudioResampler(format="flt", layout="mono", rate=sample_rate)
        chunks: list[np.ndarray] = []
        start_time = None
        for frame in container.decode(stream):
            if start_time is None:
                start_time = float(frame.time or 0.0)
            for out in resampler.resample(frame):
                chunks.append(out.to_ndarray().reshape(-1))
        for out in resampler.resample(None):
            chunks.append(out.to_ndarray().reshape(-1))
    if not chunks:
        raise UserError(f"{path}: the audio track is empty")
    return np.concatenate(chunks).astype(np.float32), start_time or 0.0


def fit_length(samples: np.ndarray, num_samples: int, offset: int = 0) -> np.ndarray:
    """Samples ``[offset, offset + num_samples)``, zero-padded where the audio doesn't reach
    (negative ``offset``: the audio starts late, so silence comes first)."""
    out = np.zeros(num_samples, dtype=np.float32)
    src_start, dst_start = max(offset, 0), max(-offset, 0)
    count = max(0, min(len(samples) - src_start, num_samples - dst_start))
    out[dst_start : dst_start + count] = samples[src_start : src_start + count]
    return out


def write_wav(path: str | Path, samples: np.ndarray, sample_rate: int = SAMPLE_RATE) -> None:
    """16-bit PCM WAV."""
    sf.write(str(path), samples, sample_rate, subtype="PCM_16")
