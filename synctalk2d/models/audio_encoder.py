"""The AVE audio encoder: one 0.2 s mel window (B, 1, 80, 16) -> a 512-d embedding.

It is the audio tower of Wav2Lip's lip-sync expert (``SyncNet_color``) in the variant
SyncTalk ships as its "audio-visual encoder": Wav2Lip's tower has two residual blocks
after the (3, 2) stride, SyncTalk's one, so SyncTalk's weights (bare keys ``0.*`` ...
``12.*``) and a Wav2Lip-style SyncNet built on this encoder (keys ``audio_encoder.*``)
load; Wav2Lip's own ``lipsync_expert.pth`` has one block more and is refused.

The module is a bare `nn.Sequential` so its state-dict keys are exactly that layout. This
file also holds the two helpers every foreign checkpoint goes through (`read_state_dict`,
`load_matching`): the VGG19 weights of the perceptual loss use them too.
"""

from __future__ import annotations

import pickle
from pathlib import Path

import torch
import torch.nn.functional as F
from safetensors import SafetensorError
from safetensors.torch import load_file
from torch import nn

from synctalk2d.errors import UserError


class ConvBlock(nn.Module):
    """Wav2Lip's ``Conv2d``: conv + BatchNorm (+ the input, for residual blocks), then a
    (leaky) ReLU. ``conv_block.0`` / ``conv_block.1`` are the conv and the norm, as in
    Wav2Lip's key layout."""

    def __init__(self, cin: int, cout: int, kernel: int, stride: int | tuple[int, int], padding: int, residual: bool = False, negative_slope: float = 0.0):
        super().__init__()
        self.conv_block = nn.Sequential(nn.Conv2d(cin, cout, kernel, stride, padding), nn.BatchNorm2d(cout))
        self.residual, self.negative_slope = residual, negative_slope

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.conv_block(x)
        if self.residual:
            out = out + x
        return F.leaky_relu(out, self.negative_slope)


def conv_stage(cin: int, cout: int, kernel: int, stride: int | tuple[int, int], padding: int, residuals: int, negative_slope: float = 0.0) -> list[ConvBlock]:
    """One strided block and ``residuals`` 3x3 residual blocks after it: the unit every
    Wav2Lip-style tower is made of."""
    return [ConvBlock(cin, cout, kernel, stride, padding, negative_slope=negative_slope)] + [
        ConvBlock(cout, cout, 3, 1, 1, residual=True, negative_slope=negative_slope) for _ in range(residuals)
    ]


class AudioEncoder(nn.Sequential):
    """(B, 1, 80, 16) mel window -> (B, 512), not normalised: the AVE feature of a frame.

    Mel bins shrink 80 -> 27 -> 9 -> 3 -> 1 and time 16 -> 16 -> 6 -> 3 -> 1.
    """

    def __init__(self):
        super().__init__(
            *conv_stage(1, 32, 3, 1, 1, residuals=2),
            *conv_stage(32, 64, 3, (3, 1), 1, residuals=2),
            *conv_stage(64, 128, 3, 3, 1, residuals=2),
            *conv_stage(128, 256, 3, (3, 2), 1, residuals=1),
            ConvBlock(256, 512, 3, 1, 0),
            ConvBlock(512, 512, 1, 1, 0),
        )

    def forward(self, mel: torch.Tensor) -> torch.Tensor:
        return super().forward(mel).flatten(1)


def load_audio_encoder_weights(encoder: AudioEncoder, path: str | Path) -> AudioEncoder:
    """Load SyncTalk/Wav2Lip-layout weights into ``encoder``: a whole SyncNet's (only its
    ``audio_encoder.*`` tensors are taken) or a bare encoder's."""
    state = read_state_dict(path)
    prefix = "audio_encoder."
    audio = {k.removeprefix(prefix): v for k, v in state.items() if k.startswith(prefix)}
    return load_matching(encoder, audio or state, path, "an AVE audio encoder (SyncTalk/Wav2Lip audio_encoder layout)")


# -- foreign checkpoints -------------------------------------------------------------


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
