import numpy as np
import pytest
import torch

from synctalk2d.training.config import Splits, TrainConfig
from synctalk2d.training.data import KeyedBatchSampler, augment, validation_batches
from synctalk2d.training.loop import sync_metrics


def _take(sampler, n=None):
    batches = []
    for batch in sampler:
        batches.append(batch)
        if n is not None and len(batches) == n:
            break
    return batches


def test_sampler_resumes_with_the_same_batches():
    full = _take(KeyedBatchSampler(10, 3, seed=1, stop=12))
    assert len(full) == 12 and all(len(b) == 3 for b in full), "full batches, padded by wrapping"
    resumed = _take(KeyedBatchSampler(10, 3, seed=1, start=5, stop=12))
    assert resumed == full[5:]
    epoch0 = [i for b in full[:4] for i, _ in b]
    assert set(epoch0) == set(range(10)), "an epoch visits every item"
    assert [i for b in full[4:8] for i, _ in b] != epoch0, "each epoch reshuffles"
    assert len({key for b in full for _, key in b}) == 36, "every sample gets its own randomness"


def test_sampler_shards_like_distributed_sampler():
    ranks = [_take(KeyedBatchSampler(10, 2, seed=0, stop=3, rank=r, world_size=2)) for r in (0, 1)]
    seen = [i for r in ranks for b in r for i, _ in b]
    assert set(seen) == set(range(10)), "two ranks together cover the epoch"
    keys = [k for r in ranks for b in r for _, k in b]
    assert len(set(keys)) == len(keys)


def test_validation_batches_are_fixed():
    assert validation_batches(5, 2, seed=0) == validation_batches(5, 2, seed=0)
    assert sorted(i for b in validation_batches(5, 2, seed=0) for i, _ in b) == [0, 1, 2, 3, 4]


def test_augmentation_is_one_per_pixel_mapping_for_all_images_of_a_sample():
    rng = np.random.default_rng(0)
    reference = rng.integers(0, 256, (320, 320, 3), dtype=np.uint8)
    current = reference.copy()
    current[160:] = rng.integers(0, 256, (160, 320, 3), dtype=np.uint8)  # same face, other mouth
    for seed in range(5):
        out = augment(np.stack([reference, current]), np.random.default_rng(seed), jitter=0.2, flip=0.5)
        assert out.dtype == np.uint8 and out.shape == (2, 320, 320, 3)
        assert np.array_equal(out[0, :160], out[1, :160]), "equal pixels stay equal: same flip, same jitter"
    assert not np.array_equal(out[0], reference)
    assert np.array_equal(augment(reference, rng, jitter=0, flip=0), reference)


def test_jitter_matches_its_definition():
    """brightness b, contrast c, saturation s on [0, 1] pixels: p' = (p - .5)(1 + c) + .5 + b,
    then p'' = grey + (p' - grey)(1 + s), clipped."""
    rng = np.random.default_rng(1)
    image = rng.integers(0, 256, (8, 8, 3), dtype=np.uint8)
    b, c, s = np.random.default_rng(7).uniform(-0.2, 0.2, 3)
    p = (image / 255.0 - 0.5) * (1 + c) + 0.5 + b
    grey = p.mean(-1, keepdims=True)
    expected = np.clip(grey + (p - grey) * (1 + s), 0, 1) * 255
    out = augment(image, np.random.default_rng(7), jitter=0.2, flip=0)
    assert np.abs(out.astype(float) - expected).max() <= 1.0


def test_splits_put_validation_before_the_holdout():
    splits = Splits.of(502, holdout_seconds=2.0, val_fraction=0.1)
    assert (splits.holdout.start, splits.holdout.stop) == (452, 502)
    assert splits.val.stop == 452 and len(splits.val) == 46 and splits.train == range(0, 406)
    assert len(Splits.of(125, 0, 0.1).val) == 20, "validation is never too small for off-sync negatives"


def test_minutes_alone_means_time_decides():
    config = TrainConfig(avatar="x", minutes=5)
    config.override()
    assert config.unet.epochs is None and config.syncnet.max_steps is None
    config = TrainConfig(avatar="x")
    config.override(batch_size=2, max_steps=7)
    assert (config.unet.batch_size, config.audio_encoder.max_steps, config.unet.epochs) == (2, 7, 100)


def test_sync_metrics_uses_far_pairs_of_the_batch_as_negatives():
    frames = torch.tensor([0, 10, 20, 22])
    aligned = torch.eye(4, 512)  # every face matches its own audio only
    loss, metrics = sync_metrics(aligned, aligned, frames, min_offset=5)
    assert metrics["accuracy"] == 1.0 and loss < 0.01
    swapped = aligned[[1, 0, 3, 2]]  # each row holds another frame's audio
    _, metrics = sync_metrics(swapped, aligned, frames, min_offset=5)
    # positives all wrong; of the 10 far pairs only (0, 1) and (1, 0) now match (20/22: too close to count)
    assert metrics["accuracy"] == pytest.approx((0 + 8 / 10) / 2)
    _, metrics = sync_metrics(aligned[:3], aligned[:3], torch.tensor([0, 1, 2]), min_offset=5)
    assert metrics["accuracy"] == 1.0, "no far pair: positives only"
