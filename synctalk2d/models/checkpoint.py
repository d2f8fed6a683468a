"""Checkpoints: model weights + the config that rebuilds the model, in one atomic file.

``stem.safetensors`` holds the model's tensors under their ``state_dict`` names, the
optimizer's tensors (when given) under ``optimizer/...`` names, and in its metadata the
JSON record ``{"config": ..., "state": ..., "optimizer": ...}``. That file is the single
source of truth, written to a temp file and renamed into place, so a kill at any moment
leaves either the old checkpoint or the new one, never a mix. ``stem.json`` is a
human-readable copy of the record (without the optimizer part), written the same way.

Inside an avatar directory the training stages keep ``checkpoints/<stage>/latest.*``
(resume point) and ``checkpoints/<stage>/best.*`` (best validation loss of a trained step,
never the untrained step 0; ``state.learned`` is false when that is merely the last step);
the loaders turn those into eval-mode models for inference. Weights from elsewhere
(Wav2Lip, SyncTalk, torchvision) are read by `models.foreign`.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from safetensors import SafetensorError, safe_open
from safetensors.torch import save_file

from synctalk2d.atomic import atomic_path, write_json_atomic
from synctalk2d.errors import UserError
from synctalk2d.models.audio_encoder import AudioEncoder
from synctalk2d.models.mouth import MouthModel, MouthModelConfig
from synctalk2d.models.syncnet import SyncNet, SyncNetConfig, Wav2LipSyncNet
from synctalk2d.models.unet import UNet, UNetConfig

FORMAT_VERSION = 1
_OPTIM = "optimizer/"
STAGES = ("audio-encoder", "syncnet", "unet")


@dataclass
class Checkpoint:
    """What `load_checkpoint` returns: enough to rebuild, resume or inspect a model."""

    config: dict[str, Any]
    weights: dict[str, torch.Tensor]
    state: dict[str, Any] = field(default_factory=dict)
    optimizer: dict[str, Any] | None = None  # a torch optimizer ``state_dict``


def unwrap(model: torch.nn.Module) -> torch.nn.Module:
    """The bare module inside a DistributedDataParallel wrapper (checkpoints never say
    ``module.``, so single- and multi-GPU runs read each other's files)."""
    return getattr(model, "module", model)


def save_checkpoint(
    stem: str | Path,
    model: torch.nn.Module,
    config: dict[str, Any],
    optimizer: torch.optim.Optimizer | None = None,
    state: dict[str, Any] | None = None,
) -> None:
    """Write ``stem.safetensors`` and ``stem.json`` atomically.

    ``config`` is what rebuilds the model (architecture, feature type, width, the stage's
    training config); ``state`` is where training stood (step, metrics, elapsed time...).
    """
    stem = Path(stem)
    stem.parent.mkdir(parents=True, exist_ok=True)
    tensors = {k: v.detach().cpu().contiguous() for k, v in unwrap(model).state_dict().items()}
    record: dict[str, Any] = {"format_version": FORMAT_VERSION, "config": config, "state": state or {}}
    if optimizer is not None:
        optim = optimizer.state_dict()
        for param_id, param_state in optim["state"].items():
            for name, value in param_state.items():
                tensors[f"{_OPTIM}{param_id}/{name}"] = torch.as_tensor(value).detach().cpu().contiguous()
        record["optimizer"] = {"param_groups": optim["param_groups"]}
    with atomic_path(stem.with_suffix(".safetensors")) as tmp:
        save_file(tensors, tmp, metadata={"synctalk2d": json.dumps(record)})
    write_json_atomic(stem.with_suffix(".json"), {k: v for k, v in record.items() if k != "optimizer"})


def load_checkpoint(stem: str | Path) -> Checkpoint:
    """Read a checkpoint written by `save_checkpoint` (the optimizer only if it was saved)."""
    path = Path(stem).with_suffix(".safetensors")
    if not path.is_file():
        raise UserError(f"checkpoint {path} does not exist")
    try:
        with safe_open(path, framework="pt") as f:
            record = json.loads((f.metadata() or {})["synctalk2d"])
            tensors = {key: f.get_tensor(key) for key in f.keys()}
    except (SafetensorError, KeyError, json.JSONDecodeError, OSError) as e:
        raise UserError(f"{path} is not a synctalk2d checkpoint or is damaged ({e}); train again") from e
    if record.get("format_version") != FORMAT_VERSION:
        raise UserError(f"{path} has checkpoint format {record.get('format_version')}, expected {FORMAT_VERSION}; train again")
    weights = {k: v for k, v in tensors.items() if not k.startswith(_OPTIM)}
    optimizer = None
    if "optimizer" in record:
        state: dict[int, dict[str, torch.Tensor]] = {}
        for key, value in tensors.items():
            if key.startswith(_OPTIM):
                param_id, name = key[len(_OPTIM) :].split("/", 1)
                state.setdefault(int(param_id), {})[name] = value
        optimizer = {"state": state, "param_groups": record["optimizer"]["param_groups"]}
    return Checkpoint(config=record["config"], weights=weights, state=record.get("state", {}), optimizer=optimizer)


# -- avatar layout and loaders ---------------------------------------------------------


def stage_dir(avatar_root: str | Path, stage: str) -> Path:
    return Path(avatar_root) / "checkpoints" / stage


def trained_stem(avatar_root: str | Path, stage: str) -> Path:
    """``best`` if the stage kept one, else ``latest``; `UserError` when the stage never ran."""
    directory = stage_dir(avatar_root, stage)
    for name in ("best", "latest"):
        if (directory / f"{name}.safetensors").is_file():
            return directory / name
    option = " --renderer unet" if stage == "compositor" else ""
    raise UserError(f"{avatar_root} is not trained ({stage} has no checkpoint): run `synctalk2d train --avatar {avatar_root}{option}`")


def retrain_hint(stem: Path) -> str:
    """What to do about a checkpoint this synctalk2d cannot use: an avatar's stage is
    retrained after deleting it (`train` skips a stage it finds complete); anything else
    (a prior, a file given by path) is made again."""
    stem = Path(stem)
    if stem.parent.parent.name == "checkpoints":
        return f"delete {stem.parent} and run `synctalk2d train --avatar {stem.parent.parent.parent}` again"
    return "make it again with this version of synctalk2d"


def _restore(model: torch.nn.Module, checkpoint: Checkpoint, stem: Path) -> torch.nn.Module:
    try:
        model.load_state_dict(checkpoint.weights, strict=True)
    except RuntimeError as e:
        first = str(e).strip().splitlines()[0]
        raise UserError(f"{stem}.safetensors does not match the model its config describes ({first}); {retrain_hint(stem)}") from e
    return model.eval()


def _model_config(checkpoint: Checkpoint, stem: Path, kind: str, config_class: type | None = None) -> Any:
    """The checkpoint's model config as ``config_class``, after checking it is a ``kind``."""
    if checkpoint.config.get("kind") != kind:
        raise UserError(f"{stem}.safetensors holds a {checkpoint.config.get('kind')!r} model, expected {kind!r}; {retrain_hint(stem)}")
    if config_class is None:
        return None
    try:
        return config_class.from_dict(checkpoint.config.get("model", {}))
    except (TypeError, ValueError) as e:
        raise UserError(f"{stem}.safetensors has a model config this synctalk2d cannot build ({e}); {retrain_hint(stem)}") from e


def load_unet(avatar_root: str | Path) -> torch.nn.Module:
    """The avatar's trained U-Net, in eval mode on the CPU."""
    stem = trained_stem(avatar_root, "unet")
    checkpoint = load_checkpoint(stem)
    return _restore(UNet(_model_config(checkpoint, stem, "unet", UNetConfig)), checkpoint, stem)


def load_compositor(avatar_root: str | Path) -> torch.nn.Module:
    """The avatar's compositor U-Net (stage ``compositor``, `training.compositor`), in eval mode on the CPU."""
    stem = trained_stem(avatar_root, "compositor")
    checkpoint = load_checkpoint(stem)
    return _restore(UNet(_model_config(checkpoint, stem, "compositor", UNetConfig)), checkpoint, stem)


def load_syncnet(avatar_root: str | Path) -> torch.nn.Module:
    """The avatar's trained lip-sync expert (`SyncNet` on feature windows), in eval mode."""
    stem = trained_stem(avatar_root, "syncnet")
    return syncnet_of(load_checkpoint(stem), stem)


def syncnet_of(checkpoint: Checkpoint, stem: Path) -> torch.nn.Module:
    """The `SyncNet` in an already loaded ``checkpoint``, in eval mode: for callers that also
    read its record, so what they check (its accuracy) belongs to the weights they use."""
    return _restore(SyncNet(_model_config(checkpoint, stem, "syncnet", SyncNetConfig)), checkpoint, stem)


def load_audio_encoder(avatar_root: str | Path) -> torch.nn.Module:
    """The avatar's AVE audio encoder (mel window -> 512), in eval mode.

    Stage ``audio-encoder`` stores either the whole Wav2Lip SyncNet it trained (kind
    ``wav2lip_syncnet``; the encoder is its ``audio_encoder``) or, when given pretrained
    weights, the bare encoder (kind ``audio_encoder``).
    """
    stem = trained_stem(avatar_root, "audio-encoder")
    checkpoint = load_checkpoint(stem)
    if checkpoint.config.get("kind") == "wav2lip_syncnet":
        return _restore(Wav2LipSyncNet(), checkpoint, stem).audio_encoder
    _model_config(checkpoint, stem, "audio_encoder")
    return _restore(AudioEncoder(), checkpoint, stem)


def load_mouth_model(stem: str | Path) -> tuple[MouthModel, dict]:
    """A mouth model and its recorded state from a checkpoint written by `save_checkpoint`."""
    stem = Path(stem)
    checkpoint = load_checkpoint(stem)
    model = _restore(MouthModel(_model_config(checkpoint, stem, "mouth", MouthModelConfig)), checkpoint, stem)
    return model, checkpoint.state


def load_avatar_mouth(avatar_root: str | Path) -> tuple[MouthModel, np.ndarray, np.ndarray, float]:
    """The avatar's mouth model, mean lip shape, rest lip shape and motion gain (stage ``mouth``)."""
    stem = trained_stem(avatar_root, "mouth")
    model, state = load_mouth_model(stem)
    if "motion_gain" not in state:
        raise UserError(f"{avatar_root}'s mouth model was trained by an older synctalk2d: {retrain_hint(stem)}")
    return model, np.asarray(state["mean_shape"], np.float32), np.asarray(state["rest_shape"], np.float32), float(state["motion_gain"])
