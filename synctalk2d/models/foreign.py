"""Weights from elsewhere (Wav2Lip, SyncTalk, torchvision): plain state dicts, read with a
clear error when they do not fit the module they are meant for.

The models load such weights themselves (`audio_encoder`, `perceptual`), so this sits below
them; our own checkpoints (`checkpoint`) sit above the models and build them.
"""

from __future__ import annotations

import pickle
from pathlib import Path

import torch
from safetensors import SafetensorError
from safetensors.torch import load_file
from torch import nn

from synctalk2d.errors import UserError


def read_state_dict(path: str | Path) -> dict[str, torch.Tensor]:
    """The tensors of a ``.safetensors`` file or a torch ``.pth``/``.pt`` (a state dict, or
    a dict holding one under ``state_dict``, as Wav2Lip saves), with DataParallel's
    ``module.`` prefix removed. Torch files are read with ``weights_only=True``: a
    downloaded checkpoint cannot run code."""
    path = Path(path)
    if not path.is_file():
        raise UserError(f"{path} does not exist")
    try:
        state = load_file(path) if path.suffix == ".safetensors" else torch.load(path, map_location="cpu", weights_only=True)
    except (OSError, RuntimeError, EOFError, pickle.UnpicklingError, SafetensorError) as e:
        raise UserError(f"{path} cannot be read as model weights ({str(e).splitlines()[0]})") from e
    if isinstance(state, dict) and isinstance(state.get("state_dict"), dict):
        state = state["state_dict"]
    if not isinstance(state, dict):
        raise UserError(f"{path} holds a {type(state).__name__}, not a state dict of model weights")
    return {k.removeprefix("module."): v for k, v in state.items() if isinstance(v, torch.Tensor)}


def load_matching(module: nn.Module, state: dict[str, torch.Tensor], path: str | Path, what: str) -> nn.Module:
    """Load the tensors ``module`` needs from ``state`` (extra ones are ignored); a
    `UserError` naming ``path`` and the first missing or mis-shaped tensor otherwise.
    BatchNorm's ``num_batches_tracked`` may be absent (older torch did not save it)."""
    expected = module.state_dict()
    needed = [k for k in expected if not k.endswith("num_batches_tracked")]
    missing = [k for k in needed if k not in state]
    misshaped = [k for k in needed if k in state and state[k].shape != expected[k].shape]
    if missing or misshaped:
        problem = f"{len(missing)} of its {len(needed)} tensors are missing (first: {missing[0]})" if missing else ""
        if misshaped:
            k = misshaped[0]
            shapes = f"{k} is {list(state[k].shape)}, expected {list(expected[k].shape)}"
            problem += (" and " if problem else "") + f"{len(misshaped)} have the wrong shape (first: {shapes})"
        raise UserError(f"{path} does not hold {what}: {problem}")
    module.load_state_dict({k: v for k, v in state.items() if k in expected}, strict=False)
    return module
