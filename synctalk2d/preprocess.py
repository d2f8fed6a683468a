"""Preprocess: a talking-head video -> a complete avatar directory (see `synctalk2d.avatar`).

Pass 1 decodes the video at 25 fps in one thread, tracks the face in the calling thread and
writes JPEG frames from a thread pool, so decoding, landmarks and writing overlap. Landmarks
are then gap-filled and smoothed over the whole clip (zero-phase, needs all frames), the
crop boxes follow, and pass 2 cuts the 328x328 crops from the written frames into a
memory-mapped cache — from the same JPEGs inference will paste into, so training and
inference see identical pixels.

Everything is built in a hidden sibling directory and renamed into place at the end, with
``avatar.json`` written last: an interrupted run leaves nothing that looks complete, and the
next run simply starts again.
"""

from __future__ import annotations

import datetime
import os
import queue
import shutil
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np

from synctalk2d import __version__
from synctalk2d.audio.mel import melspectrogram
from synctalk2d.avatar import CROP_SIZE, FORMAT_VERSION, FPS, Avatar, AvatarInfo
from synctalk2d.errors import UserError
from synctalk2d.face.crop import crop_boxes, crop_face
from synctalk2d.face.landmarks import DEFAULT_LANDMARKS, LandmarkDetector, fill_missing, landmark_detector, smooth
from synctalk2d.media.audio import SAMPLE_RATE, fit_length, load_audio, write_wav
from synctalk2d.media.video import VideoInfo, iter_frames, probe_video, video_start_time
from synctalk2d.progress import progress_bar

MIN_SECONDS = 3.0  # training needs several 16-frame windows plus off-sync negatives
MIN_FACE_SHARE = 0.9  # frames without a face are filled from neighbours, up to this share
JPEG_QUALITY = 95
_WORKERS = max(2, os.cpu_count() or 2)


@dataclass
class PreprocessSummary:
    avatar: Path
    num_frames: int
    duration: float
    face_share: float
    seconds: float


def preprocess(
    video: str | Path,
    avatar_dir: str | Path,
    audio: str | Path | None = None,
    force: bool = False,
    show_progress: bool = True,
    detector: LandmarkDetector | None = None,
    landmarks: str = DEFAULT_LANDMARKS,
) -> PreprocessSummary:
    """Build the avatar at ``avatar_dir`` from ``video`` (and ``audio``, which wins over the
    video's own track), finding landmarks with ``detector`` (default: a new one of the model
    ``landmarks`` names, see `landmark_detector`).
    Raises `UserError` for any input a user must fix."""
    started = time.perf_counter()
    video, root = Path(video), Path(avatar_dir)
    _check_destination(root, force)
    info = probe_video(video)
    if info.duration and info.duration < MIN_SECONDS:
        raise UserError(f"{video} is {info.duration:.2f} s long; at least {MIN_SECONDS:.0f} s of video are needed to train")
    if audio is None and not info.has_audio:
        raise UserError(f"{video} has no audio track; pass the recording's audio with --audio FILE")
    samples, audio_offset = _load_aligned_audio(video, audio)

    work = root.parent / f".{root.name}.partial"
    shutil.rmtree(work, ignore_errors=True)  # a previous run that was killed: start again
    (work / "frames").mkdir(parents=True)
    try:
        detector = detector or landmark_detector(landmarks)
        num_frames, face_share = _build(video, Avatar(work), info, samples, audio_offset, show_progress, detector)
        Avatar(work).write_info(
            AvatarInfo(
                format_version=FORMAT_VERSION,
                fps=FPS,
                num_frames=num_frames,
                width=info.width,
                height=info.height,
                source=video.name,
                audio_source=Path(audio).name if audio else video.name,
                landmark_model=detector.name,
                created=datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
                tool_version=__version__,
                face_detected_share=round(face_share, 4),
            )
        )
    except BaseException:
        shutil.rmtree(work, ignore_errors=True)
        raise
    _move_into_place(work, root)
    return PreprocessSummary(root, num_frames, num_frames / FPS, face_share, time.perf_counter() - started)


def _build(
    video: Path, avatar: Avatar, info: VideoInfo, samples: np.ndarray, audio_offset: int, show_progress: bool, detector: LandmarkDetector
) -> tuple[int, float]:
    """Everything but ``avatar.json``: frames, landmarks, boxes, crops, audio, mel."""
    expected = info.expected_frames(FPS)
    with progress_bar(show_progress) as bar:
        landmarks, found = _track_and_write_frames(video, avatar, expected, bar, detector)
        num_frames = len(landmarks)
        if expected and num_frames < 0.9 * expected:
            raise UserError(f"{video} is truncated or corrupt: decoded {num_frames} of {expected} frames")
        if num_frames < MIN_SECONDS * FPS:
            raise UserError(f"{video} gives {num_frames} frames; at least {MIN_SECONDS * FPS:.0f} (3 s) are needed to train")
        face_share = float(found.mean())
        if face_share == 0:
            raise UserError(f"no face was found in any frame of {video}")
        if face_share < MIN_FACE_SHARE:
            raise UserError(
                f"a face was found in only {face_share:.0%} of the frames of {video} (need {MIN_FACE_SHARE:.0%}); "
                "use a clip where one face is visible throughout"
            )
        landmarks = smooth(fill_missing(landmarks, found))
        boxes = crop_boxes(landmarks)
        np.save(avatar.landmarks_path, landmarks)
        np.save(avatar.boxes_path, boxes)
        _write_crops(avatar, boxes, bar)

    wav = fit_length(samples, num_frames * SAMPLE_RATE // FPS, audio_offset)
    write_wav(avatar.audio_path, wav)
    np.save(avatar.mel_path, melspectrogram(wav))
    return num_frames, face_share


def _check_destination(root: Path, force: bool) -> None:
    if root.exists() and not root.is_dir():
        raise UserError(f"{root} exists and is not a directory")
    if Avatar(root).is_complete():
        if not force:
            raise UserError(f"{root} already holds a complete avatar; pass --force to replace it")
    elif root.is_dir() and any(root.iterdir()):
        raise UserError(f"{root} is a non-empty directory that is not an avatar; choose an empty or new directory")


def _load_aligned_audio(video: Path, audio: str | Path | None) -> tuple[np.ndarray, int]:
    """16 kHz mono samples and the sample index that lines up with the first video frame."""
    if audio is not None:
        samples, _ = load_audio(audio)
        return samples, 0
    samples, audio_start = load_audio(video)
    return samples, round((video_start_time(video) - audio_start) * SAMPLE_RATE)


def _track_and_write_frames(video: Path, avatar: Avatar, expected: int, bar, detector: LandmarkDetector) -> tuple[np.ndarray, np.ndarray]:
    """Pass 1: decode (thread) -> landmarks (here) -> JPEG files (pool), overlapped."""
    frames: queue.Queue = queue.Queue(maxsize=16)
    failure: list[BaseException] = []

    def decode() -> None:
        try:
            for image in iter_frames(video, FPS, "bgr24"):
                frames.put(image)
        except BaseException as e:  # re-raised in the consumer
            failure.append(e)
        finally:
            frames.put(None)

    points, found, pending = [], [], []
    task = bar.add_task("frames + landmarks", total=expected or None)
    threading.Thread(target=decode, daemon=True, name="decode").start()
    with ThreadPoolExecutor(_WORKERS, thread_name_prefix="jpeg") as pool:
        while (image := frames.get()) is not None:
            index = len(points)
            pending.append(pool.submit(_write_jpeg, avatar.frame_path(index), image))
            face = detector(image)
            found.append(face is not None)
            points.append(face if face is not None else np.zeros((68, 2), np.float32))
            bar.update(task, advance=1)
            if len(pending) > 4 * _WORKERS:  # bound memory: wait for the oldest writes
                pending.pop(0).result()
        for job in pending:
            job.result()
    if failure:
        raise failure[0]
    bar.update(task, total=len(points), completed=len(points))
    if not points:
        raise UserError(f"{video}: no frames could be decoded")
    return np.stack(points), np.array(found)


def _write_jpeg(path: Path, image: np.ndarray) -> None:
    ok, data = cv2.imencode(".jpg", image, [cv2.IMWRITE_JPEG_QUALITY, JPEG_QUALITY])
    if not ok:
        raise OSError(f"could not encode frame {path.name}")
    path.write_bytes(data.tobytes())


def _write_crops(avatar: Avatar, boxes: np.ndarray, bar) -> None:
    """Pass 2: the 328x328 RGB crop of every frame into the memory-mappable cache."""
    crops = np.lib.format.open_memmap(avatar.crops_path, mode="w+", dtype=np.uint8, shape=(len(boxes), CROP_SIZE, CROP_SIZE, 3))
    task = bar.add_task("face crops", total=len(boxes))

    def cut(index: int) -> None:
        frame = cv2.imread(str(avatar.frame_path(index)), cv2.IMREAD_COLOR)
        crops[index] = cv2.cvtColor(crop_face(frame, boxes[index]), cv2.COLOR_BGR2RGB)

    with ThreadPoolExecutor(_WORKERS, thread_name_prefix="crop") as pool:
        for _ in pool.map(cut, range(len(boxes))):
            bar.update(task, advance=1)
    crops.flush()


def _move_into_place(work: Path, root: Path) -> None:
    """Swap the finished avatar in; an old one (``--force``) is removed only afterwards."""
    old = root.parent / f".{root.name}.old"
    shutil.rmtree(old, ignore_errors=True)
    if root.exists():
        os.replace(root, old)
    os.replace(work, root)
    shutil.rmtree(old, ignore_errors=True)
