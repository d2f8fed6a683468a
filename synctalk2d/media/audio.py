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
    samples, _, _, start_time = _decode(path, lambda stream: ("mono", sample_rate))
    return samples, start_time


def load_audio_track(path: str | Path) -> tuple[np.ndarray, int]:
    """Return ``(samples, sample_rate)`` as the file has them, for an output's audio track:
    float32 (n, 1) mono or (n, 2) stereo (more channels are down-mixed to stereo) at the
    file's own rate, so a rendered video sounds like its input rather than like the
    16 kHz the models hear."""

    def keep(stream: av.audio.stream.AudioStream) -> tuple[str, int]:
        return ("mono" if stream.channels == 1 else "stereo"), stream.rate

    samples, layout, rate, _ = _decode(path, keep)
    return samples.reshape(-1, 1 if layout == "mono" else 2), rate


def _decode(path: str | Path, target) -> tuple[np.ndarray, str, int, float]:
    """Decode the first audio track into interleaved float32 samples with the (layout,
    rate) that ``target(stream)`` picks; returns them with that layout and rate and the
    timestamp of the first sample."""
    container = open_media(path, "audio file")
    with container, media_errors(path, "audio file"):
        if not container.streams.audio:
            raise UserError(f"{path} has no audio track")
        stream = container.streams.audio[0]
        layout, rate = target(stream)
        resampler = av.AudioResampler(format="flt", layout=layout, rate=rate)
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
    return np.concatenate(chunks).astype(np.float32), layout, rate, start_time or 0.0


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
