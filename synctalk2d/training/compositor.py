"""Stage ``compositor``: the reference design's U-Net as a learned paste (``train --renderer unet``).

The paste (`inference.mouth.paste_mouth`) lays another frame's mouth over the target and
can only feather the edge: where the head is turned differently the chin and jaw line
come from the wrong pose and show twice. The compositor instead redraws the target's
mouth and chin (`MOUTH_MASK_RECT` of the crop) from two images: the target crop with that
rectangle blacked out (its cheeks, jaw sides, pose and lighting) and a reference crop that
shows the mouth to draw, aligned onto the target's face first (`face.crop.align_face`, the
paste's own alignment), so the mouth to copy already lies where it is drawn: a U-Net's
skip connections carry what is in place, and with unaligned references it learned to
draw a blurred average mouth instead of the reference's. At render time the reference is the frame the picker chose
(`inference.picker`); in training it is another moment of the recording whose lips match
the target's (one of `NEIGHBOURS` nearest lip shapes, at least `MIN_GAP` frames away, so it
is not the same moment seen again), and the target itself is what the U-Net must draw.
It has no audio input: the mouth model already decided the shape.

Loss, inside the rectangle (rendering keeps the real crop outside it): L1 +
``gradient_weight`` * L1 of the horizontal and vertical pixel differences (an L1 on pixels
alone is content with a blurred average of the mouths it might draw; the difference term
asks for their edges: lip lines, teeth) + ``perceptual_weight`` * VGG19 perceptual on the
whole crop when VGG19 weights are found.
"""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F

from synctalk2d.avatar import Avatar
from synctalk2d.face.crop import MOUTH_MASK_RECT, align_face, mask_lower_face, model_points
from synctalk2d.face.lip_shape import lip_shapes
from synctalk2d.models.perceptual import PerceptualLoss, load_vgg19
from synctalk2d.models.unet import NO_AUDIO, UNet, UNetConfig
from synctalk2d.progress import console
from synctalk2d.training.config import Splits, TrainConfig
from synctalk2d.training.data import CropCache, FrameDataset, augment, to_chw
from synctalk2d.training.loop import ImageStage, Runtime, StageResult, fit, frozen

NEIGHBOURS = 8  # a target's reference is drawn from this many frames with the nearest lip shapes
MIN_GAP = 12  # frames: nearer moments are the same mouth a few frames on, not another one


def matched_references(shapes: np.ndarray, bank: np.ndarray, targets: np.ndarray, bank_frames: np.ndarray) -> np.ndarray:
    """(len(targets), `NEIGHBOURS`) frames of ``bank_frames`` whose lip ``bank`` shapes are
    nearest each target's ``shapes``, never within `MIN_GAP` frames of the target."""
    chosen = np.empty((len(targets), NEIGHBOURS), np.int64)
    bank_norms = (bank**2).sum(axis=1)
    for start in range(0, len(targets), 512):  # bounded memory on long recordings
        rows = slice(start, start + 512)
        distances = (shapes[rows] ** 2).sum(axis=1)[:, None] - 2 * shapes[rows] @ bank.T + bank_norms[None]
        distances[np.abs(targets[rows, None] - bank_frames[None]) < MIN_GAP] = np.inf
        chosen[rows] = bank_frames[np.argsort(distances, axis=1)[:, :NEIGHBOURS]]
    return chosen


class MatchedReferenceFrames(FrameDataset):
    """Item ``k``: (reference crop + target crop masked by `MOUTH_MASK_RECT` (6, 320, 320),
    the target crop (3, 320, 320)), both uint8; reference and target get the same augmentation."""

    def __init__(self, crops: CropCache, frames: range, references: np.ndarray, points: np.ndarray, jitter: float = 0.0, flip: float = 0.0):
        super().__init__(crops, frames, jitter, flip)
        self.references = references  # (len(frames), NEIGHBOURS)
        self.points = points  # (N, 68, 2) model-crop landmarks of every frame

    def __getitem__(self, item: tuple[int, tuple]) -> tuple[torch.Tensor, torch.Tensor]:
        index, key = item
        rng = np.random.default_rng(key)
        frame = self.frames[index]
        reference = self.references[index, rng.integers(NEIGHBOURS)]
        reference_crop, target = self.crops.model_crops([reference, frame])
        reference_crop = align_face(reference_crop, self.points[reference], self.points[frame])
        reference_crop, target = augment(np.stack([reference_crop, target]), rng, self.jitter, self.flip)
        inputs = np.concatenate([reference_crop, mask_lower_face(target, MOUTH_MASK_RECT)], axis=-1)
        return to_chw(inputs), to_chw(target)


class CompositorStage(ImageStage):
    name = "compositor"
    kind = "compositor"
    bf16_on_cpu = True

    def __init__(self, avatar: Avatar, config: TrainConfig, splits: Splits, runtime: Runtime):
        self.setup(config.compositor, config.seed)
        model_config = UNetConfig(feature_type=NO_AUDIO, width=config.width)
        self.model = UNet(model_config)
        self.model_config = model_config.to_dict()
        self.extra_config = {"width": config.width, "mask": list(MOUTH_MASK_RECT), "reference": "aligned"}
        vgg = load_vgg19(config.vgg_weights)
        if vgg is None and runtime.is_main:
            console.print("compositor: no VGG19 weights found (torch hub cache or --vgg-weights); training without the perceptual loss", soft_wrap=True)
        self.perceptual = None if vgg is None else frozen(PerceptualLoss(vgg)).to(runtime.device, memory_format=torch.channels_last)
        landmarks, boxes = avatar.landmarks(), avatar.boxes()
        shapes, points = lip_shapes(landmarks, boxes), model_points(landmarks, boxes)
        bank = np.arange(splits.train.start, splits.train.stop)  # references come from training frames only
        crops = CropCache(avatar.crops_path)
        for split, attribute in ((splits.train, "train_set"), (splits.val, "val_set")):
            targets = np.arange(split.start, split.stop)
            references = matched_references(shapes[targets], shapes[bank], targets, bank)
            stage = self.config
            jitter, flip = (stage.jitter, stage.flip) if attribute == "train_set" else (0.0, 0.0)
            setattr(self, attribute, MatchedReferenceFrames(crops, split, references, points, jitter, flip))

    def inputs(self, batch: list[torch.Tensor]) -> list[torch.Tensor]:
        return batch[:1]

    def loss(self, model, batch):
        inputs, target = batch
        predicted = model(inputs)
        self.last_predicted = predicted[:4].detach()
        x, y, w, h = MOUTH_MASK_RECT
        drawn, real = predicted[..., y : y + h, x : x + w].float(), target[..., y : y + h, x : x + w]
        l1 = F.l1_loss(drawn, real)
        edges = sum(F.l1_loss(drawn.diff(dim=d), real.diff(dim=d)) for d in (-1, -2))
        loss = l1 + self.config.gradient_weight * edges
        metrics = {"l1": l1.detach(), "edges": edges.detach()}
        return self.finish_loss(loss, metrics, predicted, target)


def run(avatar: Avatar, config: TrainConfig, splits: Splits, runtime: Runtime, seconds: float | None, show_progress: bool = True) -> StageResult:
    return fit(CompositorStage(avatar, config, splits, runtime), avatar, runtime, seconds, show_progress)
