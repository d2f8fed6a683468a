"""The networks: the lip-sync U-Net, the AVE audio encoder, the sync experts, the
perceptual loss. ``checkpoint`` saves and restores them."""

from synctalk2d.models.audio_encoder import AudioEncoder, load_audio_encoder_weights
from synctalk2d.models.perceptual import PerceptualLoss, load_vgg19
from synctalk2d.models.syncnet import (
    SyncNet,
    SyncNetConfig,
    Wav2LipSyncNet,
    sync_loss,
    sync_probability,
)
from synctalk2d.models.unet import WIDTHS, UNet, UNetConfig

__all__ = [
    "WIDTHS",
    "AudioEncoder",
    "PerceptualLoss",
    "SyncNet",
    "SyncNetConfig",
    "UNet",
    "UNetConfig",
    "Wav2LipSyncNet",
    "load_audio_encoder_weights",
    "load_vgg19",
    "sync_loss",
    "sync_probability",
]
