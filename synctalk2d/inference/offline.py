"""Offline rendering: an audio file (or a folder of them) -> lip-synced MP4s.

Reading source frames, the U-Net, compositing and H.264 encoding overlap (see
`FrameGenerator`); the output has exactly ceil(audio seconds * 25) frames at the avatar's
full-frame size, with the input audio as its AAC track.

A file of any length renders in flat memory: the audio is read in pieces as the frames
need it (`LipSync.read_chunks`), and the video is written in parts of `PART_SECONDS`
(hidden beside the output), which are joined with the audio track at the end without
re-encoding (`media.writer.join_videos`). A render that is killed keeps its finished
parts: run again with the same arguments, it plans the frames already written again
(the lip shapes and references, not the drawing or encoding) and renders on from the
first missing part. The output path only ever holds a finished video.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import shutil
import time
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from rich.progress import Progress

from synctalk2d import __version__
from synctalk2d.atomic import write_json_atomic
from synctalk2d.avatar import FPS
from synctalk2d.errors import UserError
from synctalk2d.inference import mouth
from synctalk2d.inference.lipsync import LipSync, frame_count
from synctalk2d.inference.runtime import release_freed_memory
from synctalk2d.inference.schedule import frame_schedule
from synctalk2d.media.audio import count_samples, read_audio, read_audio_track
from synctalk2d.media.writer import VideoWriter, join_videos
from synctalk2d.progress import console, progress_bar

AUDIO_SUFFIXES = {".wav", ".mp3", ".m4a", ".aac", ".flac", ".ogg", ".opus", ".webm", ".mp4", ".mkv", ".mov"}
PART_SECONDS = 60  # a render is written in parts of about this length: what a killed render loses at most


@dataclass
class RenderSummary:
    output: Path
    frames: int
    seconds: float  # wall-clock time taken
    resumed_frames: int = 0  # frames a killed earlier run had already written

    @property
    def fps(self) -> float:
        return (self.frames - self.resumed_frames) / max(self.seconds, 1e-9)


class Parts:
    """The finished parts of one render, in a hidden folder beside its output. They are
    reused only by a run with the same inputs and settings (``settings``, kept in the
    folder); any other run starts over."""

    def __init__(self, output: Path, settings: dict, part_frames: int, num_frames: int):
        self.folder = output.parent / f".{output.name}.parts"
        self.part_frames = part_frames
        self.count = -(-num_frames // part_frames)
        self.settings = settings
        stored = self.folder / "settings.json"
        if self.folder.is_dir() and (not stored.is_file() or json.loads(stored.read_text()) != settings):
            console.print(f"{output.name}: an unfinished render with other audio or settings was found; starting over", highlight=False, soft_wrap=True)
            shutil.rmtree(self.folder)

    def path(self, index: int) -> Path:
        return self.folder / f"part{index:05d}.mp4"

    def done(self) -> int:
        """How many parts, from the first, are finished."""
        done = 0
        while done < self.count and self.path(done).is_file():
            done += 1
        return done

    def writer(self, index: int, width: int, height: int, crf: int) -> VideoWriter:
        if not self.folder.is_dir():
            self.folder.mkdir()
            write_json_atomic(self.folder / "settings.json", self.settings)
        return VideoWriter(self.path(index), width, height, fps=FPS, crf=crf)

    def remove(self) -> None:
        shutil.rmtree(self.folder, ignore_errors=True)


def render(
    lipsync: LipSync,
    audio: str | Path,
    output: str | Path,
    start_frame: int = 0,
    loop_back: bool = True,
    crf: int = 18,
    show_progress: bool = True,
    on_progress: Callable[[float], None] | None = None,
    progress: Progress | None = None,
) -> RenderSummary:
    """Render ``audio`` spoken by the avatar into ``output`` (MP4), resuming a killed
    render of the same arguments; ``on_progress`` is told the share of frames done (0..1)
    as they are written; ``progress`` is a bar to add this file's task to (a folder run's)."""
    started = time.perf_counter()
    info = lipsync.avatar.info
    if not 0 <= start_frame < info.num_frames:
        raise UserError(f"--start-frame {start_frame} is outside the avatar's {info.num_frames} frames")
    audio, output = Path(audio), Path(output)
    num_frames = frame_count(count_samples(audio))
    schedule = frame_schedule(num_frames, info.num_frames, start_frame, loop_back)
    output.parent.mkdir(parents=True, exist_ok=True)
    part_frames = -(-PART_SECONDS * FPS // lipsync.batch_size) * lipsync.batch_size  # whole batches
    parts = Parts(output, _settings(lipsync, audio, start_frame, loop_back, crf, num_frames), part_frames, num_frames)
    first = parts.done() * part_frames
    if first:
        done = f"{first / FPS / 60:.1f} of {num_frames / FPS / 60:.1f} minutes"
        console.print(f"{output.name}: resuming after {done} rendered earlier", highlight=False, soft_wrap=True)
    with contextlib.nullcontext(progress) if progress else progress_bar(show_progress) as bar:
        task = bar.add_task(output.name, total=num_frames, completed=first)
        chunks = _from_frame(lipsync.read_chunks(read_audio(audio), schedule), first)
        writer = None
        try:
            for k, frame in enumerate(lipsync.generator.frames(chunks), start=first):
                if k % part_frames == 0:
                    writer = parts.writer(k // part_frames, info.width, info.height, crf)
                writer.write(frame)
                if (k + 1) % part_frames == 0 or k + 1 == num_frames:
                    writer.close()
                    release_freed_memory()  # the next part's encoder would not fit the last one's holes
                bar.update(task, advance=1)
                if on_progress is not None:
                    on_progress((k + 1) / num_frames)
        except BaseException:
            if writer is not None:
                writer.abort()  # the part being written; the finished ones stay for a rerun
            raise
        join_videos([parts.path(i) for i in range(parts.count)], output, read_audio_track(audio))
        if progress:
            bar.remove_task(task)
    parts.remove()
    return RenderSummary(output, num_frames, time.perf_counter() - started, first)


def _from_frame(chunks: Iterable[tuple[np.ndarray, np.ndarray]], first: int) -> Iterator[tuple[np.ndarray, np.ndarray]]:
    """The batches of ``chunks`` from output frame ``first`` on (a batch boundary); those
    before are planned but not drawn."""
    start = 0
    for frames, conditioning in chunks:
        if start >= first:
            yield frames, conditioning
        start += len(frames)


def _settings(lipsync: LipSync, audio: Path, start_frame: int, loop_back: bool, crf: int, num_frames: int) -> dict:
    """What a render's frames depend on: a resumed render must match all of it."""
    avatar = lipsync.avatar.root
    trained = [(p.name, p.stat().st_mtime_ns) for p in sorted(avatar.iterdir()) if p.suffix in (".json", ".safetensors")]
    stat = audio.stat()
    drawing = [lipsync.renderer, mouth.PASTE, mouth.LIP_REACH, mouth.MOUTH_RESAMPLING, lipsync.batch_size]
    identity = [str(audio.resolve()), stat.st_size, stat.st_mtime_ns, str(avatar.resolve()), trained, *drawing]
    return {
        "version": __version__,
        "inputs": hashlib.sha256(json.dumps(identity).encode()).hexdigest(),
        "start_frame": start_frame,
        "loop_back": loop_back,
        "crf": crf,
        "frames": num_frames,
    }


def render_folder(lipsync: LipSync, audio_dir: Path, output_dir: Path, show_progress: bool = True, **options) -> tuple[list[RenderSummary], dict[Path, str]]:
    """Render every audio file in ``audio_dir`` to ``output_dir/<name>.mp4``; a bad file is
    reported and skipped, the rest still render. The bar shows each file and the whole folder."""
    files = sorted(p for p in Path(audio_dir).iterdir() if p.is_file() and p.suffix.lower() in AUDIO_SUFFIXES)
    if not files:
        raise UserError(f"{audio_dir} holds no audio files ({', '.join(sorted(AUDIO_SUFFIXES))})")
    done, failed = [], {}
    with progress_bar(show_progress) as bar:
        overall = bar.add_task(f"{len(files)} files", total=len(files))
        for path in files:
            try:
                done.append(render(lipsync, path, Path(output_dir) / f"{path.stem}.mp4", progress=bar, **options))
            except UserError as e:
                failed[path] = str(e)
            bar.update(overall, advance=1)
    return done, failed
