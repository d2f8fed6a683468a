"""Stage ``unet``: the generator.

Input: a random other frame of the avatar (the reference: who this is, lit how) next to
the current crop with its lower face masked, both 320x320 in [0, 1] (6 channels), plus
the current frame's audio window; target: the current crop. Loss = L1 + 0.01 * VGG19
perceptual (up to conv3_3; skipped, with one log line, when no VGG19 weights are found)
+ 10 * sync, where sync is the frozen `SyncNet` of the previous stage judging the
predicted face against the audio window (BCE of the cosine against "in sync").

The sync weight ramps up linearly over the first ``sync_warmup_steps`` (Wav2Lip likewise
switches its expert on late): the expert's verdict on the grey blur an untrained U-Net
draws is noise, and at full weight its gradient drowns the L1 signal (measured on talk_b,
16 steps: L1 stays at 0.20 with the sync term at weight 10, falls to 0.13 without it).

An expert that cannot tell in-sync from off-sync pairs on its validation frames (accuracy
below ``min_sync_accuracy``; typical when the video is short and it memorised its training
frames), whose accuracy rests on less than ``min_sync_val_seconds`` of validation video, or
whose stage never beat its untrained start (``learned: false``), is not used at all. A
few seconds of validation video cannot tell a lip-sync expert from a lucky one (on the 5 s
sample the same training steps land anywhere from chance to two thirds from run to run), and
a lucky expert let through steers the generator away from its L1 target instead of towards
sync, on a CPU and on a GPU alike. On speaker_20s (13.5 s of training video, SyncNet at
51 %) its gradient kept the U-Net's L1 at 0.20-0.22 for 168 steps, where L1 alone falls to
0.10 in 40. The sync term is still logged, for comparison. The gate reads the record of
the very checkpoint the stage loads, and the U-Net's checkpoints keep that record (config
``syncnet``).

The frozen expert always runs in fp32, as it was trained and gated, even where the U-Net
runs under bf16 autocast: in bf16 its in-sync and off-sync cosines do not separate (see
`Stage.bf16_on_cpu`).
"""

from __future__ import annotations

from typing import Any

import numpy as np
import torch
import torch.nn.functional as F

from synctalk2d.avatar import FPS, Avatar
from synctalk2d.face.crop import mask_lower_face
from synctalk2d.models.checkpoint import load_checkpoint, syncnet_of, trained_stem
from synctalk2d.models.perceptual import PerceptualLoss, load_vgg19
from synctalk2d.models.syncnet import sync_loss
from synctalk2d.models.unet import UNet, UNetConfig
from synctalk2d.progress import console
from synctalk2d.training.config import Splits, TrainConfig
from synctalk2d.training.data import CropCache, WindowDataset, augment, to_chw
from synctalk2d.training.loop import ImageStage, Runtime, StageResult, fit, frozen


class ReferenceMaskedFrames(WindowDataset):
    """Item ``k``: (reference + masked crop of ``frames[k]`` (6, 320, 320), its audio window,
    its crop (3, 320, 320)). Reference and current crop get the same augmentation."""

    def __getitem__(self, item: tuple[int, tuple]) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        index, key = item
        rng = np.random.default_rng(key)
        frame = self.frames[index]
        reference = self.frames[(index + rng.integers(1, len(self.frames))) % len(self.frames)]  # any frame but this one
        reference_crop, target = augment(self.crops.model_crops([reference, frame]), rng, self.jitter, self.flip)
        inputs = np.concatenate([reference_crop, mask_lower_face(target)], axis=-1)
        return to_chw(inputs), self.window(frame), to_chw(target)


class UNetStage(ImageStage):
    name = "unet"
    kind = "unet"
    bf16_on_cpu = True  # 2.5x faster steps with AVX512-BF16 (see `setup_runtime`)

    def __init__(self, avatar: Avatar, config: TrainConfig, splits: Splits, runtime: Runtime):
        stage = self.setup(config.unet, config.seed)
        model_config = UNetConfig(feature_type=config.feature_type, width=config.width)
        self.model = UNet(model_config)
        self.model_config = model_config.to_dict()
        stem = trained_stem(avatar.root, "syncnet")
        syncnet = load_checkpoint(stem)  # gated on and used: one record, one set of weights
        self.sync_weight = self._usable_sync_weight(syncnet.state, len(splits.val), runtime)
        self.syncnet = frozen(syncnet_of(syncnet, stem)).to(runtime.device, memory_format=torch.channels_last)
        expert = {"checkpoint": stem.name, "step": syncnet.state.get("step"), "accuracy": syncnet.state.get("val", {}).get("accuracy"),
                  "learned": syncnet.state.get("learned"), "sync_weight": self.sync_weight}  # fmt: skip
        self.extra_config = {"feature_type": config.feature_type, "width": config.width, "syncnet": expert}
        vgg = load_vgg19(config.vgg_weights)
        if vgg is None:
            if runtime.is_main:
                console.print("unet: no VGG19 weights found (torch hub cache or --vgg-weights); training without the perceptual loss", soft_wrap=True)
            self.perceptual = None
        else:
            self.perceptual = frozen(PerceptualLoss(vgg)).to(runtime.device, memory_format=torch.channels_last)
        crops, features = CropCache(avatar.crops_path), avatar.features(config.feature_type)
        self.train_set = ReferenceMaskedFrames(crops, features, config.feature_type, splits.train, stage.jitter, stage.flip)
        self.val_set = ReferenceMaskedFrames(crops, features, config.feature_type, splits.val)

    def _usable_sync_weight(self, state: dict[str, Any], val_frames: int, runtime: Runtime) -> float:
        """The configured sync weight, or 0 when the SyncNet's record (``state`` of the
        checkpoint this stage loads) says its verdict would be noise: it never beat its
        untrained start, it is near chance on its validation frames, or there were too few
        of those for its accuracy to mean anything (see the module docstring). ``val_frames``:
        this avatar's validation block, for records that predate ``val_frames``."""
        accuracy = state.get("val", {}).get("accuracy")
        seconds = state.get("val_frames", val_frames) / FPS
        if state.get("learned") is False or not state.get("step"):  # step 0: kept as best before `learned` existed
            why = "did not learn (its validation loss never beat its untrained start)"
            remedy = "more video, or a longer syncnet stage, fixes this"
        elif accuracy is None:
            why = "has no validation accuracy (its stage has not finished)"
            remedy = "finish the syncnet stage first"
        elif seconds < self.config.min_sync_val_seconds:
            why = (
                f"was validated on {seconds:.1f} s of video (< {self.config.min_sync_val_seconds:g} s), "
                f"too little to tell whether its {accuracy:.0%} accuracy there is more than luck"
            )
            remedy = "more training video fixes this"
        elif accuracy < self.config.min_sync_accuracy:
            why = f"tells in-sync from off-sync pairs in only {accuracy:.0%} of its validation frames (< {self.config.min_sync_accuracy:.0%})"
            remedy = "more video, or a longer syncnet stage, fixes this"
        else:
            return self.config.sync_weight
        if runtime.is_main:
            console.print(
                f"unet: the SyncNet {why}, so its verdict would be noise: training without the sync loss ({remedy})",
                soft_wrap=True,
            )
        return 0.0

    def sync_weight_at(self, step: int) -> float:
        """The sync weight training uses at ``step``: the gated weight, ramped up linearly
        over ``sync_warmup_steps`` (see the module docstring)."""
        return self.sync_weight * min(1.0, step / max(1, self.config.sync_warmup_steps))

    def loss(self, model, batch):
        inputs, windows, target = batch
        predicted = model(inputs, windows)
        self.last_predicted = predicted[:4].detach()  # for `images`: no extra forward pass
        l1 = F.l1_loss(predicted, target)
        with (
            torch.set_grad_enabled(torch.is_grad_enabled() and self.sync_weight > 0),  # logged either way
            torch.autocast(predicted.device.type, enabled=False),  # fp32, as it was trained and gated
        ):
            audio, face = self.syncnet(predicted.float(), windows.float())
            sync, _ = sync_loss(audio, face, torch.ones(len(predicted), device=predicted.device))
        # validation always scores the full objective, so `best` is not biased to early steps
        sync_weight = self.sync_weight_at(self.step) if model.training else self.sync_weight
        loss = l1 + sync_weight * sync
        metrics = {"l1": l1.detach(), "sync": sync.detach(), "sync_weight": torch.tensor(sync_weight)}
        return self.finish_loss(loss, metrics, predicted, target)


def run(avatar: Avatar, config: TrainConfig, splits: Splits, runtime: Runtime, seconds: float | None, show_progress: bool = True) -> StageResult:
    return fit(UNetStage(avatar, config, splits, runtime), avatar, runtime, seconds, show_progress)
