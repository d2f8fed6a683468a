"""Decode any video PyAV opens into frames at exactly 25 fps, chosen by timestamp.

Output frame ``i`` is the source frame on screen at ``t = i / fps`` (measured from the first
frame's timestamp), so constant, odd (22.13 fps) and variable frame rates all map onto the
same clock without re-encoding anything. Rotation metadata is applied, so frames come out
as a player would show them.
"""

from __future__ import annotations

import math
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import av
import numpy as np

from synctalk2d.errors import UserError
from synctalk2d.media.errors import media_errors, open_media

# A source frame whose timestamp is within this of an output tick counts as on screen at
# that tick (timestamps are rounded to the stream's time base).
_TICK_TOLERANCE_S = 5e-4


@dataclass
class VideoInfo:
    width: int  # after rotation
    height: int
    duration: float  # seconds, estimate from the container (exact count comes from decoding)
    source_fps: float
    codec: str
    has_audio: bool

    def expected_frames(self, fps: float = 25.0) -> int:
        return max(0, math.ceil(self.duration * fps - _TICK_TOLERANCE_S * fps))


def probe_video(path: str | Path) -> VideoInfo:
    """Stream facts for progress bars and early validation, without decoding."""
    container = open_media(path, "video file")
    with container, media_errors(path, "video file"):
        if not container.streams.video:
            raise UserError(f"{path} has no video stream")
        stream = container.streams.video[0]
        if stream.duration is not None and stream.time_base is not None:
            duration = float(stream.duration * stream.time_base)
        elif container.duration is not None:
            duration = container.duration / av.time_base
        else:
            duration = 0.0
        width, height = stream.codec_context.width, stream.codec_context.height
        rotation = _stream_rotation(container)
        if rotation % 180:
            width, height = height, width
        rate = stream.average_rate or stream.guessed_rate or 25
        return VideoInfo(
            width=width,
            height=height,
            duration=duration,
            source_fps=float(rate),
            codec=stream.codec_context.name,
            has_audio=bool(container.streams.audio),
        )


def _stream_rotation(container: av.container.InputContainer) -> int:
    """Rotation of the first decoded frame (PyAV exposes the display matrix per frame)."""
    for frame in container.decode(video=0):
        container.seek(0)
        return int(frame.rotation or 0)
    return 0


def _rotate(image: np.ndarray, rotation: int) -> np.ndarray:
    """Apply a display-matrix rotation (degrees counter-clockwise) as a player would."""
    turns = round(rotation / 90) % 4
    return np.ascontiguousarray(np.rot90(image, turns)) if turns else image


def iter_frames(path: str | Path, fps: float = 25.0, pixel_format: str = "bgr24") -> Iterator[np.ndarray]:
    """Yield frames at exactly ``fps``: frame ``i`` is the one on screen at ``i / fps``.

    The last source frame is held for its own duration, so the output covers the whole
    clip: ``ceil(duration * fps)`` frames. Raises `UserError` on unreadable input.
    """
    container = open_media(path, "video file")
    with container, media_errors(path, "video file"):
        if not container.streams.video:
            raise UserError(f"{path} has no video stream")
        stream = container.streams.video[0]
        stream.thread_type = "AUTO"
        nominal = 1.0 / float(stream.average_rate or stream.guessed_rate or fps)
        start = None
        shown = None  # the (time, image) currently on screen
        next_tick = 0
        last_duration = nominal
        for frame in container.decode(stream):
            t = frame.time if frame.time is not None else (0.0 if shown is None else shown[0] + nominal)
            if start is None:
                start = t
            t -= start
            if shown is not None:
                last_duration = max(t - shown[0], 1e-3)
                while next_tick / fps < t - _TICK_TOLERANCE_S:
                    yield shown[1]
                    next_tick += 1
            image = _rotate(frame.to_ndarray(format=pixel_format), int(frame.rotation or 0))
            shown = (t, image)
        if shown is None:
            raise UserError(f"{path}: the video stream has no decodable frames")
        if frame.duration and frame.time_base:
            last_duration = float(frame.duration * frame.time_base)
        end = shown[0] + last_duration
        while next_tick / fps < end - _TICK_TOLERANCE_S:
            yield shown[1]
            next_tick += 1


def video_start_time(path: str | Path) -> float:
    """Timestamp (s) of the first video frame: the origin that audio is aligned to."""
    container = open_media(path, "video file")
    with container, media_errors(path, "video file"):
        for frame in container.decode(video=0):
            return float(frame.time or 0.0)
    return 0.0
