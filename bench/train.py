"""Training throughput of every stage, as JSON on stdout.

    python bench/train.py [VIDEO] [--avatar DIR] [--steps N] [--device cpu cuda ...]

Preprocesses VIDEO (default: the 5 s talk_b fixture) once, or copies the preprocessed
avatar DIR (for a machine without the landmark model), then per device times the
training step of each stage (audio-encoder, syncnet, unet at full and mobile width) at
its default batch size, fed by its real DataLoader, after warm-up steps. For each it also
times the DataLoader alone: ``loader_samples_per_second`` well above
``samples_per_second`` means data loading is not the bottleneck.
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

import torch

from synctalk2d.avatar import Avatar
from synctalk2d.preprocess import preprocess
from synctalk2d.training.config import Splits
from synctalk2d.training.data import KeyedBatchSampler, make_loader, to_device
from synctalk2d.training.loop import Trainer, setup_runtime
from synctalk2d.training.train import build_config, train

DEFAULT = Path(__file__).resolve().parents[2] / "shared" / "fixtures" / "talk_b.mp4"
WARMUP = 2


def stages(avatar: Avatar, config, runtime):
    from synctalk2d.training.audio_encoder import AudioEncoderStage
    from synctalk2d.training.syncnet import SyncNetStage
    from synctalk2d.training.unet import UNetStage

    splits = Splits.of(avatar.info.num_frames, 0, config.val_fraction)
    yield "audio-encoder", AudioEncoderStage(avatar, config, splits)
    yield "syncnet", SyncNetStage(avatar, config, splits)
    for width in ("full", "mobile"):
        config.width = width
        yield f"unet-{width}", UNetStage(avatar, config, splits, runtime)


def measure(stage, avatar: Avatar, runtime, steps: int) -> dict:
    batch_size = stage.config.batch_size

    def loader():
        return make_loader(stage.train_set, KeyedBatchSampler(len(stage.train_set), batch_size, 0, 0, WARMUP + steps), runtime.num_workers)

    trainer = Trainer(stage, avatar, runtime)
    for i, batch in enumerate(loader()):
        if i == WARMUP:
            if runtime.device.type == "cuda":
                torch.cuda.synchronize()
            started = time.perf_counter()
        trainer.train_step(trainer.model, to_device(batch, runtime.device))
    if runtime.device.type == "cuda":
        torch.cuda.synchronize()
    train_seconds = time.perf_counter() - started
    started = time.perf_counter()
    for i, _batch in enumerate(loader()):
        if i == WARMUP:
            started = time.perf_counter()
    load_seconds = time.perf_counter() - started
    return {
        "batch_size": batch_size,
        "samples_per_second": round(steps * batch_size / train_seconds, 2),
        "seconds_per_step": round(train_seconds / steps, 4),
        "loader_samples_per_second": round(steps * batch_size / load_seconds, 2),
        "parameters": sum(p.numel() for p in stage.model.parameters()),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("video", nargs="?", type=Path, default=DEFAULT)
    parser.add_argument("--avatar", type=Path, help="a preprocessed avatar to copy instead of preprocessing VIDEO")
    parser.add_argument("--steps", type=int, default=5)
    parser.add_argument("--device", nargs="+", default=["cpu"] + (["cuda"] if torch.cuda.is_available() else []))
    args = parser.parse_args()
    video = Avatar.open(args.avatar).info.source if args.avatar else args.video.name
    report = {"benchmark": "train", "video": video, "steps": args.steps, "cpu_count": os.cpu_count(),
              "torch_threads": torch.get_num_threads(), "machine": platform.processor() or platform.machine(), "devices": {}}  # fmt: skip
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp) / "avatar"
        if args.avatar:
            shutil.copytree(args.avatar, root, ignore=shutil.ignore_patterns("checkpoints", "*.onnx"))
        else:
            preprocess(args.video, root, show_progress=False)
        avatar = Avatar.open(root)
        # The unet stage needs the AVE features and a SyncNet: one step of each stage.
        train(build_config(root, conditioning="audio", width="mobile", max_steps=1, device="cpu"), show_progress=False)
        for device in args.device:
            config = build_config(root, conditioning="audio", device=device)
            config.unet.min_sync_accuracy = 0.0  # time the full objective: a one-step SyncNet is at chance
            runtime = setup_runtime(device)
            results = {name: measure(stage, avatar, runtime, args.steps) for name, stage in stages(avatar, config, runtime)}
            report["devices"][device] = {"name": torch.cuda.get_device_name() if device == "cuda" else "cpu",
                                         "amp": str(runtime.amp_dtype), "num_workers": runtime.num_workers, "stages": results}  # fmt: skip
    print(json.dumps(report, indent=2))


if __name__ == "__main__":
    main()
