"""Stage ``syncnet``: the lip-sync expert the U-Net's sync loss relies on.

`SyncNet` embeds a 320 model crop and the 16-frame audio feature window of the same
frame; it learns from in-sync pairs and from off-sync negatives (a face with the window
of a frame at least ``min_offset`` away, taken within the batch: see `sync_metrics`),
BCE on the cosine. The reference trains on positives only (and never zeroes its
gradients), which lets the embeddings collapse to "everything is in sync"; with
negatives the validation split reports a real sync accuracy.
"""

from __future__ import annotations

import numpy as np
import torch

from synctalk2d.audio.windows import (
    FRAMES_BEFORE,
    FRAMES_PER_WINDOW,
)
from synctalk2d.avatar import Avatar
from synctalk2d.models.syncnet import SyncNet, SyncNetConfig
from synctalk2d.training.config import Splits, TrainConfig
from synctalk2d.training.data import CropCache, WindowDataset, augment, to_chw
from synctalk2d.training.loop import Runtime, Stage, StageResult, fit, sync_metrics


class FaceWindows(WindowDataset):
    """Item ``k``: the crop of frame ``frames[k]`` (3, 320, 320), its audio window and the
    frame index (which pairs of the batch are off-sync)."""

    def __getitem__(self, item: tuple[int, tuple]) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        index, key = item
        frame = self.frames[index]
        face = augment(self.crops.model_crops([frame]), np.random.default_rng(key), self.jitter, self.flip)[0]
        return to_chw(face), self.window(frame), torch.tensor(frame)


class SyncNetStage(Stage):
    name = "syncnet"
    kind = "syncnet"

    def __init__(self, avatar: Avatar, config: TrainConfig, splits: Splits):
        stage = self.setup(config.syncnet, config.seed)
        model_config = SyncNetConfig(feature_type=config.feature_type)
        self.model = SyncNet(model_config)
        self.model_config = model_config.to_dict()
        self.extra_config = {"feature_type": config.feature_type}
        crops, features = CropCache(avatar.crops_path), avatar.features(config.feature_type)
        train, val = (_real_windows(frames, len(features)) for frames in (splits.train, splits.val))
        self.train_set = FaceWindows(crops, features, config.feature_type, train, stage.jitter, stage.flip)
        self.val_set = FaceWindows(crops, features, config.feature_type, val)

    def loss(self, model, batch):
        faces, windows, frames = batch
        audio, face = model(faces, windows)
        return sync_metrics(audio, face, frames, self.config.min_offset)


def _real_windows(frames: range, num_frames: int) -> range:
    """``frames`` without the clip's last 7, whose windows are all the last frame's
    features (the end-of-clip rule): a face there has no audio of its own to match."""
    return range(frames.start, min(frames.stop, num_frames - (FRAMES_PER_WINDOW - FRAMES_BEFORE) + 1))


def run(avatar: Avatar, config: TrainConfig, splits: Splits, runtime: Runtime, seconds: float | None, show_progress: bool = True) -> StageResult:
    return fit(SyncNetStage(avatar, config, splits), avatar, runtime, seconds, show_progress)
