"""The AVE audio encoder: one 0.2 s mel window (B, 1, 80, 16) -> a 512-d embedding.

It is the audio tower of Wav2Lip's lip-sync expert (``SyncNet_color``) in the variant
SyncTalk ships as its "audio-visual encoder": Wav2Lip's tower has two residual blocks
after the (3, 2) stride, SyncTalk's one, so SyncTalk's weights (bare keys ``0.*`` ...
``12.*``) and a Wav2Lip-style SyncNet built on this encoder (keys ``audio_encoder.*``)
load; Wav2Lip's own ``lipsync_expert.pth`` has one block more and is refused.

The module is a bare `nn.Sequential` so its state-dict keys are exactly that layout;
foreign weights load through `models.foreign.read_state_dict` and `load_matching`.
"""

from __future__ import annotations

from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn

from synctalk2d.models.foreign import load_matching, read_state_dict


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
