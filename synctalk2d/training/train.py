"""`synctalk2d train`: run the stages in order, each resumable, within the run's budgets.

With ``--conditioning mouth`` (the default) there is one stage:

    mouth                        ->  checkpoints/mouth/     (speech -> lip shape, adapted from the prior)

With ``--renderer unet`` a second stage follows it:

    compositor                   ->  checkpoints/compositor/ (redraws the picked mouth onto the target)

With ``--conditioning audio`` (the reference design):

    audio-encoder (or features)  ->  features/<type>.npy
    syncnet                      ->  checkpoints/syncnet/   (the frozen sync expert)
    unet                         ->  checkpoints/unet/      (the generator inference uses)

A stage whose ``latest`` checkpoint is marked complete is skipped, so re-running after a
kill picks up where it stopped. ``train.json`` records the run's config, the frame splits
(``holdout_frames`` is what a later evaluation should use) and each stage's result.
"""

from __future__ import annotations

import json
import time
from dataclasses import asdict
from pathlib import Path

import torch.distributed as dist

from synctalk2d.atomic import write_json_atomic
from synctalk2d.audio.windows import FEATURE_TYPES
from synctalk2d.avatar import Avatar
from synctalk2d.errors import UserError
from synctalk2d.models.checkpoint import stage_dir
from synctalk2d.models.unet import WIDTHS
from synctalk2d.progress import console
from synctalk2d.training.config import (
    CONDITIONINGS,
    RENDERERS,
    TIME_SHARES,
    Splits,
    TrainConfig,
    resolve_path,
)
from synctalk2d.training.loop import (
    Runtime,
    StageResult,
    completed_result,
    setup_runtime,
)

MIN_TRAIN_FRAMES = 40  # room for 5-frame groups and negatives >= 5 frames away
# Options that change the data or the features every later stage was trained on.
_FIXED = ("conditioning", "feature_type", "holdout_seconds", "val_fraction")


def build_config(
    avatar: str | Path,
    batch_size: int | None = None,
    epochs: int | None = None,
    max_steps: int | None = None,
    checkpoint_every: int | None = None,
    **options,
) -> TrainConfig:
    """A `TrainConfig` from command-line style options: paths made absolute, the
    per-stage options (batch size, epochs, steps, checkpoint interval) applied to all
    stages, and an unset conditioning taken from the avatar's earlier run, if any."""
    for key in ("audio_encoder_weights", "hubert_model", "wenet_model", "vgg_weights", "mouth_prior"):
        options[key] = resolve_path(options.get(key))
    record = Path(avatar) / "train.json"
    earlier = json.loads(record.read_text()) if record.is_file() else {}
    if options.get("conditioning") is None:  # resuming: what the avatar was trained with, else the default
        options.pop("conditioning", None)
        if earlier.get("stages"):  # a run that failed before its first stage trained nothing to resume
            options["conditioning"] = earlier.get("conditioning", "audio")
    if options.get("renderer") is None:  # likewise
        options.pop("renderer", None)
        if earlier.get("stages") and earlier.get("renderer"):
            options["renderer"] = earlier["renderer"]
    config = TrainConfig(avatar=str(Path(avatar).resolve()), **options)
    config.override(batch_size=batch_size, epochs=epochs, max_steps=max_steps, checkpoint_every=checkpoint_every)
    return config


def train(config: TrainConfig, show_progress: bool = True) -> list[StageResult]:
    """Train ``config.avatar``; returns one result per stage that ran."""
    avatar = Avatar.open(config.avatar)
    _check(config)
    splits = Splits.of(avatar.info.num_frames, config.holdout_seconds, config.val_fraction)
    if len(splits.train) < MIN_TRAIN_FRAMES:
        raise UserError(
            f"{avatar.root} has {len(splits.train)} training frames after the holdout and validation split; "
            f"at least {MIN_TRAIN_FRAMES} are needed (use a longer video or a smaller --holdout-seconds)"
        )
    record = _record(avatar.root, config, splits)
    runtime = setup_runtime(config.device, config.num_workers, config.seed)
    if runtime.is_main:
        write_json_atomic(avatar.root / "train.json", record)  # the holdout is on record from the start
    names = [config.stage] if config.stage else config.stage_names()
    started = time.monotonic()
    results = []
    try:
        for i, name in enumerate(names):
            if done := _already_done(name, avatar.root, config):
                if runtime.is_main:
                    console.print(
                        f"{name}: already trained ({done.step} steps), skipping; delete {stage_dir(avatar.root, name)} to train it again", soft_wrap=True
                    )
                results.append(done)
                continue
            seconds = None
            if config.minutes is not None:
                left = config.minutes * 60 - (time.monotonic() - started)
                shares = sum(TIME_SHARES[n] for n in names[i:]) or 1.0
                seconds = max(0.0, left * TIME_SHARES[name] / shares)
            result = _run_stage(name, avatar, config, splits, runtime, seconds, show_progress)
            results.append(result)
            record["stages"][name] = asdict(result)
            if runtime.is_main:
                write_json_atomic(avatar.root / "train.json", record)
                console.print(result.summary(), soft_wrap=True)
    finally:
        if runtime.distributed and dist.is_initialized():
            dist.destroy_process_group()
    return results


def _run_stage(name: str, avatar: Avatar, config: TrainConfig, splits: Splits, runtime: Runtime, seconds: float | None, show_progress: bool) -> StageResult:
    if name == "mouth":
        from synctalk2d.training.mouth import run
    elif name == "audio-encoder":
        from synctalk2d.training.audio_encoder import run
    elif name == "features":
        from synctalk2d.training.audio_encoder import run_features as run
    elif name == "syncnet":
        from synctalk2d.training.syncnet import run
    elif name == "compositor":
        from synctalk2d.training.compositor import run
    else:
        from synctalk2d.training.unet import run
    return run(avatar, config, splits, runtime, seconds, show_progress)


def _already_done(name: str, root: Path, config: TrainConfig) -> StageResult | None:
    """The stored result of a finished stage whose outputs exist. Pretrained encoder
    weights are always (re)loaded: that is cheap, and the user may be swapping them."""
    avatar = Avatar(root)
    if name == "features":
        return StageResult(name, 0, 0, 0.0, "pretrained") if avatar.features_path(config.feature_type).is_file() else None
    if name == "audio-encoder" and (config.audio_encoder_weights or not avatar.features_path("ave").is_file()):
        return None
    return completed_result(root, name)


def _check(config: TrainConfig) -> None:
    if config.conditioning not in CONDITIONINGS:
        raise UserError(f"--conditioning must be one of {', '.join(CONDITIONINGS)}, not {config.conditioning!r}")
    if config.renderer not in RENDERERS:
        raise UserError(f"--renderer must be one of {', '.join(RENDERERS)}, not {config.renderer!r}")
    if config.renderer == "unet" and config.conditioning != "mouth":
        raise UserError("--renderer unet draws the mouth the mouth model chose: it needs --conditioning mouth")
    if config.feature_type not in FEATURE_TYPES:
        raise UserError(f"--feature-type must be one of {', '.join(FEATURE_TYPES)}, not {config.feature_type!r}")
    if config.width not in WIDTHS:
        raise UserError(f"--width must be one of {', '.join(WIDTHS)}, not {config.width!r}")
    if config.stage and config.stage not in config.stage_names():
        raise UserError(f"--stage must be one of {', '.join(config.stage_names())} for --feature-type {config.feature_type}, not {config.stage!r}")
    if config.minutes is not None and config.minutes <= 0:
        raise UserError("--minutes must be positive")
    if min(config.stage_config(n).batch_size for n in ("audio-encoder", "syncnet", "unet", "compositor")) < 2:
        raise UserError("--batch-size must be at least 2: BatchNorm and the off-sync pairs of a batch need two samples")
    if config.holdout_seconds < 0:
        raise UserError("--holdout-seconds cannot be negative")
    if config.feature_type == "wenet" and not config.wenet_model:
        raise UserError("--feature-type wenet needs the WeNet encoder: pass --wenet-model PATH.onnx")
    for option, path in (
        ("--audio-encoder-weights", config.audio_encoder_weights),
        ("--hubert-model", config.hubert_model),
        ("--wenet-model", config.wenet_model),
        ("--vgg-weights", config.vgg_weights),
        ("--mouth-prior", config.mouth_prior),
    ):
        if path and not Path(path).exists():
            raise UserError(f"{option} {path} does not exist")


def _record(root: Path, config: TrainConfig, splits: Splits) -> dict:
    """``train.json`` for this run: the config's fields, the frame splits and the results of
    earlier stages. Refuses options that would silently change what already-trained stages
    were trained on."""
    path = root / "train.json"
    previous = json.loads(path.read_text()) if path.is_file() else {}
    if previous and (root / "checkpoints").is_dir():
        previous.setdefault("conditioning", "audio")  # avatars trained before there was a choice
        changed = [k for k in _FIXED if previous.get(k) != getattr(config, k)]
        if changed:
            was = ", ".join(f"{k}={previous.get(k)!r}" for k in changed)
            raise UserError(f"{root} was trained with {was}; pass the same options, or delete {root / 'checkpoints'} to start over")
    return {
        **asdict(config),
        "num_frames": splits.holdout.stop,
        "train_frames": [splits.train.start, splits.train.stop],
        "val_frames": [splits.val.start, splits.val.stop],
        "holdout_frames": [splits.holdout.start, splits.holdout.stop],
        "stages": previous.get("stages", {}),
    }
