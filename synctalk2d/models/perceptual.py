"""The perceptual loss: MSE between VGG19 features of the prediction and of the target.

As the reference (``train_328.py``) the features are torchvision's ``vgg19().features``
up to and including conv3_3 (index 14, before its ReLU) and the distance is MSE. Unlike
the reference, which feeds raw [0, 1] BGR images, the input is RGB normalised with the
ImageNet statistics VGG19 was trained on, so its features are larger and the term's
scale is not the reference's.

The layers are built here with torchvision's indices, so its checkpoint
(``features.0.weight`` ...) loads without torchvision. No weights can be downloaded:
`load_vgg19` finds them or returns None, and training goes on without this term.
"""

from __future__ import annotations

from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn

from synctalk2d.errors import UserError
from synctalk2d.models.foreign import load_matching, read_state_dict

VGG19_FILE = "vgg19-dcbb9e9d.pth"  # torchvision's name in the torch hub cache
CONV3_3 = 14  # index of conv3_3 in torchvision's vgg19().features
IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)


def vgg19_features() -> nn.Sequential:
    """torchvision's ``vgg19().features[:CONV3_3 + 1]``, untrained."""
    layers: list[nn.Module] = []
    cin = 3
    for width in (64, 64, "pool", 128, 128, "pool", 256, 256, 256):
        if width == "pool":
            layers.append(nn.MaxPool2d(2, 2))
        else:
            layers += [nn.Conv2d(cin, width, 3, padding=1), nn.ReLU(inplace=True)]
            cin = width
    return nn.Sequential(*layers[: CONV3_3 + 1])


def load_vgg19(path: str | Path | None = None) -> nn.Sequential | None:
    """`vgg19_features` with pretrained weights from ``path`` (a torchvision VGG19 state
    dict, ``.pth`` or ``.safetensors``) or, without one, from the torch hub cache
    (``<torch.hub.get_dir()>/checkpoints/vgg19-dcbb9e9d.pth``); None when neither exists.
    A ``path`` that does not exist is an error, not a silent fallback."""
    if path is not None and not Path(path).is_file():
        raise UserError(f"VGG19 weights {path} do not exist")
    path = Path(path) if path is not None else Path(torch.hub.get_dir()) / "checkpoints" / VGG19_FILE
    if not path.is_file():
        return None
    state = {k.removeprefix("features."): v for k, v in read_state_dict(path).items() if k.startswith("features.")}
    return load_matching(vgg19_features(), state, path, "torchvision VGG19 weights (features.* up to conv3_3)")


class PerceptualLoss(nn.Module):
    """forward(predicted, target), both (B, 3, H, W) RGB in [0, 1] -> MSE of their VGG19
    conv3_3 features. The VGG is frozen; gradients flow to ``predicted`` only."""

    def __init__(self, vgg: nn.Sequential):
        super().__init__()
        self.vgg = vgg.requires_grad_(False).eval()
        self.register_buffer("mean", torch.tensor(IMAGENET_MEAN).view(1, 3, 1, 1), persistent=False)
        self.register_buffer("std", torch.tensor(IMAGENET_STD).view(1, 3, 1, 1), persistent=False)

    def forward(self, predicted: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        features = self.vgg((torch.cat([predicted, target]) - self.mean) / self.std)
        predicted_features, target_features = features.chunk(2)
        return F.mse_loss(predicted_features, target_features.detach())
