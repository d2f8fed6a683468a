"""Landmark models side by side (MediaPipe face mesh, dlib), as JSON on stdout.

    python bench/landmarks.py [--workdir DIR] [--models mediapipe dlib]

On every clip of ``../shared/data/mouth-pool`` and ``../shared/fixtures`` (decoded at 25 fps
as preprocess does), each model tracks the face frame by frame; reported per model:

- ``frames_per_second``: detection + landmarks alone (decoding excluded), on the 1080x1920
  fixture (speaker_20s) and on the pool's 224 px clips;
- ``detected``: share of frames with a face, over the pool and the fixtures, and the worst clip;
- ``lip_jitter``: on each clip's stillest second (the 25 frames whose smoothed mouth opening
  moves least), the RMS of the raw lip points (48-67) around their Savitzky-Golay smoothed
  track, in % of the face width (contour point 1 to 15): detector noise, not motion;
- ``opening_r_with_dlib``: Pearson r of the raw inner-lip opening with dlib's on the same
  frames (mean over clips).

The raw tracks go to ``DIR/<model>/<clip>.npz`` and are reused by a later run.
"""

from __future__ import annotations

import argparse
import json
import platform
import time
from pathlib import Path

import numpy as np

from synctalk2d.face.landmarks import LANDMARK_MODELS, landmark_detector, smooth
from synctalk2d.media.video import iter_frames

SHARED = Path(__file__).resolve().parents[1].parent / "shared"
POOL = sorted((SHARED / "data" / "mouth-pool").glob("*.mp4"))
FIXTURES = sorted(p for p in (SHARED / "fixtures").glob("*.mp4"))
LARGE = "speaker_20s"  # 1080x1920
STILL_FRAMES = 25


def track(video: Path, model: str, cache: Path) -> dict:
    """Raw per-frame points (NaN where no face) and the seconds spent in the model."""
    if cache.is_file():
        data = np.load(cache)
        return {"points": data["points"], "seconds": float(data["seconds"]), "width": int(data["width"])}
    detector = landmark_detector(model)
    points, seconds, width = [], 0.0, 0
    for image in iter_frames(video, 25, "bgr24"):
        width = image.shape[1]
        started = time.perf_counter()
        found = detector(image)
        seconds += time.perf_counter() - started
        points.append(found if found is not None else np.full((68, 2), np.nan, np.float32))
    cache.parent.mkdir(parents=True, exist_ok=True)
    np.savez(cache, points=np.stack(points), seconds=seconds, width=width)
    return {"points": np.stack(points), "seconds": seconds, "width": width}


def opening(points: np.ndarray) -> np.ndarray:
    """Inner-lip opening (61-67, 62-66, 63-65) over the face width."""
    gaps = np.mean([np.linalg.norm(points[:, a] - points[:, b], axis=-1) for a, b in ((61, 67), (62, 66), (63, 65))], axis=0)
    return gaps / face_width(points)


def face_width(points: np.ndarray) -> np.ndarray:
    return np.linalg.norm(points[:, 15] - points[:, 1], axis=-1)


def lip_jitter(points: np.ndarray) -> float | None:
    """RMS of the raw lip points about their smoothed track on the stillest second, in % of the face width."""
    if np.isnan(points).any() or len(points) < 2 * STILL_FRAMES:
        return None
    motion = np.abs(np.diff(smooth(opening(points)[:, None], 9)[:, 0]))
    start = int(np.argmin(np.convolve(motion, np.ones(STILL_FRAMES), "valid")))
    still = points[start : start + STILL_FRAMES, 48:68]
    residual = still - smooth(points[:, 48:68], 5)[start : start + STILL_FRAMES]
    return float(100 * np.sqrt((residual**2).sum(-1).mean()) / face_width(points[start : start + STILL_FRAMES]).mean())


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--workdir", type=Path, default=Path("bench-landmarks"))
    parser.add_argument("--models", nargs="+", default=list(LANDMARK_MODELS), choices=list(LANDMARK_MODELS))
    args = parser.parse_args()
    tracks = {m: {v.stem: track(v, m, args.workdir / m / f"{v.stem}.npz") for v in POOL + FIXTURES} for m in args.models}
    pool, fixtures = {v.stem for v in POOL}, {v.stem for v in FIXTURES}
    result = {"machine": platform.processor() or platform.machine(), "clips": {"pool": len(pool), "fixtures": len(fixtures)}, "models": {}}
    for model, by_clip in tracks.items():
        found = {name: ~np.isnan(t["points"]).any(axis=(1, 2)) for name, t in by_clip.items()}
        small = [t for name, t in by_clip.items() if name in pool and t["width"] <= 224]
        jitter = {name: lip_jitter(t["points"]) for name, t in by_clip.items()}
        jitter = {k: v for k, v in jitter.items() if v is not None}
        entry = {
            "name": LANDMARK_MODELS[model],
            "frames_per_second": {
                "1080x1920": len(by_clip[LARGE]["points"]) / by_clip[LARGE]["seconds"],
                "pool_224px": sum(len(t["points"]) for t in small) / sum(t["seconds"] for t in small),
            },
            "detected": {
                "pool": float(np.mean(np.concatenate([found[n] for n in pool]))),
                "fixtures": float(np.mean(np.concatenate([found[n] for n in fixtures]))),
                "worst_clip": min(((n, float(f.mean())) for n, f in found.items()), key=lambda x: x[1]),
                "clips_below_99_percent": sorted(n for n, f in found.items() if f.mean() < 0.99),
            },
            "lip_jitter_percent_face_width": {"mean": float(np.mean(list(jitter.values()))), "median": float(np.median(list(jitter.values())))},
        }
        if "dlib" in tracks and model != "dlib":
            rs = {}
            for name, t in by_clip.items():
                both = found[name] & ~np.isnan(tracks["dlib"][name]["points"]).any(axis=(1, 2))
                if both.sum() > STILL_FRAMES:
                    rs[name] = float(np.corrcoef(opening(t["points"][both]), opening(tracks["dlib"][name]["points"][both]))[0, 1])
            entry["opening_r_with_dlib"] = {"mean": float(np.mean(list(rs.values()))), "median": float(np.median(list(rs.values()))), "per_clip": rs}
        entry["lip_jitter_per_clip"] = jitter
        result["models"][model] = entry
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
