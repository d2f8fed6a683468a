"""The two renderers of mouth conditioning side by side, as JSON on stdout.

    python bench/compositor.py AVATAR [AVATAR ...] [--strips DIR] [--renderers paste unet]

Each AVATAR must be trained with ``--holdout-seconds`` and ``--renderer unet`` (so it has
both a mouth model and a compositor). For every renderer, `synctalk2d evaluate` renders
the held-out tail's own speech onto the training frames, the references chosen by the
same picker, and the bench reports from its report: mouth-opening r at lag 0 against the
real tail and the best lag, mouth sharpness over the real tail's, jumps and the
95th-percentile lip change against the recording, the seam measure, and silence
stillness; then the render speed of the whole tail (frames/s, decode and composite
included, no landmarking), and the compositor's training record (steps, seconds, device).

``--strips DIR``: for each avatar, PNG strips of 30 consecutive mouths at the tail's
fastest head turn and at its fastest syllables, one row per renderer above the real
frames, each tile cropped around the frame's own recorded mouth.
"""

from __future__ import annotations

import argparse
import json
import platform
import time
from pathlib import Path

import cv2
import numpy as np
import soundfile as sf
import torch

from synctalk2d.avatar import FPS, SAMPLES_PER_FRAME, Avatar
from synctalk2d.evaluation.evaluate import evaluate
from synctalk2d.evaluation.metrics import mouth_aperture, mouth_box
from synctalk2d.inference.lipsync import LipSync
from synctalk2d.inference.mouth import face_poses
from synctalk2d.inference.schedule import frame_schedule

STRIP_FRAMES = 30
KEPT = ("mouth_aperture_r", "best_lag", "mouth_sharpness", "jump_rate", "change_p95_over_real", "seam_over_real", "mouth_psnr_db", "mouth_ssim")


def tail_render(lipsync: LipSync) -> tuple[list[np.ndarray], np.ndarray, np.ndarray, float]:
    """The held-out tail's speech rendered as `evaluate` does: (frames, source frame of each,
    tail frame indices, frames per second of the render)."""
    avatar = lipsync.avatar
    first, stop = json.loads((avatar.root / "train.json").read_text())["holdout_frames"]
    tail = np.arange(first, stop)
    wav, _ = sf.read(avatar.audio_path, dtype="float32")
    started = time.perf_counter()
    features = lipsync.audio_features(wav[first * SAMPLES_PER_FRAME : stop * SAMPLES_PER_FRAME])[: len(tail)]
    schedule = frame_schedule(len(tail), first, start=0, loop_back=False)
    frames = list(lipsync.generator.frames(lipsync.chunks(features, schedule)))
    return frames, schedule, tail, len(frames) / (time.perf_counter() - started)


def mouth_tile(frame: np.ndarray, points: np.ndarray, width: int = 96) -> np.ndarray:
    x1, y1, x2, y2 = mouth_box(points, margin=0.6)
    h, w = frame.shape[:2]
    x1, y1, x2, y2 = max(x1, 0), max(y1, 0), min(x2, w), min(y2, h)
    return cv2.resize(np.ascontiguousarray(frame[y1:y2, x1:x2]), (width, round(width * 0.75)), interpolation=cv2.INTER_AREA)


def save_strips(avatar: Avatar, renders: dict[str, tuple], directory: Path) -> dict[str, int]:
    """Strips at the fastest head turn of the frames drawn on and the fastest real syllables;
    returns the first frame (within the tail) of each."""
    landmarks = avatar.landmarks()
    _, schedule, tail, _ = next(iter(renders.values()))
    turning = np.linalg.norm(np.diff(face_poses(landmarks[schedule]), axis=0), axis=1)
    syllables = np.abs(np.diff(mouth_aperture(landmarks[tail])))
    starts = {}
    for what, speed in (("turn", turning), ("syllables", syllables)):
        start = int(np.argmax(np.convolve(speed, np.ones(STRIP_FRAMES), "valid"))) if len(speed) >= STRIP_FRAMES else 0
        frames = range(start, min(start + STRIP_FRAMES, len(tail)))
        rows = [np.concatenate([mouth_tile(rendered[k], landmarks[schedule[k]]) for k in frames], axis=1) for rendered, *_ in renders.values()]
        rows.append(np.concatenate([mouth_tile(avatar.frame(int(tail[k])), landmarks[tail[k]]) for k in frames], axis=1))
        directory.mkdir(parents=True, exist_ok=True)
        cv2.imwrite(str(directory / f"{avatar.root.name}_{what}.png"), cv2.cvtColor(np.concatenate(rows, axis=0), cv2.COLOR_RGB2BGR))
        starts[what] = start
    return starts


def bench(root: Path, renderers: list[str], strips: Path | None) -> dict:
    avatar = Avatar.open(root)
    record = json.loads((avatar.root / "train.json").read_text())
    result: dict = {"frames": int(np.subtract(*record["holdout_frames"][::-1])), "renderers": {}}
    if "compositor" in record.get("stages", {}):
        stage = record["stages"]["compositor"]
        result["compositor_training"] = {k: stage.get(k) for k in ("steps", "seconds", "stopped_by", "learned")} | {
            "width": record.get("width"),
            "val_loss": stage.get("best_val", {}).get("loss"),
            "start_val_loss": stage.get("start_val", {}).get("loss"),
        }
    renders = {}
    for renderer in renderers:
        lipsync = LipSync(root, renderer=renderer)
        renders[renderer] = tail_render(lipsync)
        report = evaluate(root, show_progress=False, renderer=renderer)
        generated, real = report["speech"]["generated"], report["speech"]["real"]
        scores = {k: generated.get(k) for k in KEPT}
        scores["sharpness_over_real"] = generated["mouth_sharpness"] / real["mouth_sharpness"]
        scores["silence_std"] = report["silence"]["generated"]["mouth_aperture_std"]
        scores["render_fps"] = renders[renderer][3]
        result["renderers"][renderer] = scores
    result["real"] = {k: report["speech"]["real"].get(k) for k in ("jump_rate", "change_p95_over_real", "seam_over_real", "mouth_sharpness")}
    if strips:
        result["strip_starts"] = save_strips(avatar, renders, strips)
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("avatars", type=Path, nargs="+", help="avatars trained with --holdout-seconds and --renderer unet")
    parser.add_argument("--renderers", nargs="+", default=["paste", "unet"], choices=["paste", "unet"])
    parser.add_argument("--strips", type=Path, help="save PNG strips (renderers over real) here")
    args = parser.parse_args()
    results = {root.name: bench(root, args.renderers, args.strips) for root in args.avatars}
    averaged = ("mouth_aperture_r", "sharpness_over_real", "jump_rate", "change_p95_over_real", "seam_over_real", "render_fps")
    means = {renderer: {k: float(np.mean([r["renderers"][renderer][k] for r in results.values()])) for k in averaged} for renderer in args.renderers}
    machine = {"cpu": platform.processor() or platform.machine(), "threads": torch.get_num_threads()}
    print(json.dumps({"machine": machine, "fps": FPS, "mean": means, "avatars": results}, indent=2))


if __name__ == "__main__":
    main()
