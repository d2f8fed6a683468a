"""Lip-sync experts: a face tower and an audio tower whose 512-d unit embeddings have a
high cosine when the face is saying that audio.

* `Wav2LipSyncNet` (Wav2Lip's ``SyncNet_color``): 5 consecutive faces against their mel
  window. It exists to train the AVE `AudioEncoder` (its audio tower) on an avatar.
* `SyncNet` (SyncTalk_2D's ``syncnet_328.py``): one 320x320 model crop against the frame's
  16-frame feature window; frozen, it gives the U-Net its sync loss.

Both read the cosine as Wav2Lip does, as the probability that the pair is in sync; BCE
against in-sync / off-sync labels trains them (`sync_loss`).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from synctalk2d.audio.windows import WINDOW_SHAPES
from synctalk2d.models.audio_encoder import AudioEncoder, ConvBlock, conv_stage
from synctalk2d.models.config import DictConfig, check_choice
from synctalk2d.models.unet import AUDIO_STRIDES


def sync_probability(audio_emb: torch.Tensor, face_emb: torch.Tensor) -> torch.Tensor:
    """(B,) P(in sync): the embeddings' cosine, ReLU'd into [0, 1] (Wav2Lip feeds the raw
    cosine to BCE, which works there because its ReLU embeddings never point apart;
    `SyncNet`'s leaky ones can, slightly). Computed in float32 whatever the inputs."""
    return F.relu(F.cosine_similarity(audio_emb.float(), face_emb.float()))


def sync_loss(audio_emb: torch.Tensor, face_emb: torch.Tensor, target: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """(BCE of `sync_probability` against ``target`` (B,) 1 = in sync / 0 = off, the
    probabilities). BCE refuses to run under autocast, hence the float32 island."""
    probability = sync_probability(audio_emb, face_emb)
    with torch.autocast(probability.device.type, enabled=False):
        loss = F.binary_cross_entropy(probability, target.float().reshape(probability.shape))
    return loss, probability


def _embed(tower: nn.Module, x: torch.Tensor) -> torch.Tensor:
    """A tower's (B, 512, 1, 1) output as a unit vector (B, 512)."""
    return F.normalize(tower(x).flatten(1), dim=1)


class Wav2LipSyncNet(nn.Module):
    """Wav2Lip's ``SyncNet_color`` over ``FACE_SIZE`` faces: forward((B, 15, 96, 96) faces,
    (B, 1, 80, 16) mel) -> (audio_emb, face_emb), both (B, 512) unit vectors.

    The faces are 5 consecutive whole 320 model crops downscaled to 96x96, stacked on
    channels (frame-major RGB). Wav2Lip shows its expert the lower half of a whole-face
    crop, i.e. nose to chin; the model crop already is that region (on the sample clip the
    upper lip sits at row ~100 of 320, the lower lip at ~160, the chin at ~245), so its
    lower half would hold only the chin. Compared to Wav2Lip's 48x96 the input is square,
    so the first stride-(1, 2) conv becomes stride 2. ~1.2 GMAC per sample.
    """

    FACE_SIZE = (96, 96)  # (H, W) of each of the 5 faces

    def __init__(self):
        super().__init__()
        self.face_encoder = nn.Sequential(
            ConvBlock(15, 32, 7, 1, 3),  # 96
            *conv_stage(32, 64, 5, 2, 1, residuals=2),  # 47
            *conv_stage(64, 128, 3, 2, 1, residuals=3),  # 24
            *conv_stage(128, 256, 3, 2, 1, residuals=2),  # 12
            *conv_stage(256, 512, 3, 2, 1, residuals=2),  # 6
            ConvBlock(512, 512, 3, 2, 1),  # 3
            ConvBlock(512, 512, 3, 1, 0),  # 1
            ConvBlock(512, 512, 1, 1, 0),
        )
        self.audio_encoder = AudioEncoder()

    def forward(self, face: torch.Tensor, audio: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        return _embed(self.audio_encoder, audio), _embed(self.face_encoder, face)


@dataclass
class SyncNetConfig(DictConfig):
    feature_type: str = "ave"

    def __post_init__(self):
        check_choice("feature type", self.feature_type, WINDOW_SHAPES)


class SyncNet(nn.Module):
    """SyncTalk_2D's lip-sync expert: forward((B, 3, 320, 320) crops in [0, 1], (B, C, H, W)
    audio window) -> (audio_emb, face_emb), both (B, 512) unit vectors.

    Like the reference it sees the whole model crop (nose to chin: all the U-Net redraws)
    and uses leaky ReLUs (slope 0.01). The reference's towers end at 3x3 maps compared as
    4608-d vectors; here each gets one more stride 2 and ends at 1x1 = 512-d: the face
    tower's first conv (which also quarters its cost, ~1 GMAC per crop) and, in the audio
    tower, the second stage, after the first stage has brought every window to 16x16
    with the same per-type stride as the U-Net's audio branch.
    """

    FACE_SIZE = (320, 320)
    NEGATIVE_SLOPE = 0.01

    def __init__(self, config: SyncNetConfig | None = None):
        super().__init__()
        self.config = config = config or SyncNetConfig()
        slope = self.NEGATIVE_SLOPE
        self.face_encoder = nn.Sequential(
            ConvBlock(3, 32, 7, 2, 3, negative_slope=slope),  # 160
            ConvBlock(32, 32, 5, 2, 1, negative_slope=slope),  # 79
            *conv_stage(32, 64, 5, 2, 1, residuals=2, negative_slope=slope),  # 39
            *conv_stage(64, 128, 3, 2, 1, residuals=3, negative_slope=slope),  # 20
            *conv_stage(128, 256, 3, 2, 1, residuals=2, negative_slope=slope),  # 10
            *conv_stage(256, 512, 3, 2, 1, residuals=2, negative_slope=slope),  # 5
            ConvBlock(512, 512, 3, 2, 1, negative_slope=slope),  # 3
            ConvBlock(512, 512, 3, 1, 0, negative_slope=slope),  # 1
            ConvBlock(512, 512, 1, 1, 0, negative_slope=slope),
        )
        channels, stride = WINDOW_SHAPES[config.feature_type][0], AUDIO_STRIDES[config.feature_type]
        self.audio_encoder = nn.Sequential(
            *conv_stage(channels, 128, 3, stride, 1, residuals=2, negative_slope=slope),  # 16
            *conv_stage(128, 256, 3, 2, 1, residuals=2, negative_slope=slope),  # 8
            *conv_stage(256, 256, 3, 2, 2, residuals=2, negative_slope=slope),  # 5
            *conv_stage(256, 512, 3, 2, 1, residuals=2, negative_slope=slope),  # 3
            ConvBlock(512, 512, 3, 1, 0, negative_slope=slope),  # 1
            ConvBlock(512, 512, 1, 1, 0, negative_slope=slope),
        )

    def forward(self, face: torch.Tensor, audio: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        return _embed(self.audio_encoder, audio), _embed(self.face_encoder, face)
