"""The mouth-motion model: a speech window in, the lip shape of one video frame out.

Shapes are predicted as a few coefficients of a PCA basis of lip-shape *changes* (the
deviation of a frame's lips from the speaker's mean shape, see `face.lip_shape`): the
first components are opening and width, which is what speech moves. The input is the
band-normalised mel window of `audio.speech_features`, so the model is speaker- and
microphone-independent by construction.

The prediction is the average of two small predictors that err differently: a 1-D
convolution stack over the window, and a linear map of the window averaged over blocks of
mel frames and bands (fitted in closed form as a ridge regression). Trained on a few
minutes of speech, each alone predicts held-out speakers worse than their average (the
figures are in `bench/quality.py`). Both run in well under a millisecond per frame on a
CPU. The basis and its scale travel with the weights, so a checkpoint alone turns audio
into lip coordinates.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
from torch import nn

from synctalk2d.audio.mel import N_MELS
from synctalk2d.audio.speech_features import WINDOW
from synctalk2d.face.lip_shape import NUM_LIP_POINTS
from synctalk2d.models.config import DictConfig


@dataclass
class MouthModelConfig(DictConfig):
    num_coefficients: int = 3  # opening, width, and one more: 90 % of how lips move in the pool
    channels: int = 64
    dropout: float = 0.3
    window: int = WINDOW
    n_mels: int = N_MELS
    block_frames: int = 4  # the linear predictor averages the window over blocks of 4 mel frames (50 ms)
    block_bands: int = 4  # ... and 4 mel bands


class ConvPredictor(nn.Module):
    """(B, window, 80) normalised mel windows -> (B, K) coefficients: strided 1-D convolutions."""

    def __init__(self, config: MouthModelConfig):
        super().__init__()
        c = config.channels
        self.net = nn.Sequential(
            nn.Dropout(0.1),
            nn.Conv1d(config.n_mels, c, 5, stride=2, padding=2),
            nn.BatchNorm1d(c),
            nn.GELU(),
            nn.Conv1d(c, c, 5, stride=2, padding=2),
            nn.BatchNorm1d(c),
            nn.GELU(),
            nn.Conv1d(c, c, 3, stride=2, padding=1),
            nn.BatchNorm1d(c),
            nn.GELU(),
            nn.AdaptiveAvgPool1d(1),
            nn.Flatten(),
            nn.Dropout(config.dropout),
            nn.Linear(c, config.num_coefficients),
        )

    def forward(self, windows: torch.Tensor) -> torch.Tensor:
        return self.net(windows.transpose(1, 2))


class LinearPredictor(nn.Module):
    """(B, window, 80) -> (B, K): a linear map of the window's block averages (the most
    recent ``block_frames`` x ``block_bands`` blocks that fit; the oldest frames left over
    are not used)."""

    def __init__(self, config: MouthModelConfig):
        super().__init__()
        self.blocks = config.window // config.block_frames
        self.block_frames, self.block_bands = config.block_frames, config.block_bands
        self.linear = nn.Linear(self.blocks * (config.n_mels // config.block_bands), config.num_coefficients)

    def features(self, windows: torch.Tensor) -> torch.Tensor:
        recent = windows[:, windows.shape[1] - self.blocks * self.block_frames :]
        b, t, f = recent.shape
        return recent.reshape(b, self.blocks, self.block_frames, f // self.block_bands, self.block_bands).mean((2, 4)).flatten(1)

    def forward(self, windows: torch.Tensor) -> torch.Tensor:
        return self.linear(self.features(windows))


class MouthModel(nn.Module):
    """(B, window, 80) normalised mel windows -> (B, K) lip-shape coefficients."""

    def __init__(self, config: MouthModelConfig | None = None):
        super().__init__()
        self.config = config = config or MouthModelConfig()
        self.conv = ConvPredictor(config)
        self.linear = LinearPredictor(config)
        # PCA basis of lip-shape changes (K, 40) and each coefficient's std in the training pool
        self.register_buffer("basis", torch.zeros(config.num_coefficients, 2 * NUM_LIP_POINTS))
        self.register_buffer("scale", torch.ones(config.num_coefficients))

    def forward(self, windows: torch.Tensor) -> torch.Tensor:
        """Coefficients in units of the pool's std per component."""
        return 0.5 * (self.conv(windows) + self.linear(windows))

    def shape_change(self, coefficients: torch.Tensor) -> torch.Tensor:
        """(..., K) coefficients -> (..., 40) change from the speaker's mean lip shape."""
        return (coefficients * self.scale) @ self.basis

    def coefficients(self, change: torch.Tensor) -> torch.Tensor:
        """(..., 40) lip-shape change -> (..., K) coefficients (the projection onto the basis)."""
        return (change @ self.basis.T) / self.scale


@torch.inference_mode()
def predict_shapes(model: MouthModel, windows: np.ndarray, mean_shape: np.ndarray, batch: int = 512) -> np.ndarray:
    """(N, 40) lip shapes for (N, WINDOW, 80) windows, around ``mean_shape``."""
    model.eval()
    coefficients = (
        torch.cat([model(torch.from_numpy(windows[i : i + batch])) for i in range(0, len(windows), batch)])
        if len(windows)
        else torch.zeros(0, model.config.num_coefficients)
    )
    return mean_shape + model.shape_change(coefficients).numpy()
