"""Data plumbing shared by the stages: the crop cache, sync-safe augmentation, and a
resumable, shardable batch sampler.

Every sample's randomness (augmentation, negative offset, reference frame) comes from a
key ``(seed, epoch, position)`` that the sampler hands out with the index. That makes a
run reproducible regardless of worker count, and a resumed run sees exactly the batches
an uninterrupted one would have seen from that step on.
"""

from __future__ import annotations

import math
from collections.abc import Iterator
from pathlib import Path

import cv2
import numpy as np
import torch
from torch.utils.data import DataLoader, Dataset, Sampler

from synctalk2d.audio.windows import feature_windows, to_model_window
from synctalk2d.face.crop import model_crop

Key = tuple[int, int, int]
VALIDATION_EPOCH = 2**40  # the epoch part of validation keys: never a training epoch


class CropCache:
    """The avatar's ``crops.npy``, memory-mapped on first use in each process: a DataLoader
    worker then opens its own map instead of receiving a pickled copy of the array."""

    def __init__(self, path: str | Path):
        self.path = Path(path)
        self._crops: np.ndarray | None = None

    def __getstate__(self) -> dict:
        return {"path": self.path, "_crops": None}

    @property
    def crops(self) -> np.ndarray:
        if self._crops is None:
            self._crops = np.load(self.path, mmap_mode="r")
        return self._crops

    def model_crops(self, frames: np.ndarray | list[int] | range) -> np.ndarray:
        """(K, 320, 320, 3) uint8 RGB: the centre crops the models see."""
        return model_crop(self.crops[np.asarray(frames)])


class FrameDataset(Dataset):
    """What the stage datasets share: items are frames of one avatar's crop cache, each
    augmented with its own key (see `KeyedBatchSampler`)."""

    def __init__(self, crops: CropCache, frames: range, jitter: float = 0.0, flip: float = 0.0):
        self.crops, self.frames, self.jitter, self.flip = crops, frames, jitter, flip

    def __len__(self) -> int:
        return len(self.frames)


class WindowDataset(FrameDataset):
    """Frames with per-frame audio ``features``, cut into windows by the one window rule."""

    def __init__(self, crops: CropCache, features: np.ndarray, feature_type: str, frames: range, jitter: float = 0.0, flip: float = 0.0):
        super().__init__(crops, frames, jitter, flip)
        self.features, self.feature_type = features, feature_type

    def window(self, frame: int) -> torch.Tensor:
        """The audio window of ``frame`` in the models' shape."""
        return torch.as_tensor(to_model_window(feature_windows(self.features, np.array([frame])), self.feature_type)[0], dtype=torch.float32)


def augment(images: np.ndarray, rng: np.random.Generator, jitter: float, flip: float) -> np.ndarray:
    """Apply one random flip and brightness/contrast/saturation jitter to all ``images``
    ((..., H, W, 3) uint8 RGB).

    Every image of a sample gets the same per-pixel mapping (contrast pivots on mid-grey,
    not on each image's mean), so a target and its masked input stay pixel-identical where
    unmasked, and the audio is never touched, so positives stay in sync. The three jitters
    compose into one affine colour transform, applied by OpenCV with saturation to 0..255.
    """
    if flip and rng.random() < flip:
        images = images[..., ::-1, :]
    if not jitter:
        return np.ascontiguousarray(images)
    brightness, contrast, saturation = rng.uniform(-jitter, jitter, size=3)
    # contrast and brightness: p -> (1 + c) p + offset; saturation: p -> grey + (1 + s)(p - grey)
    colour = (1 + saturation) * np.eye(3) - saturation / 3 * np.ones((3, 3))
    offset = 255 * (0.5 - 0.5 * (1 + contrast) + brightness)  # colour keeps grey levels grey
    matrix = np.hstack([(1 + contrast) * colour, np.full((3, 1), offset)])
    flat = np.ascontiguousarray(images).reshape(-1, images.shape[-2], 3)
    return cv2.transform(flat, matrix).reshape(images.shape)


def to_chw(images: np.ndarray) -> torch.Tensor:
    """(..., H, W, C) uint8 images -> (..., C, H, W) uint8 tensor. Images stay bytes until
    they reach the device (see `to_device`): a quarter of the copying, and the GPU converts."""
    return torch.from_numpy(np.ascontiguousarray(np.moveaxis(images, -1, -3)))


def to_device(batch: list[torch.Tensor], device: torch.device) -> list[torch.Tensor]:
    """Move a batch to ``device``; uint8 tensors are images and become floats in [0, 1];
    4-d tensors go channels-last, like the models (see `Trainer`)."""
    moved = [t.to(device, non_blocking=True) for t in batch]
    moved = [t.float().div_(255) if t.dtype == torch.uint8 else t for t in moved]
    return [t.contiguous(memory_format=torch.channels_last) if t.dim() == 4 else t for t in moved]


class KeyedBatchSampler(Sampler[list[tuple[int, Key]]]):
    """Batches of ``(index, key)`` for training steps ``start`` to ``stop`` (``None``: no end).

    Epoch ``e`` visits a permutation seeded by ``(seed, e)``, padded by wrapping so every
    batch is full, and split across ranks the way `DistributedSampler` splits it, so
    ``world_size`` processes together see each item once per epoch.
    """

    def __init__(self, num_items: int, batch_size: int, seed: int, start: int = 0, stop: int | None = None, rank: int = 0, world_size: int = 1):
        self.num_items, self.batch_size, self.seed = num_items, batch_size, seed
        self.start, self.stop, self.rank, self.world_size = start, stop, rank, world_size

    @property
    def steps_per_epoch(self) -> int:
        return math.ceil(self.num_items / (self.batch_size * self.world_size))

    def __iter__(self) -> Iterator[list[tuple[int, Key]]]:
        step = self.start
        while self.stop is None or step < self.stop:
            epoch, offset = divmod(step, self.steps_per_epoch)
            generator = torch.Generator().manual_seed(self.seed * 100_003 + epoch)
            order = torch.randperm(self.num_items, generator=generator).tolist()
            total = self.steps_per_epoch * self.batch_size * self.world_size
            order = (order * math.ceil(total / self.num_items))[:total]
            shard = order[self.rank :: self.world_size]
            for batch in range(offset, self.steps_per_epoch):
                if self.stop is not None and step >= self.stop:
                    return
                positions = range(batch * self.batch_size, (batch + 1) * self.batch_size)
                yield [(shard[p], (self.seed, epoch, p * self.world_size + self.rank)) for p in positions]
                step += 1


def validation_batches(num_items: int, batch_size: int, seed: int) -> list[list[tuple[int, Key]]]:
    """Every item once, with fixed keys and a fixed shuffled order: each validation sees
    the same batches, and a batch mixes frames from across the split (so it holds
    off-sync pairs for the sync stages)."""
    order = torch.randperm(num_items, generator=torch.Generator().manual_seed(seed)).tolist()
    items = [(i, (seed, VALIDATION_EPOCH, i)) for i in order]
    return [items[i : i + batch_size] for i in range(0, num_items, batch_size)]


def make_loader(dataset: Dataset, batches: Sampler | list, num_workers: int, pin_memory: bool = False) -> DataLoader:
    """A DataLoader over ready-made batches; workers stay up for the whole stage."""
    return DataLoader(
        dataset,
        batch_sampler=batches,
        num_workers=num_workers,
        persistent_workers=num_workers > 0,
        pin_memory=pin_memory,
        prefetch_factor=4 if num_workers else None,
    )
