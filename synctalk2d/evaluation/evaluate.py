"""`synctalk2d evaluate`: how well an avatar lip-syncs speech it has never seen.

The held-out tail of the recording (``train --holdout-seconds S``) is the test set: its own
audio is rendered on the avatar's *training* frames (as a user would render new speech) and
compared with the real tail frames. Two baselines go through the same measurements, so the
numbers mean something:

- ``unchanged``: the same training frames without lip sync (what you get with no model);
- ``real``: the real tail frames (the ceiling, where a measure has one).

Frames are compared in landmark-aligned crop space (each frame's own crop box, resized to
328x328), so differences in head position between source frames and the tail do not count
as mouth errors. Mouth landmarks come from a fresh tracker of the avatar's own landmark model
(``avatar.json``) for every video, gap-filled and smoothed as preprocessing does for the
avatar's own landmarks, which the mouth model's r is measured against: the render and its
ceiling are measured alike, and the detector's frame-to-frame jitter on a small or bearded
face is not counted as the render's.
"""

from __future__ import annotations

import contextlib
import json
from dataclasses import dataclass, field
from pathlib import Path

import cv2
import numpy as np
import soundfile as sf
import torch

from synctalk2d.audio.windows import feature_windows, to_model_window
from synctalk2d.avatar import CROP_SIZE, FPS, SAMPLES_PER_FRAME
from synctalk2d.errors import UserError
from synctalk2d.evaluation import metrics
from synctalk2d.evaluation.lower_face import LowerFace, coherence, foreign_area
from synctalk2d.face.crop import crop_face, model_crop
from synctalk2d.face.landmarks import LandmarkDetector, fill_missing, landmark_detector, smooth
from synctalk2d.face.lip_shape import aperture, crop_coordinates
from synctalk2d.inference.lipsync import LipSync
from synctalk2d.inference.mouth import paste_outline
from synctalk2d.inference.schedule import frame_schedule
from synctalk2d.media.audio import SAMPLE_RATE
from synctalk2d.media.writer import VideoWriter
from synctalk2d.models.checkpoint import load_syncnet
from synctalk2d.progress import progress_bar
from synctalk2d.timing import MAX_AV_OFFSET, best_lag, correlation_by_lag
from synctalk2d.training.mouth import picture_delay

MAX_SYNC_OFFSET = 5  # frames searched either way by the SyncNet offset search
LAGS = 10  # mouth-opening correlation is reported at lags -10..+10 frames
PREVIEW_HEIGHT = 720


@dataclass
class Clip:
    """One video as the metrics see it: aligned crops and landmarks in crop pixels."""

    crops: list[np.ndarray] = field(default_factory=list)
    landmarks: list[np.ndarray] = field(default_factory=list)

    def add(self, frame: np.ndarray, box: np.ndarray, tracker: LandmarkDetector) -> None:
        points = tracker(cv2.cvtColor(frame, cv2.COLOR_RGB2BGR))
        if points is None:  # keep the sequence aligned; `arrays` fills the gap
            points = np.full((68, 2), np.nan, np.float32)
        else:
            points = (points - box[:2]) * (CROP_SIZE / (box[2] - box[0]))
        self.crops.append(crop_face(frame, box))
        self.landmarks.append(points.astype(np.float32))

    def arrays(self) -> tuple[np.ndarray, np.ndarray]:
        landmarks = np.stack(self.landmarks)
        missing = np.isnan(landmarks).any(axis=(1, 2))
        if missing.all():
            raise UserError("no face could be found in the rendered frames; the avatar is not usable")
        return np.stack(self.crops), smooth(fill_missing(landmarks, ~missing))  # the rule preprocess uses


def evaluate(avatar_dir: str | Path, preview: str | Path | None = None, silence_seconds: float = 4.0, show_progress: bool = True, **runtime) -> dict:
    """Render the held-out tail and silence, measure, and return the report dict."""
    lipsync = LipSync(avatar_dir, **runtime)
    avatar = lipsync.avatar
    settings = json.loads((avatar.root / "train.json").read_text()) if (avatar.root / "train.json").is_file() else {}
    if "holdout_frames" not in settings:
        raise UserError(f"{avatar.root} has no train.json with a held-out tail; train it with --holdout-seconds 5")
    tail = np.arange(*settings["holdout_frames"])  # what training recorded, never recomputed
    if len(tail) < FPS:
        raise UserError(f"{avatar.root} has no held-out tail to evaluate on; train it with --holdout-seconds 5")
    used = int(tail[0])
    wav, _ = sf.read(avatar.audio_path, dtype="float32")
    tail_wav = wav[tail[0] * SAMPLES_PER_FRAME : (tail[-1] + 1) * SAMPLES_PER_FRAME]
    features = lipsync.audio_features(tail_wav)[: len(tail)]
    schedule = frame_schedule(len(tail), used, start=0, loop_back=False)
    boxes = avatar.boxes()

    clips = {name: Clip() for name in ("generated", "unchanged", "real")}
    trackers = {name: landmark_detector(avatar.info.landmark_model) for name in clips}  # the model the avatar was made with
    with progress_bar(show_progress) as bar, contextlib.ExitStack() as stack:
        writer = stack.enter_context(_preview_writer(preview, avatar.info, tail_wav)) if preview else None
        task = bar.add_task("held-out speech", total=len(tail))
        for k, frame in enumerate(lipsync.generator.frames(lipsync.chunks(features, schedule))):
            source, real_index = schedule[k], tail[k]
            real = avatar.frame(real_index)
            clips["generated"].add(frame, boxes[source], trackers["generated"])
            clips["unchanged"].add(avatar.frame(source), boxes[source], trackers["unchanged"])
            clips["real"].add(real, boxes[real_index], trackers["real"])
            if writer:
                writer.write(_side_by_side(frame, real))
            bar.update(task, advance=1)
        swapped = _swapped_audio_crops(lipsync, features, schedule, boxes, bar)
        silence = _silence_clips(lipsync, used, silence_seconds, bar)

    real_crops, real_landmarks = clips["real"].arrays()
    syncnet = load_syncnet(avatar.root) if lipsync.conditioning == "audio" else None  # the mouth conditioning trains no sync expert
    # the headline is lag 0 against the real frames; where stage `mouth` found the recording's
    # picture off its sound, the r at that delay is reported beside it as a diagnostic
    delay = picture_delay(avatar.root) if lipsync.conditioning == "mouth" else 0
    speech = {}
    for name, clip in clips.items():
        crops, landmarks = clip.arrays()
        speech[name] = _speech_metrics(crops, landmarks, real_crops, real_landmarks, delay)
        speech[name]["mouth_sharpness"] = metrics.mean_sharpness(crops, _mouth_regions(real_landmarks))
        speech[name]["mouth_movement"] = float(metrics.mouth_aperture(landmarks).std())
        speech[name]["mouth_opening_p95"] = float(np.percentile(metrics.mouth_aperture(landmarks), 95))  # how wide the lips open
        if syncnet is not None:
            speech[name].update(_sync(syncnet, crops, features, lipsync.feature_type))
    motion = Motion(avatar)
    for name, clip in clips.items():
        speech[name] |= motion(*clip.arrays())
    lower_face = LowerFace(real_landmarks)
    real_changes = lower_face.changes(lower_face.faces(real_crops, real_landmarks))
    drawn_on = clips["unchanged"].arrays()[1]  # the render's eyes and nose are these frames'
    for name, clip in clips.items():
        speech[name] |= coherence(lower_face, *clip.arrays(), real_changes, drawn_on if name == "generated" else None)
    speech["generated"] |= foreign_area(lower_face, *clips["generated"].arrays(), *clips["unchanged"].arrays())
    regions = _mouth_regions(real_landmarks)
    speech["generated"]["audio_usage"] = metrics.mean_region_change(clips["generated"].arrays()[0], swapped, regions)
    speech["unchanged"]["audio_usage"] = 0.0  # the same frames whatever the audio
    kept = {
        k: v
        for k, v in speech["real"].items()
        if k.startswith("sync") or k in ("mouth_sharpness", "mouth_movement", "mouth_opening_p95", *MOTION_KEYS, *LOWER_FACE_KEYS)
    }
    speech["real"] = kept | {"mouth_aperture_r": 1.0, "best_lag": 0}
    report = {
        "avatar": str(avatar.root),
        "conditioning": lipsync.conditioning,
        "renderer": lipsync.renderer if lipsync.conditioning == "mouth" else "unet",
        "held_out": {"first_frame": int(tail[0]), "frames": int(len(tail)), "seconds": len(tail) / FPS},
        "picture_delay_frames": delay,
        "speech": speech,
        "silence": {name: _stillness(*clip.arrays()) for name, clip in silence.items()},
    }
    if lipsync.conditioning == "mouth":  # the mouth model's own prediction: the ceiling for the render
        wanted = aperture(features)
        real = metrics.mouth_aperture(avatar.landmarks()[tail])
        by_lag = correlation_by_lag(wanted, real, LAGS)
        report["mouth_model"] = {"mouth_aperture_r": by_lag[0], "mouth_aperture_r_at_recording_delay": by_lag[-delay], "r_by_lag": by_lag}
    for name in ("generated", "unchanged"):
        generated_aperture = metrics.mouth_aperture(clips[name].arrays()[1])
        speech[name]["r_by_lag"] = correlation_by_lag(generated_aperture, metrics.mouth_aperture(real_landmarks), LAGS)
    return report


MOTION_KEYS = ("jump_rate", "change_p95_over_real", "seam_over_real")
LOWER_FACE_KEYS = ("lower_face_jump_rate", "lower_face_p95_over_real")


class Motion:
    """Does a video's mouth move like the avatar's own recording? Its lip region's frame-to-
    frame change against the whole recording's (`metrics.jumps`: share of jumps beyond the
    recording's 99th percentile, ratio of 95th percentiles), and the gradient along where a
    pasted mouth fades in (`metrics.seam_strength`) against the same outline on the
    recording's own frames."""

    def __init__(self, avatar):
        boxes = avatar.boxes()
        points = crop_coordinates(avatar.landmarks(), boxes)
        crops = avatar.crops()
        self.changes = metrics.lip_changes(metrics.lip_regions(crops, points))
        sample = np.linspace(0, len(points) - 1, min(len(points), 250)).round().astype(int)
        self.seam = metrics.seam_strength(crops[sample], [paste_outline(p, CROP_SIZE) for p in points[sample]])

    def __call__(self, crops: np.ndarray, landmarks: np.ndarray) -> dict[str, float]:
        seam = metrics.seam_strength(crops, [paste_outline(p, CROP_SIZE) for p in landmarks])
        return metrics.jumps(metrics.lip_changes(metrics.lip_regions(crops, landmarks)), self.changes) | {"seam_over_real": seam / self.seam}


def _swapped_audio_crops(lipsync: LipSync, features: np.ndarray, schedule: np.ndarray, boxes: np.ndarray, bar) -> np.ndarray:
    """The held-out render again with each frame's audio conditioning taken from half the
    clip away: how much the mouth changes is how much the render uses the audio."""
    swapped = np.roll(features, len(features) // 2, axis=0)
    crops = []
    task = bar.add_task("swapped audio", total=len(schedule))
    for k, frame in enumerate(lipsync.generator.frames(lipsync.chunks(swapped, schedule))):
        crops.append(crop_face(frame, boxes[schedule[k]]))
        bar.update(task, advance=1)
    return np.stack(crops)


def _silence_clips(lipsync: LipSync, used: int, seconds: float, bar) -> dict[str, Clip]:
    """Render silent audio (the mouth should stay closed and still) next to the same
    frames unchanged (the recording's own talking mouth)."""
    features = lipsync.audio_features(np.zeros(int(seconds * SAMPLE_RATE), np.float32))
    schedule = frame_schedule(len(features), used, start=0, loop_back=False)
    boxes = lipsync.avatar.boxes()
    clips = {"generated": Clip(), "unchanged": Clip()}
    trackers = {name: landmark_detector(lipsync.avatar.info.landmark_model) for name in clips}
    task = bar.add_task("silence", total=len(schedule))
    for k, frame in enumerate(lipsync.generator.frames(lipsync.chunks(features, schedule))):
        clips["generated"].add(frame, boxes[schedule[k]], trackers["generated"])
        clips["unchanged"].add(lipsync.avatar.frame(schedule[k]), boxes[schedule[k]], trackers["unchanged"])
        bar.update(task, advance=1)
    return clips


def _mouth_regions(real_landmarks: np.ndarray) -> list[tuple[slice, slice]]:
    """Per frame, the region around the real mouth (crop pixels) that PSNR/SSIM compare."""
    out = []
    for points in real_landmarks:
        x1, y1, x2, y2 = np.clip(metrics.mouth_box(points), 0, CROP_SIZE)
        out.append((slice(y1, max(y2, y1 + 8)), slice(x1, max(x2, x1 + 8))))
    return out


def _speech_metrics(crops, landmarks, real_crops, real_landmarks, delay: int) -> dict:
    """PSNR/SSIM/LMD frame by frame; the opening r with the real lips at lag 0 (the headline),
    the lag where it peaks, and the r with the real lips ``delay`` frames later."""
    regions = _mouth_regions(real_landmarks)
    psnrs = [metrics.psnr(c[r], rc[r]) for c, rc, r in zip(crops, real_crops, regions)]
    ssims = [metrics.ssim(c[r], rc[r]) for c, rc, r in zip(crops, real_crops, regions)]
    generated, real = metrics.mouth_aperture(landmarks), metrics.mouth_aperture(real_landmarks)
    by_lag = correlation_by_lag(generated, real, max(MAX_AV_OFFSET, abs(delay)))
    return {
        "mouth_psnr_db": float(np.mean(psnrs)),
        "mouth_ssim": float(np.mean(ssims)),
        "mouth_aperture_r": by_lag[0],
        "best_lag": best_lag(by_lag),
        "mouth_aperture_r_at_recording_delay": by_lag[-delay],
        "lmd_percent_face_width": metrics.landmark_distance(landmarks, real_landmarks),
    }


@torch.inference_mode()
def _sync(syncnet, crops: np.ndarray, features: np.ndarray, feature_type: str) -> dict:
    """SyncNet offset search: mean face/audio cosine with the audio shifted by each offset."""
    faces = torch.from_numpy(model_crop(crops).astype(np.float32) / 255).permute(0, 3, 1, 2)
    offsets = np.arange(-MAX_SYNC_OFFSET, MAX_SYNC_OFFSET + 1)
    frames = np.arange(MAX_SYNC_OFFSET, len(crops) - MAX_SYNC_OFFSET)
    face_emb = torch.cat([syncnet(faces[frames[i : i + 16]], _windows(features, frames[i : i + 16], feature_type))[1] for i in range(0, len(frames), 16)])
    similarity = []
    for offset in offsets:
        audio_emb = torch.cat(
            [syncnet(faces[frames[i : i + 16]], _windows(features, frames[i : i + 16] + offset, feature_type))[0] for i in range(0, len(frames), 16)]
        )
        similarity.append(torch.nn.functional.cosine_similarity(audio_emb, face_emb).mean().item())
    best, confidence = metrics.sync_offset(np.array(similarity), offsets)
    return {"sync_offset": best, "sync_confidence": confidence, "sync_similarity": float(max(similarity))}


def _windows(features: np.ndarray, indices: np.ndarray, feature_type: str) -> torch.Tensor:
    return torch.from_numpy(to_model_window(feature_windows(features, indices), feature_type)).float()


def _stillness(crops: np.ndarray, landmarks: np.ndarray) -> dict:
    x1, y1, x2, y2 = np.clip(metrics.mouth_box(np.median(landmarks, axis=0)), 0, CROP_SIZE)
    grey = np.stack([cv2.cvtColor(np.ascontiguousarray(c[y1:y2, x1:x2]), cv2.COLOR_RGB2GRAY) for c in crops])
    aperture = metrics.mouth_aperture(landmarks)
    return {
        "mouth_aperture_std": float(aperture.std()),
        "mouth_aperture_robust_std": metrics.robust_std(aperture),
        "mouth_aperture_mean": float(aperture.mean()),
        "mouth_frame_change": metrics.mean_frame_change(grey),
    }


def _preview_writer(path, info, audio: np.ndarray) -> VideoWriter:
    height = min(PREVIEW_HEIGHT, info.height)
    width = 2 * round(info.width * height / info.height)
    return VideoWriter(path, width, height, fps=FPS, audio=audio, sample_rate=SAMPLE_RATE)


def _side_by_side(generated: np.ndarray, real: np.ndarray) -> np.ndarray:
    height = min(PREVIEW_HEIGHT, generated.shape[0])
    width = round(generated.shape[1] * height / generated.shape[0])
    return np.concatenate([cv2.resize(img, (width, height), interpolation=cv2.INTER_AREA) for img in (generated, real)], axis=1)
