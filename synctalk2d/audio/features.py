"""Per-video-frame audio features of any type: the one entry point training and rendering use."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

from synctalk2d.audio.ave import ave_features
from synctalk2d.audio.hubert import DEFAULT_MODEL, hubert_features, load_hubert
from synctalk2d.audio.mel import melspectrogram
from synctalk2d.audio.wenet import load_wenet, wenet_features
from synctalk2d.audio.windows import FEATURE_SHAPES, FEATURE_TYPES
from synctalk2d.errors import UserError


def extract_features(
    feature_type: str,
    wav16k: np.ndarray,
    num_frames: int,
    *,
    ave_encoder: torch.nn.Module | None = None,
    hubert_model: str | Path | None = None,
    wenet_model: str | Path | None = None,
    device: str | torch.device = "cpu",
) -> np.ndarray:
    """(num_frames, ...) float32 features of 16 kHz mono ``wav16k`` for a ``num_frames``-frame
    video: (N, 512) for ``ave`` (needs the trained ``ave_encoder``), (N, 2, 1024) for
    ``hubert`` (model directory or cached hub name, default facebook/hubert-large-ls960-ft)
    and (N, 16, 512) for ``wenet`` (path of the ONNX encoder)."""
    if num_frames < 1:
        raise UserError("the audio is empty: there is no video frame to compute features for")
    if feature_type == "ave":
        if ave_encoder is None:
            raise ValueError("ave features need the avatar's trained audio encoder")
        features = ave_features(melspectrogram(wav16k), num_frames, ave_encoder, device=device)
    elif feature_type == "hubert":
        model, extractor = load_hubert(hubert_model or DEFAULT_MODEL, device)
        features = hubert_features(wav16k, num_frames, model, extractor)
    elif feature_type == "wenet":
        if wenet_model is None:
            raise UserError("wenet features need a WeNet encoder exported to ONNX: pass --wenet-model FILE")
        features = wenet_features(wav16k, num_frames, load_wenet(wenet_model))
    else:
        raise UserError(f"unknown feature type {feature_type!r}: use one of {', '.join(FEATURE_TYPES)}")
    if features.shape[1:] != FEATURE_SHAPES[feature_type]:
        raise UserError(
            f"{feature_type} features are {features.shape[1:]} per frame but the models take {FEATURE_SHAPES[feature_type]}"
            + (": use a large HuBERT (1024-d), e.g. facebook/hubert-large-ls960-ft" if feature_type == "hubert" else "")
        )
    return features
