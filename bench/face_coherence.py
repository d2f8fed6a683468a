"""One face or a pasted patch: the lower face of renders on moving heads, as JSON on stdout.

    python bench/face_coherence.py [--workdir DIR] [--clips NAME...] [--pastes VARIANT...]
                                   [--strips DIR] [--figures docs/figures/face_coherence.json]

For every clip whose head moves (the pool's liveportrait, sadtalker and pcavs pose clips,
speaker_20s and both ``hard_faces/`` clips; ``--clips`` picks some), the avatar is made as a
user makes it (``preprocess``, then the default ``train`` with the last 30 % held out; the
hard faces have no sound, so they are made with the bundled speech as their audio) and
`evaluate` renders the held-out tail's audio onto the first 70 %'s frames, once per way of
drawing the mouth (`VARIANTS`: the old paste of mouth and chin as it shipped, the warp
with the lips as recorded, the warp with the lips bent to the wanted shape, with the mouth
resampled bilinearly or bicubically). Per clip and paste it reports what `evaluate`
measures of the lower face (`evaluation.lower_face`: jumps of the aligned cheeks and chin
against the real tail's 99th percentile, their 95th percentile against the real one, the
foreign area against the frame drawn on) beside the lip jumps, the seam, the mouth's
sharpness against the real tail's, the opening r at lag 0, how far the mouth opens
(movement and 95th-percentile opening against the real tail's), and the render speed
(frames/s of the held-out render, the paste alone, in this process). ``--strips DIR``
saves, per clip, 30 consecutive whole lower faces at its fastest head turn: each paste's
render above the frame it is drawn on.

A clip is within the lower-face targets when its render's lower-face jumps are at most twice
the real tail's rate (at least 1 %) and its 95th percentile at most 1.2 times the real
tail's, or 1.2 times the unchanged frames' where the frames drawn on already move more
than the real tail does (a paste cannot be stiller than the head it is drawn on).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import time
from datetime import date
from pathlib import Path

import cv2
import numpy as np
import soundfile as sf

from synctalk2d.avatar import SAMPLES_PER_FRAME, Avatar
from synctalk2d.evaluation.evaluate import evaluate
from synctalk2d.inference import mouth as mouth_module
from synctalk2d.inference.lipsync import LipSync
from synctalk2d.inference.mouth import face_poses
from synctalk2d.inference.schedule import frame_schedule
from synctalk2d.preprocess import preprocess
from synctalk2d.training.train import build_config, train

SHARED = Path(__file__).resolve().parents[1].parent / "shared"
POOL, FIXTURES = SHARED / "data" / "mouth-pool", SHARED / "fixtures"
MOVING = [
    *(f"liveportrait_d{n}" for n in (11, 12, 20)),
    *(p.stem for p in sorted(POOL.glob("sadtalker_*.mp4"))),
    *(p.stem for p in sorted(POOL.glob("pcavs_pose_source_*.mp4"))),
    "speaker_20s",
    "long_hair_turning_13s",
    "hair_at_cheeks_10s",
]
HOLDOUT_SHARE = 0.3
# "+bend": the drawn lips bent towards the wanted shape (`inference.mouth.LIP_REACH`);
# "+bilinear": the mouth resampled bilinearly (`inference.mouth.MOUTH_RESAMPLING`), as every
# drawing did before bicubic; "region+bilinear" is the drawing shipped before the warp
VARIANTS = ("region+bilinear", "warp", "warp+bend+bilinear", "warp+bend")
BEND_REACH = mouth_module.LIP_REACH or 1.0
RESAMPLING = mouth_module.MOUTH_RESAMPLING
STRIP_FRAMES = 30


def source(name: str) -> tuple[Path, Path | None]:
    """The clip's video, and the audio to make its avatar with (None: its own)."""
    for folder in (POOL, FIXTURES, FIXTURES / "hard_faces"):
        if (folder / f"{name}.mp4").is_file():
            return folder / f"{name}.mp4", (FIXTURES / "speech_44k.wav" if folder.name == "hard_faces" else None)
    raise SystemExit(f"no clip named {name}")


def avatar_for(name: str, workdir: Path) -> Path:
    root = workdir / name
    if not (root / "train.json").is_file():
        video, audio = source(name)
        preprocess(video, root, audio=audio, show_progress=False)
        seconds = round(HOLDOUT_SHARE * len(Avatar.open(root)) / 25, 1)
        train(build_config(root, holdout_seconds=seconds), show_progress=False)
    return root


def fastest_turn(avatar: Avatar, frames: int) -> int:
    """The first of ``frames`` consecutive frames of the avatar's used part where its head
    pose changes most."""
    poses = face_poses(avatar.landmarks())
    change = np.r_[0.0, np.linalg.norm(np.diff(poses, axis=0), axis=1)]
    windows = np.convolve(change, np.ones(frames), mode="valid")
    return int(np.argmax(windows[: max(1, len(windows))]))


def lower_face_strip(avatar: Avatar, renders: dict[str, list[np.ndarray]], schedule: np.ndarray, start: int, path: Path) -> None:
    """Rows of whole lower faces (cheek to cheek, nose to below the chin): one per paste, then
    the frames they are drawn on."""
    points = avatar.landmarks()
    rows = []
    for frames in [*renders.values(), [avatar.frame(i) for i in schedule]]:
        tiles = []
        for k in range(start, min(start + STRIP_FRAMES, len(schedule))):
            p = points[schedule[k]]
            height = p[8, 1] - p[29, 1]
            x1, x2 = int(p[1, 0] - 0.05 * height), int(p[15, 0] + 0.05 * height)
            y1, y2 = int(p[29, 1]), int(p[8, 1] + 0.25 * height)
            crop = frames[k][max(y1, 0) : y2, max(x1, 0) : x2]
            tiles.append(cv2.resize(crop, (128, 128), interpolation=cv2.INTER_AREA))
        rows.append(np.concatenate(tiles, axis=1))
    cv2.imwrite(str(path), cv2.cvtColor(np.concatenate(rows, axis=0), cv2.COLOR_RGB2BGR))


def use(variant: str) -> None:
    """Draw mouths as ``variant`` (one of `VARIANTS`) says."""
    paste, *options = variant.split("+")
    mouth_module.PASTE = paste
    mouth_module.LIP_REACH = BEND_REACH if "bend" in options else 0.0
    mouth_module.MOUTH_RESAMPLING = cv2.INTER_LINEAR if "bilinear" in options else RESAMPLING


def shipped_variant() -> str:
    bend = "+bend" if mouth_module.PASTE == "warp" and mouth_module.LIP_REACH else ""
    return mouth_module.PASTE + bend + ("+bilinear" if mouth_module.MOUTH_RESAMPLING == cv2.INTER_LINEAR else "")


def render_speed(root: Path, pastes: list[str]) -> tuple[dict[str, float], dict[str, list[np.ndarray]], np.ndarray]:
    """Frames/s of each paste rendering the held-out tail's audio (what evaluate renders),
    and the frames."""
    lipsync = LipSync(root)
    tail = np.arange(*json.loads((root / "train.json").read_text())["holdout_frames"])
    wav, _ = sf.read(lipsync.avatar.audio_path, dtype="float32")
    wav = wav[tail[0] * SAMPLES_PER_FRAME : (tail[-1] + 1) * SAMPLES_PER_FRAME]
    features = lipsync.audio_features(wav)[: len(tail)]
    schedule = frame_schedule(len(tail), int(tail[0]), start=0, loop_back=False)
    speeds, renders = {}, {}
    for paste in pastes:
        use(paste)
        started = time.perf_counter()
        renders[paste] = list(lipsync.generator.frames(lipsync.chunks(features, schedule)))
        speeds[paste] = round(len(schedule) / (time.perf_counter() - started), 1)
    return speeds, renders, schedule


KEYS = ("lower_face_jump_rate", "lower_face_p95_over_real", "foreign_area", "foreign_area_p95", "jump_rate", "seam_over_real", "mouth_aperture_r")


def score(name: str, workdir: Path, pastes: list[str], strips: Path | None) -> dict:
    root = avatar_for(name, workdir)
    result: dict = {}
    for paste in pastes:
        use(paste)
        report = evaluate(root, show_progress=False)
        speech = report["speech"]
        row = {key: round(speech["generated"][key], 4) for key in KEYS if key in speech["generated"]}
        row["sharpness_over_real"] = round(speech["generated"]["mouth_sharpness"] / speech["real"]["mouth_sharpness"], 3)
        for key in ("mouth_movement", "mouth_opening_p95"):  # how far the render opens the lips against the real tail
            row[f"{key}_over_real"] = round(speech["generated"][key] / speech["real"][key], 3)
        result[paste] = row
    unchanged = report["speech"]["unchanged"]
    result["unchanged"] = {key: round(unchanged[key], 4) for key in (*KEYS[:2], "jump_rate", "seam_over_real")}
    result["unchanged"]["sharpness_over_real"] = round(
        unchanged["mouth_sharpness"] / report["speech"]["real"]["mouth_sharpness"], 3
    )  # the recording's own mouths
    result["real"] = {key: round(report["speech"]["real"][key], 4) for key in KEYS[:2]}
    speeds, renders, schedule = render_speed(root, pastes)
    for paste in pastes:
        result[paste]["frames_per_second"] = speeds[paste]
    if strips:
        strips.mkdir(parents=True, exist_ok=True)
        avatar = Avatar.open(root)
        start = fastest_turn(avatar, STRIP_FRAMES)
        start = int(np.clip(np.searchsorted(schedule, start) if start < len(schedule) else 0, 0, max(0, len(schedule) - STRIP_FRAMES)))
        lower_face_strip(avatar, renders, schedule, start, strips / f"{name}.png")
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--workdir", type=Path, default=Path("bench-face-coherence"))
    parser.add_argument("--clips", nargs="*", default=MOVING)
    parser.add_argument("--pastes", nargs="*", default=list(VARIANTS), choices=VARIANTS)
    parser.add_argument("--strips", type=Path)
    parser.add_argument("--figures", type=Path, help="also write the JSON here (docs/figures/face_coherence.json)")
    args = parser.parse_args()
    shipped = shipped_variant()
    per_clip = {}
    for name in args.clips:
        per_clip[name] = score(name, args.workdir, args.pastes, args.strips)
        print(json.dumps({name: per_clip[name]}), file=sys.stderr, flush=True)
    summary = []
    for paste in args.pastes:
        rows = {name: clip[paste] for name, clip in per_clip.items()}
        real = {name: clip["real"] for name, clip in per_clip.items()}
        unchanged = {name: clip["unchanged"] for name, clip in per_clip.items()}
        within = [
            name
            for name, row in rows.items()
            if row["lower_face_jump_rate"] <= 2 * max(real[name]["lower_face_jump_rate"], 0.01)
            and row["lower_face_p95_over_real"] <= 1.2 * max(1.0, unchanged[name]["lower_face_p95_over_real"])
        ]
        summary.append(
            {"paste": paste + (" (shipped)" if paste == shipped else "")}
            | {
                f"{key} (mean)": float(np.nanmean([row[key] for row in rows.values()]))
                for key in (*KEYS, "sharpness_over_real", "mouth_movement_over_real", "mouth_opening_p95_over_real", "frames_per_second")
            }
            | {
                "lower_face_p95_over_unchanged (mean)": float(
                    np.nanmean([rows[n]["lower_face_p95_over_real"] / unchanged[n]["lower_face_p95_over_real"] for n in rows])
                ),
                "clips within the lower-face targets": f"{len(within)} of {len(rows)}",
                "clips outside": ", ".join(sorted(set(rows) - set(within))) or "none",
            }
        )
    result = {
        "date": date.today().isoformat(),
        "machine": f"{platform.processor() or platform.machine()}, {os.cpu_count()} CPUs",
        "command": "python bench/face_coherence.py " + " ".join(sys.argv[1:]),
        "summary": summary,
        "clips": [{"clip": name, "video": video} | values for name, clip in per_clip.items() for video, values in clip.items()],
    }
    text = json.dumps(result, indent=2)
    print(text)
    if args.figures:
        args.figures.write_text(text + "\n")


if __name__ == "__main__":
    main()
