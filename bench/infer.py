"""End-to-end `synctalk2d infer` speed, as JSON on stdout.

    python bench/infer.py [--video FILE] [--audio FILE] [--widths full mobile] [--mouth-only]
                          [--pastes VARIANT...] [--repeats N]
                          [--backends auto onnx] [--avatar DIR]

Preprocesses VIDEO (default: the bundled sample clip), trains each U-Net width for one
step (speed does not depend on the weights), then for each width and backend loads
`LipSync` and renders AUDIO (default: the bundled 12 s speech) exactly as `infer` does:
audio decoding and features, source frames, the U-Net, compositing and H.264/AAC
encoding. Per run it reports:

* ``unet_fps``: the U-Net alone (`UNetRunner` on the avatar's own crops, uint8 in and
  out, all cores), the ceiling the model sets;
* ``pipeline_fps``: everything but the U-Net (the generator with a copy-the-crop model),
  the ceiling the rest sets;
* ``end_to_end_fps``: frames written per second of `render` wall time, and
  ``realtime_factor`` (>= 1 is faster than real time at 25 fps); ``load_seconds``
  (model load, compile and warm-up: paid once per process, not per clip).

With ``--avatar DIR`` a trained avatar is benchmarked as it is (its own width), e.g. the
1080x1920 speaker_20s.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import tempfile
import time
from pathlib import Path

import numpy as np
from face_coherence import VARIANTS, shipped_variant, use

from synctalk2d.avatar import FPS, Avatar
from synctalk2d.demo import SAMPLE_SPEECH, SAMPLE_VIDEO, sample_path
from synctalk2d.face.crop import model_inputs
from synctalk2d.inference.generator import FrameGenerator
from synctalk2d.inference.lipsync import LipSync
from synctalk2d.inference.offline import render
from synctalk2d.inference.runtime import tune_process
from synctalk2d.inference.schedule import frame_schedule
from synctalk2d.media.audio import load_audio, load_audio_track
from synctalk2d.media.writer import VideoWriter
from synctalk2d.preprocess import preprocess
from synctalk2d.training.train import build_config, train

UNET_FRAMES = 32  # frames per U-Net-only timing


def trained_avatars(video: Path, widths: list[str], workdir: Path) -> dict[str, Path]:
    """One avatar per width, each trained one step per stage (the weights don't matter here)."""
    base = workdir / "base"
    preprocess(video, base, show_progress=False)
    roots = {}
    for width in widths:
        root = workdir / width
        shutil.copytree(base, root)
        train(build_config(root, conditioning="audio", width=width, max_steps=1, batch_size=2), show_progress=False)
        roots[width] = root
    return roots


def unet_fps(lipsync: LipSync) -> float:
    """Frames/s of the runner alone on the avatar's own crops and audio features, in
    `LipSync`'s chunk size."""
    frames = np.arange(UNET_FRAMES) % lipsync.avatar.info.num_frames
    inputs = model_inputs(lipsync.avatar.crops()[frames])
    windows = lipsync.audio_windows(lipsync.avatar.features(lipsync.feature_type), frames)
    started = time.perf_counter()
    for start in range(0, UNET_FRAMES, lipsync.batch_size):
        lipsync.runner(inputs[start : start + lipsync.batch_size], windows[start : start + lipsync.batch_size])
    return UNET_FRAMES / (time.perf_counter() - started)


def pipeline_fps(lipsync: LipSync, audio: Path, output: Path) -> float:
    """`render` with the U-Net replaced by a copy of each frame's own crop: reading frames,
    audio windows, compositing and encoding, nothing else."""
    wav, _ = load_audio(audio)
    track, rate = load_audio_track(audio)
    features = lipsync.audio_features(wav)
    info = lipsync.avatar.info
    schedule = frame_schedule(len(features), info.num_frames, 0, True)
    generator = FrameGenerator(lipsync.avatar, lambda images, windows: np.ascontiguousarray(images[..., :3]))
    started = time.perf_counter()
    with VideoWriter(output, info.width, info.height, fps=FPS, audio=track, sample_rate=rate) as writer:
        for frame in generator.frames(lipsync.chunks(features, schedule)):
            writer.write(frame)
    return len(schedule) / (time.perf_counter() - started)


def bench(root: Path, backend: str, audio: Path, workdir: Path) -> dict:
    started = time.perf_counter()
    lipsync = LipSync(root, backend=backend)
    load_seconds = time.perf_counter() - started
    summary = render(lipsync, audio, workdir / "out.mp4", show_progress=False)
    info = lipsync.avatar.info
    return {
        "conditioning": "audio",
        "width": lipsync.unet.config.width,
        "backend": lipsync.runner.backend,
        "precision": lipsync.runner.precision,
        "frame_size": [info.width, info.height],
        "frames": summary.frames,
        "load_seconds": round(load_seconds, 2),
        "unet_fps": round(unet_fps(lipsync), 2),
        "pipeline_fps": round(pipeline_fps(lipsync, audio, workdir / "pipeline.mp4"), 2),
        "end_to_end_fps": round(summary.fps, 2),
        "realtime_factor": round(summary.fps / FPS, 3),
    }


def bench_mouth(base: Path, audio: Path, workdir: Path, variants: list[str], repeats: int) -> list[dict]:
    """The default mouth conditioning end to end: shapes from speech, reference picks,
    pastes; once per way of drawing the mouth (bench/face_coherence.py's variants), the
    renders interleaved ``repeats`` times so that a busy moment of the machine falls on
    all of them alike, the median kept."""
    root = workdir / "mouth"
    shutil.copytree(base, root)
    train(build_config(root, conditioning="mouth"), show_progress=False)
    started = time.perf_counter()
    lipsync = LipSync(root)
    load_seconds = time.perf_counter() - started
    shipped = shipped_variant()
    speeds: dict[str, list[float]] = {variant: [] for variant in variants}
    for _ in range(repeats):
        for variant in variants:
            use(variant)
            summary = render(lipsync, audio, workdir / "mouth.mp4", show_progress=False)
            speeds[variant].append(summary.fps)
    use(shipped)
    info = lipsync.avatar.info
    return [
        {
            "conditioning": "mouth",
            "paste": variant + (" (shipped)" if variant == shipped else ""),
            "frame_size": [info.width, info.height],
            "frames": summary.frames,
            "load_seconds": round(load_seconds, 2),
            "end_to_end_fps": round(float(np.median(fps)), 2),
            "realtime_factor": round(float(np.median(fps)) / FPS, 3),
        }
        for variant, fps in speeds.items()
    ]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--video", type=Path, default=sample_path(SAMPLE_VIDEO))
    parser.add_argument("--audio", type=Path, default=sample_path(SAMPLE_SPEECH))
    parser.add_argument("--widths", nargs="+", default=["full", "mobile"], choices=["full", "mobile"])
    parser.add_argument("--backends", nargs="+", default=["auto", "onnx"], choices=["auto", "torch", "onnx"])
    parser.add_argument("--avatar", type=Path, help="benchmark this trained avatar instead of training VIDEO")
    parser.add_argument(
        "--pastes", nargs="+", default=[shipped_variant()], choices=VARIANTS, help="ways of drawing the mouth to time (default: the shipped one)"
    )
    parser.add_argument("--repeats", type=int, default=1, help="renders of each paste, interleaved (the median is kept)")
    parser.add_argument("--mouth-only", action="store_true", help="only the default mouth conditioning, not the U-Net's")
    args = parser.parse_args()
    tune_process()  # as the CLI does: measure what users get
    report = {"benchmark": "infer", "audio": args.audio.name, "cores": len(os.sched_getaffinity(0)),
              "machine": platform.processor() or platform.machine(), "runs": []}  # fmt: skip
    with tempfile.TemporaryDirectory() as tmp:
        workdir = Path(tmp)
        if args.avatar:
            report["video"] = Avatar.open(args.avatar).info.source
            roots = {"avatar": args.avatar}
        else:
            report["video"] = args.video.name
            roots = {} if args.mouth_only else trained_avatars(args.video, args.widths, workdir)
            if args.mouth_only:
                preprocess(args.video, workdir / "base", show_progress=False)
        for root in roots.values():
            for backend in args.backends:
                report["runs"].append(bench(root, backend, args.audio, workdir))
        if not args.avatar:
            report["runs"].extend(bench_mouth(workdir / "base", args.audio, workdir, args.pastes, args.repeats))
    print(json.dumps(report, indent=2))


if __name__ == "__main__":
    main()
