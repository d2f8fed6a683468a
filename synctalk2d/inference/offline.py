"""Offline rendering: an audio file (or a folder of them) -> lip-synced MP4s.

Reading source frames, the U-Net, compositing and H.264 encoding overlap (see
`FrameGenerator`); the output has exactly ceil(audio seconds * 25) frames at the avatar's
full-frame size, with the input audio as its AAC track.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from synctalk2d.avatar import FPS
from synctalk2d.errors import UserError
from synctalk2d.inference.lipsync import LipSync
from synctalk2d.inference.schedule import frame_schedule
from synctalk2d.media.audio import load_audio, load_audio_track
from synctalk2d.media.writer import VideoWriter
from synctalk2d.progress import progress_bar

AUDIO_SUFFIXES = {".wav", ".mp3", ".m4a", ".aac", ".flac", ".ogg", ".opus", ".webm", ".mp4", ".mkv", ".mov"}


@dataclass
class RenderSummary:
    output: Path
    frames: int
    seconds: float  # wall-clock time taken

    @property
    def fps(self) -> float:
        return self.frames / max(self.seconds, 1e-9)


def render(
    lipsync: LipSync,
    audio: str | Path,
    output: str | Path,
    start_frame: int = 0,
    loop_back: bool = True,
    crf: int = 18,
    show_progress: bool = True,
    on_progress: Callable[[float], None] | None = None,
) -> RenderSummary:
    """Render ``audio`` spoken by the avatar into ``output`` (MP4); ``on_progress`` is told
    the share of frames done (0..1) as they are written."""
    started = time.perf_counter()
    wav, _ = load_audio(audio)
    if len(wav) == 0:
        raise UserError(f"{audio} holds no audio samples")
    features = lipsync.audio_features(wav)
    info = lipsync.avatar.info
    if not 0 <= start_frame < info.num_frames:
        raise UserError(f"--start-frame {start_frame} is outside the avatar's {info.num_frames} frames")
    schedule = frame_schedule(len(features), info.num_frames, start_frame, loop_back)
    output = Path(output)
    output.parent.mkdir(parents=True, exist_ok=True)
    track, rate = load_audio_track(audio)  # the input's own rate and channels, not the models' 16 kHz mono
    with progress_bar(show_progress) as bar, VideoWriter(output, info.width, info.height, fps=FPS, crf=crf, audio=track, sample_rate=rate) as writer:
        task = bar.add_task(output.name, total=len(schedule))
        for frame in lipsync.generator.frames(lipsync.chunks(features, schedule)):
            writer.write(frame)
            bar.update(task, advance=1)
            if on_progress is not None:
                on_progress(writer.frames / len(schedule))
    return RenderSummary(output, len(schedule), time.perf_counter() - started)


def render_folder(lipsync: LipSync, audio_dir: Path, output_dir: Path, **options) -> tuple[list[RenderSummary], dict[Path, str]]:
    """Render every audio file in ``audio_dir`` to ``output_dir/<name>.mp4``; a bad file is
    reported and skipped, the rest still render."""
    files = sorted(p for p in Path(audio_dir).iterdir() if p.is_file() and p.suffix.lower() in AUDIO_SUFFIXES)
    if not files:
        raise UserError(f"{audio_dir} holds no audio files ({', '.join(sorted(AUDIO_SUFFIXES))})")
    done, failed = [], {}
    for path in files:
        try:
            done.append(render(lipsync, path, Path(output_dir) / f"{path.stem}.mp4", **options))
        except UserError as e:
            failed[path] = str(e)
    return done, failed
