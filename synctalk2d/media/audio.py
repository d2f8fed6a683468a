"""Decode any audio PyAV reads (wav, mp3, m4a/aac, flac, ogg/opus, or a video's track)
into mono float32 at one sample rate (16 kHz for the models)."""

from __future__ import annotations

from collections.abc import Iterator
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
    samples, layout, rate, _ = _decode(path, _own_rate)
    return samples.reshape(-1, 1 if layout == "mono" else 2), rate


def read_audio(path: str | Path, sample_rate: int = SAMPLE_RATE, seconds: float = 4.0) -> Iterator[np.ndarray]:
    """`load_audio`'s samples in pieces of ``seconds`` (the last one shorter), decoded as
    they are asked for, so a file of any length is read in the memory of one piece."""
    _, _, decoded = _stream(path, lambda stream: ("mono", sample_rate))
    size, waiting, held = max(1, round(seconds * sample_rate)), [], 0
    for piece, _ in decoded:
        waiting.append(piece)
        held += len(piece)
        if held >= size:
            joined = np.concatenate(waiting)
            whole = len(joined) - len(joined) % size
            yield from (joined[k : k + size] for k in range(0, whole, size))
            waiting, held = [joined[whole:]], len(joined) - whole
    if held:
        yield np.concatenate(waiting)


def count_samples(path: str | Path, sample_rate: int = SAMPLE_RATE) -> int:
    """How many samples `load_audio` returns, counted by decoding without keeping them."""
    count = sum(len(piece) for piece in read_audio(path, sample_rate))
    if not count:
        raise UserError(f"{path}: the audio track is empty")
    return count


def read_audio_track(path: str | Path) -> tuple[str, int, Iterator[np.ndarray]]:
    """`load_audio_track` in pieces: ``(layout, sample_rate, pieces)``, each piece float32
    (n, channels) as decoded."""
    layout, rate, pieces = _stream(path, _own_rate)
    width = 1 if layout == "mono" else 2
    return layout, rate, (piece.reshape(-1, width) for piece, _ in pieces)


def _own_rate(stream: av.audio.stream.AudioStream) -> tuple[str, int]:
    return ("mono" if stream.channels == 1 else "stereo"), stream.rate


def _decode(path: str | Path, target) -> tuple[np.ndarray, str, int, float]:
    """The whole first audio track as interleaved float32 samples with the (layout, rate)
    that ``target(stream)`` picks; returns them with that layout and rate and the
    timestamp of the first sample."""
    layout, rate, pieces = _stream(path, target)
    chunks, start_time = [], None
    for piece, time in pieces:
        start_time = time if start_time is None else start_time
        chunks.append(piece)
    if not chunks:
        raise UserError(f"{path}: the audio track is empty")
    return np.concatenate(chunks).astype(np.float32), layout, rate, start_time or 0.0


def _stream(path: str | Path, target) -> tuple[str, int, Iterator[tuple[np.ndarray, float]]]:
    """Open the first audio track; ``(layout, rate, pieces)`` where pieces yields
    (interleaved float32 samples, timestamp of the decoded frame they came from). The file
    is opened (and a bad one reported) before this returns, and closed when the pieces end."""
    container = open_media(path, "audio file")
    with media_errors(path, "audio file"):
        if not container.streams.audio:
            container.close()
            raise UserError(f"{path} has no audio track")
        stream = container.streams.audio[0]
        layout, rate = target(stream)

    def pieces() -> Iterator[tuple[np.ndarray, float]]:
        resampler = av.AudioResampler(format="flt", layout=layout, rate=rate)
        time = 0.0
        with container, media_errors(path, "audio file"):
            for frame in container.decode(stream):
                time = float(frame.time or 0.0)
                for out in resampler.resample(frame):
                    yield out.to_ndarray().reshape(-1), time
            for out in resampler.resample(None):
                yield out.to_ndarray().reshape(-1), time

    return layout, rate, pieces()


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


class SpeechResampler:
    """16-bit PCM at any rate and channel count, arriving in pieces (a TTS, a call's audio
    track), as 16 kHz mono float speech. One resampler per stream: it keeps the filter's
    state across pieces, so their joins are seamless."""

    def __init__(self, sample_rate: int, channels: int = 1):
        self.sample_rate, self.channels = sample_rate, channels
        self.layout = "mono" if channels == 1 else "stereo"
        self.resampler = av.AudioResampler(format="s16", layout="mono", rate=SAMPLE_RATE)

    def __call__(self, pcm: np.ndarray | bytes) -> np.ndarray:
        samples = np.frombuffer(pcm, np.int16) if isinstance(pcm, bytes | bytearray | memoryview) else np.asarray(pcm, np.int16)
        if self.channels > 2:  # PyAV's packed layouts here are mono and stereo: mix down first
            samples = samples.reshape(-1, self.channels).mean(axis=1).astype(np.int16)
        frame = av.AudioFrame.from_ndarray(samples.reshape(1, -1), format="s16", layout="mono" if self.channels > 2 else self.layout)
        frame.sample_rate = self.sample_rate
        pieces = [piece.to_ndarray()[0] for piece in self.resampler.resample(frame)]
        return (np.concatenate(pieces).astype(np.float32) / 32768.0) if pieces else np.zeros(0, np.float32)
