"""MP4 output (H.264 yuv420p + AAC) written by PyAV directly: no ffmpeg binary, no
temporary AVI, no separate muxing pass.

The file is written under a hidden temporary name in the target directory and renamed on
a successful close, so an interrupted render never leaves a half-written file that looks
like output. Both tracks start at timestamp 0, so they are in sync. `VideoWriter` encodes
its audio whole up front (a clip's is small); the muxer is told to hold its packets until
video packets arrive, so the file is still interleaved (audio next to the video it goes
with). `join_videos` puts parts a long render wrote one by one into one file without
re-encoding them, encoding the audio as it is read, a little ahead of the video.
"""

from __future__ import annotations

from collections.abc import Iterable
from fractions import Fraction
from pathlib import Path

import av
import cv2
import numpy as np

from synctalk2d.atomic import commit, temp_beside

AAC_RATES = frozenset(av.codec.Codec("aac", "w").audio_rates)
FALLBACK_RATE = 48000  # for input rates AAC cannot carry
SMPTE170M, MPEG_RANGE = 6, 1  # BT.601 matrix and limited range: what cv2's RGB->I420 produces
MUX_OPTIONS = {"movflags": "+faststart", "max_interleave_delta": "0"}
AUDIO_AHEAD_SECONDS = 0.5  # `join_videos` encodes the audio this far ahead of the video it muxes


class AudioTrack:
    """An AAC track being added to ``container``: float32 samples (n, channels) at
    ``sample_rate`` go in as they come (`add`), resampled to a rate AAC carries and cut into
    the encoder's frames; `finish` flushes it."""

    def __init__(self, container, layout: str, sample_rate: int):
        self.container, self.layout, self.sample_rate = container, layout, sample_rate
        rate = sample_rate if sample_rate in AAC_RATES else FALLBACK_RATE
        self.stream = container.add_stream("aac", rate=rate)
        self.stream.layout = layout
        self.resampler = av.AudioResampler(format="fltp", layout=layout, rate=rate, frame_size=self.stream.codec_context.frame_size)
        self.samples = 0  # given so far, at ``sample_rate``

    @property
    def seconds(self) -> float:
        return self.samples / self.sample_rate

    def add(self, samples: np.ndarray) -> None:
        if not len(samples):
            return
        frame = av.AudioFrame.from_ndarray(np.ascontiguousarray(samples.T), format="fltp", layout=self.layout)
        frame.sample_rate, frame.pts = self.sample_rate, self.samples
        self.samples += len(samples)
        for chunk in self.resampler.resample(frame):
            self.container.mux(self.stream.encode(chunk))

    def finish(self) -> None:
        for chunk in self.resampler.resample(None):
            self.container.mux(self.stream.encode(chunk))
        self.container.mux(self.stream.encode(None))


class VideoWriter:
    """``with VideoWriter(path, width, height, audio=samples, sample_rate=16000) as w: w.write(frame)``

    Frames are (height, width, 3) uint8 RGB. ``audio`` is float32 in [-1, 1], (n,) mono
    or (n, 2) stereo; it is kept at its own rate when AAC supports it (16 kHz does),
    otherwise resampled to 48 kHz. yuv420p needs even sizes, so an odd width or height
    is padded by one pixel (the last column/row repeated): the video is then one pixel
    larger than the frames, nothing is cropped away.

    x264 uses frame threads (one frame per thread, in parallel; no quality cost, unlike
    slices) with its automatic thread count, 1.5x the CPUs this process may run on; the
    RGB->YUV conversion is done by OpenCV, which is faster than PyAV's swscale path.
    """

    def __init__(
        self,
        path: str | Path,
        width: int,
        height: int,
        fps: int | Fraction = 25,
        crf: int = 18,
        audio: np.ndarray | None = None,
        sample_rate: int | None = None,
        preset: str = "veryfast",
    ):
        if audio is not None and sample_rate is None:
            raise ValueError("sample_rate is required with audio")
        self.path = Path(path)
        self.width, self.height = width, height
        self.frames = 0
        self._closed = False
        self._tmp = temp_beside(self.path)
        self._container = None
        try:
            self._container = av.open(self._tmp, "w", format="mp4", options=MUX_OPTIONS)
            self._video = self._container.add_stream("libx264", rate=fps)
            self._video.width, self._video.height = width + width % 2, height + height % 2
            self._video.pix_fmt = "yuv420p"
            self._video.time_base = 1 / Fraction(fps)
            self._video.options = {"crf": str(crf), "preset": preset}
            codec = self._video.codec_context
            codec.thread_type, codec.thread_count = "FRAME", 0
            codec.colorspace, codec.color_range = SMPTE170M, MPEG_RANGE
            if audio is not None:
                self._write_audio(np.asarray(audio, np.float32), sample_rate)
        except BaseException:
            self.abort()
            raise

    def _write_audio(self, samples: np.ndarray, sample_rate: int) -> None:
        samples = _channels(samples)
        track = AudioTrack(self._container, "mono" if samples.shape[1] == 1 else "stereo", sample_rate)
        track.add(samples)
        track.finish()

    def write(self, frame: np.ndarray) -> None:
        """Append one (height, width, 3) uint8 RGB frame."""
        if frame.shape != (self.height, self.width, 3) or frame.dtype != np.uint8:
            raise ValueError(f"frame is {frame.shape} {frame.dtype}, the video takes ({self.height}, {self.width}, 3) uint8")
        if (self.width | self.height) % 2:
            frame = cv2.copyMakeBorder(frame, 0, self.height % 2, 0, self.width % 2, cv2.BORDER_REPLICATE)
        yuv = cv2.cvtColor(np.ascontiguousarray(frame), cv2.COLOR_RGB2YUV_I420)
        video_frame = av.VideoFrame.from_ndarray(yuv, format="yuv420p")
        video_frame.pts = self.frames
        self.frames += 1
        self._container.mux(self._video.encode(video_frame))

    def write_batch(self, frames) -> None:
        """Append frames from an (N, height, width, 3) array or any iterable of frames."""
        for frame in frames:
            self.write(frame)

    def close(self) -> None:
        """Flush the encoder and move the finished file into place (once; later calls do
        nothing). If finishing fails, the partial file is removed."""
        if self._closed:
            return
        try:
            if not self.frames:
                raise ValueError(f"no frames were written to {self.path}")
            self._container.mux(self._video.encode(None))
            self._container.close()
        except BaseException:
            self.abort()
            raise
        self._closed = True
        commit(self._tmp, self.path)

    def abort(self) -> None:
        """Drop the partial file; the target path is left as it was."""
        self._closed = True
        try:
            if self._container is not None:
                self._container.close()
        except Exception:
            pass  # closing a broken container can fail too; the file goes either way
        finally:
            self._tmp.unlink(missing_ok=True)

    def __enter__(self) -> VideoWriter:
        return self

    def __exit__(self, exc_type, exc, tb) -> None:
        if exc_type is None:
            self.close()
        else:
            self.abort()


def _channels(samples: np.ndarray) -> np.ndarray:
    """``samples`` as (n, 1) mono or (n, 2) stereo float32, or a ValueError."""
    samples = np.asarray(samples, np.float32)
    if samples.ndim == 1:
        samples = samples[:, None]
    if samples.ndim != 2 or samples.shape[1] not in (1, 2) or not len(samples):
        raise ValueError(f"audio must be (n,) mono or (n, 2) stereo with n > 0, got shape {samples.shape}")
    return samples


def join_videos(parts: list[Path], path: str | Path, audio: tuple[str, int, Iterable[np.ndarray]] | None = None) -> None:
    """Write the H.264 MP4s ``parts`` (from `VideoWriter`, same size, rate and settings,
    no audio) one after another into ``path``, without re-encoding, with ``audio`` (layout,
    sample rate, pieces of (n, channels) float32: `media.audio.read_audio_track`) as its AAC
    track, read as the video goes. Written to a temp file and renamed, as `VideoWriter` does."""
    if not parts:
        raise ValueError(f"no video to join into {path}")
    tmp = temp_beside(path)
    try:
        with av.open(str(parts[0])) as first, av.open(tmp, "w", format="mp4", options=MUX_OPTIONS) as out:
            video = out.add_stream_from_template(first.streams.video[0])
            track = AudioTrack(out, audio[0], audio[1]) if audio else None
            pieces = iter(audio[2]) if audio else iter(())
            offset = 0.0  # seconds of video before the current part
            for part in parts:
                with av.open(str(part)) as source:
                    stream = source.streams.video[0]
                    base = stream.time_base
                    shift = round(offset / base)
                    for packet in source.demux(stream):
                        if packet.dts is None:  # the demuxer's empty flush packet
                            continue
                        while track is not None and track.seconds < offset + float(packet.dts * base) + AUDIO_AHEAD_SECONDS:
                            piece = next(pieces, None)
                            if piece is None:
                                break
                            track.add(_channels(piece))
                        packet.pts, packet.dts = packet.pts + shift, packet.dts + shift
                        packet.stream = video
                        out.mux(packet)
                    offset += stream.frames / float(stream.average_rate)
            if track is not None:
                for piece in pieces:
                    track.add(_channels(piece))
                track.finish()
        commit(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)
