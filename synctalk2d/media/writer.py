"""MP4 output (H.264 yuv420p + AAC) written by PyAV directly: no ffmpeg binary, no
temporary AVI, no separate muxing pass.

The file is written under a temporary name in the target directory and renamed on a
successful close, so an interrupted render never leaves a half-written file that looks
like output. Audio is encoded first, as a whole (it is small), then video streams in;
both tracks start at timestamp 0, so they stay in sync.
"""

from __future__ import annotations

import os
import tempfile
from fractions import Fraction
from pathlib import Path

import av
import numpy as np

AUDIO_RATE = 44100


class VideoWriter:
    """``with VideoWriter(path, width, height, audio=samples, sample_rate=16000) as w: w.write(frame)``

    Frames are (height, width, 3) uint8 RGB. Odd sizes are padded by one pixel (yuv420p
    needs even sizes), repeating the edge, so nothing is cropped away.
    """

    def __init__(
        self,
        path: str | Path,
        width: int,
        height: int,
        fps: int = 25,
        crf: int = 18,
        audio: np.ndarray | None = None,
        sample_rate: int | None = None,
        preset: str = "veryfast",
    ):
        self.path = Path(path)
        self.width, self.height = width, height
        fd, self._tmp = tempfile.mkstemp(dir=self.path.parent, prefix=f".{self.path.stem}.", suffix=".mp4")
        os.close(fd)
        self._container = av.open(self._tmp, "w", format="mp4", options={"movflags": "+faststart"})
        self._video = self._container.add_stream("libx264", rate=fps)
        self._video.width, self._video.height = width + width % 2, height + height % 2
        self._video.pix_fmt = "yuv420p"
        self._video.options = {"crf": str(crf), "preset": preset}
        self._video.codec_context.thread_type = "AUTO"
        self._video.time_base = Fraction(1, fps)
        self._frames = 0
        if audio is not None:
            self._write_audio(np.asarray(audio, np.float32), sample_rate)

    def _write_audio(self, samples: np.ndarray, sample_rate: int | None) -> None:
        if sample_rate is None:
            raise ValueError("sample_rate is required with audio")
        planar = samples[None, :] if samples.ndim == 1 else samples.T  # (channels, n)
        layout = "mono" if planar.shape[0] == 1 else "stereo"
        stream = self._container.add_stream("aac", rate=AUDIO_RATE)
        stream.layout = layout
        frame = av.AudioFrame.from_ndarray(np.ascontiguousarray(planar, np.float32), format="fltp", layout=layout)
        frame.sample_rate, frame.pts = sample_rate, 0
        resampler = av.AudioResampler(format="fltp", layout=layout, rate=AUDIO_RATE, frame_size=stream.codec_context.frame_size or 1024)
        for chunk in [*resampler.resample(frame), *resampler.resample(None)]:
            self._container.mux(stream.encode(chunk))
        self._container.mux(stream.encode(None))

    def write(self, frame: np.ndarray) -> None:
        if frame.shape[:2] != (self.height, self.width):
            raise ValueError(f"frame is {frame.shape[1]}x{frame.shape[0]}, the video {self.width}x{self.height}")
        if (self.width | self.height) % 2:
            frame = np.pad(frame, ((0, self.height % 2), (0, self.width % 2), (0, 0)), mode="edge")
        video_frame = av.VideoFrame.from_ndarray(np.ascontiguousarray(frame), format="rgb24")
        video_frame.pts = self._frames
        self._frames += 1
        self._container.mux(self._video.encode(video_frame))

    def close(self) -> None:
        """Flush the encoder and move the finished file into place."""
        self._container.mux(self._video.encode(None))
        self._container.close()
        os.replace(self._tmp, self.path)

    def abort(self) -> None:
        """Drop the partial file (the target path is left as it was)."""
        try:
            self._container.close()
        finally:
            if os.path.exists(self._tmp):
                os.unlink(self._tmp)

    def __enter__(self) -> "VideoWriter":
        return self

    def __exit__(self, exc_type, exc, tb) -> None:
        if exc_type is None:
            self.close()
        else:
            self.abort()
