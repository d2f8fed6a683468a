"""The lip-sync generator: SyncTalk_2D's U-Net (``unet_328.py``), MobileNetV2 style.

Image in: the reference crop and the masked current crop, (B, 6, 320, 320) in [0, 1].
Audio in: the frame's 16-frame feature window, (B, *WINDOW_SHAPES[feature_type]), or
nothing for the compositor (``feature_type="none"``: the reference already shows the
mouth to draw, `training.compositor`).
Out: the current crop redrawn, (B, 3, 320, 320), through a sigmoid.

An input block and 5 stride-2 `Down` stages take the image to (C4, 10, 10); the audio
branch takes the window to the same map, the two are concatenated and fused by two
double blocks, and 5 `Up` stages (bilinear x2, concatenated skip) climb back to 320.
Every block is an inverted residual with expansion 2. The default (AVE, full width)
has exactly the reference's 12,186,935 parameters; the state-dict keys are this file's
own, not the reference's.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from synctalk2d.audio.windows import WINDOW_SHAPES
from synctalk2d.models.config import DictConfig, check_choice

WIDTHS = {"full": (32, 64, 128, 256, 512), "mobile": (16, 32, 64, 128, 256)}
EXPANSION = 2  # MobileNetV2 uses 6; the reference's blocks all use 2

# The stride that brings each window to 16x16, which the audio towers then shrink like
# any other (here: a stride-2 conv with padding 3 makes it 10x10, the image bottleneck).
AUDIO_STRIDES = {"ave": 1, "hubert": 2, "wenet": (1, 2)}
NO_AUDIO = "none"  # the compositor's feature type: image in, image out


@dataclass
class UNetConfig(DictConfig):
    feature_type: str = "ave"
    width: str = "full"

    def __post_init__(self):
        check_choice("feature type", self.feature_type, [*WINDOW_SHAPES, NO_AUDIO])
        check_choice("width", self.width, WIDTHS)


class InvertedResidual(nn.Module):
    """MobileNetV2 block: 1x1 expand, 3x3 depthwise (the only spatial and strided conv),
    linear 1x1 projection. The input is added back whenever the shape allows, which is
    exactly where the reference adds it."""

    def __init__(self, cin: int, cout: int, stride: int = 1):
        super().__init__()
        hidden = cin * EXPANSION
        self.conv = nn.Sequential(
            nn.Conv2d(cin, hidden, 1, bias=False),
            nn.BatchNorm2d(hidden),
            nn.ReLU(inplace=True),
            nn.Conv2d(hidden, hidden, 3, stride, 1, groups=hidden, bias=False),
            nn.BatchNorm2d(hidden),
            nn.ReLU(inplace=True),
            nn.Conv2d(hidden, cout, 1, bias=False),
            nn.BatchNorm2d(cout),
        )
        self.residual = cin == cout and stride == 1

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.conv(x) if self.residual else self.conv(x)


def double_block(cin: int, cout: int, stride: int = 1) -> nn.Sequential:
    """Two inverted residuals, the first changing width (and resolution), as ``DoubleConvDW``."""
    return nn.Sequential(InvertedResidual(cin, cout, stride), InvertedResidual(cout, cout))


def conv_bn_relu(cin: int, cout: int, stride: int | tuple[int, int], padding: int) -> nn.Sequential:
    """A plain 3x3 conv (with bias, as the reference) + BatchNorm + ReLU."""
    return nn.Sequential(nn.Conv2d(cin, cout, 3, stride, padding), nn.BatchNorm2d(cout), nn.ReLU(inplace=True))


class AudioBranch(nn.Sequential):
    """Audio window -> (C4, 10, 10), the image bottleneck's shape. Wenet windows are
    already 256 channels deep, so their first two blocks keep C3 instead of widening."""

    def __init__(self, feature_type: str, ch: tuple[int, ...]):
        cin = WINDOW_SHAPES[feature_type][0]
        c1, c2 = (ch[3], ch[3]) if feature_type == "wenet" else (ch[1], ch[2])
        super().__init__(
            InvertedResidual(cin, c1),
            InvertedResidual(c1, c2),
            conv_bn_relu(c2, ch[3], AUDIO_STRIDES[feature_type], 1),
            InvertedResidual(ch[3], ch[3]),
            conv_bn_relu(ch[3], ch[4], 2, 3),
            InvertedResidual(ch[4], ch[4]),
            InvertedResidual(ch[4], ch[4]),
        )


class Up(nn.Module):
    """Bilinear x2 (align_corners, as the reference), concatenate the skip, double block."""

    def __init__(self, cin: int, cout: int):
        super().__init__()
        self.conv = double_block(cin, cout)

    def forward(self, x: torch.Tensor, skip: torch.Tensor) -> torch.Tensor:
        x = F.interpolate(x, scale_factor=2, mode="bilinear", align_corners=True)
        return self.conv(torch.cat([x, skip], dim=1))


class UNet(nn.Module):
    def __init__(self, config: UNetConfig | None = None):
        super().__init__()
        self.config = config = config or UNetConfig()
        ch = WIDTHS[config.width]
        self.audio = AudioBranch(config.feature_type, ch) if config.feature_type != NO_AUDIO else None
        self.inc = InvertedResidual(6, ch[0])
        self.down = nn.ModuleList(double_block(a, b, stride=2) for a, b in [(ch[0], ch[0]), (ch[0], ch[1]), (ch[1], ch[2]), (ch[2], ch[3]), (ch[3], ch[4])])
        bottleneck = ch[4] if self.audio is None else 2 * ch[4]
        self.fuse = nn.Sequential(double_block(bottleneck, ch[4]), double_block(ch[4], ch[3]))
        # in = upsampled + skip channels; the last two stages keep C0 and then halve it
        self.up = nn.ModuleList(Up(a, b) for a, b in [(ch[4], ch[2]), (ch[3], ch[1]), (ch[2], ch[0]), (ch[1], ch[0]), (ch[1], ch[0] // 2)])
        self.out = nn.Conv2d(ch[0] // 2, 3, 1)

    def forward(self, image: torch.Tensor, audio: torch.Tensor | None = None) -> torch.Tensor:
        """(B, 6, 320, 320) reference + masked crop, (B, C, H, W) audio window (None for the
        compositor) -> (B, 3, 320, 320)."""
        skips = [self.inc(image)]
        for down in self.down:
            skips.append(down(skips[-1]))
        x = skips.pop() if self.audio is None else torch.cat([skips.pop(), self.audio(audio)], dim=1)
        x = self.fuse(x)
        for up in self.up:
            x = up(x, skips.pop())
        return torch.sigmoid(self.out(x))
