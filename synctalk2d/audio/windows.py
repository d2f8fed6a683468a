"""The 16-frame audio window: which per-frame features a video frame sees.

The U-Net and SyncNet look at 16 frames of audio features around the frame they render:
8 before it, itself and 7 after, i.e. frames ``[i - 8, i + 8)``. Training and inference
cut windows here and only here, so the model is always fed what it was trained on.

Edges:

* at the start, the missing frames repeat frame 0's features;
* at the end, a window that would run past the last frame is the last frame's features
  16 times over, so the clip ends on a neutral, still mouth instead of a mouth mid-word.

`window_sources` is the whole rule as index arithmetic on ``N`` alone. For streaming it
also says when a frame can be rendered: its window only depends on frames up to
``i + 7`` (or on knowing the audio has ended), so frame ``i`` is ready once frame
``i + 7`` is, with ``N`` = frames known so far, and the last 7 follow at the end.
"""

from __future__ import annotations

import numpy as np

FRAMES_PER_WINDOW = 16
FRAMES_BEFORE = 8

# Per-video-frame feature of each type, and the window shape the models take.
FEATURE_SHAPES = {"ave": (512,), "hubert": (2, 1024), "wenet": (16, 512)}
WINDOW_SHAPES = {"ave": (32, 16, 16), "hubert": (32, 32, 32), "wenet": (256, 16, 32)}
FEATURE_TYPES = tuple(FEATURE_SHAPES)


def window_sources(indices: np.ndarray, num_frames: int) -> np.ndarray:
    """(..., 16) source frame of every window slot, for frames ``indices`` of an
    ``num_frames``-frame clip."""
    indices = np.asarray(indices, dtype=np.int64)
    if num_frames < 1:
        raise ValueError("no frames to cut audio windows from")
    if indices.size and (indices.min() < 0 or indices.max() >= num_frames):
        raise IndexError(f"audio windows of frames {indices.min()}..{indices.max()} requested from {num_frames} frames")
    sources = np.maximum(indices[..., None] + np.arange(-FRAMES_BEFORE, FRAMES_PER_WINDOW - FRAMES_BEFORE), 0)
    runs_past_end = indices + (FRAMES_PER_WINDOW - FRAMES_BEFORE) > num_frames
    sources[runs_past_end] = num_frames - 1
    return sources


def feature_windows(features: np.ndarray, indices: np.ndarray) -> np.ndarray:
    """(B, 16, ...) windows of frames ``indices`` from per-frame ``features`` (N, ...)."""
    return features[window_sources(indices, len(features))]


def feature_window(features: np.ndarray, index: int) -> np.ndarray:
    """(16, ...) window of frame ``index``."""
    return feature_windows(features, np.array([index]))[0]


def to_model_window(window: np.ndarray, feature_type: str) -> np.ndarray:
    """A window (16, ...) or windows (B, 16, ...) in the models' shape, e.g. (B, 32, 16, 16)
    for AVE: the 16 frames' features laid out one after the other, as the reference does."""
    feature_dims = len(FEATURE_SHAPES[feature_type])
    batch_shape = window.shape[: window.ndim - 1 - feature_dims]
    return window.reshape(*batch_shape, *WINDOW_SHAPES[feature_type])
