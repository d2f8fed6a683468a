"""HuBERT features: the last hidden state of a pretrained HuBERT, 2 vectors per video frame.

HuBERT's convolutional front end turns 16 kHz audio into one vector per 20 ms (stride 320
samples, each vector seeing 400), i.e. 50 Hz: exactly 2 vectors per 25 fps video frame.
With the large model (1024-d) a 16-frame window is 16 x 2 x 1024 = 32 x 32 x 32 values.

Models are never downloaded: a directory saved with ``save_pretrained`` or a model already
in the Hugging Face cache.
"""

from __future__ import annotations

from collections.abc import Callable
from functools import lru_cache
from pathlib import Path

import numpy as np
import torch

from synctalk2d.avatar import FPS
from synctalk2d.errors import UserError
from synctalk2d.media.audio import SAMPLE_RATE

DEFAULT_MODEL = "facebook/hubert-large-ls960-ft"
VECTORS_PER_FRAME = 2  # 50 Hz features, 25 fps video


@lru_cache(maxsize=1)
def load_hubert(name_or_dir: str | Path = DEFAULT_MODEL, device: str | torch.device = "cpu") -> tuple[torch.nn.Module, Callable | None]:
    """(HubertModel in eval mode on ``device``, its feature extractor or None).

    ``name_or_dir`` is a model directory or a hub name already in the local cache. The last
    model stays loaded, so rendering clip after clip doesn't reload a 1.2 GB model each time.
    """
    from huggingface_hub import constants, snapshot_download

    try:  # an optional extra: only this feature type needs it, and it is large
        from transformers import AutoFeatureExtractor, HubertModel
    except ImportError:
        raise UserError("HuBERT features need the transformers package: pip install 'synctalk2d[hubert]'") from None

    model_dir = Path(name_or_dir).expanduser()
    if not model_dir.is_dir():
        try:
            model_dir = Path(snapshot_download(str(name_or_dir), local_files_only=True))
        except (OSError, ValueError):
            raise UserError(
                f"HuBERT model {name_or_dir} not found: it is neither a directory nor in the Hugging Face cache "
                f"({constants.HF_HUB_CACHE}); download it there once (huggingface-cli download {DEFAULT_MODEL}) "
                "or pass --hubert-model DIR with a model saved by save_pretrained"
            ) from None
    try:
        model = HubertModel.from_pretrained(model_dir, local_files_only=True)
    except OSError as e:
        raise UserError(f"{model_dir} holds no loadable HuBERT model ({e})") from None
    has_extractor = (model_dir / "preprocessor_config.json").is_file()
    extractor = AutoFeatureExtractor.from_pretrained(model_dir, local_files_only=True) if has_extractor else None
    return model.to(device).eval(), extractor


def hubert_features(
    wav16k: np.ndarray,
    num_frames: int,
    model: torch.nn.Module,
    extractor: Callable | None = None,
    chunk_seconds: float = 30.0,
    context_seconds: float = 2.0,
) -> np.ndarray:
    """(num_frames, 2, hidden) float32 last hidden states of ``model`` for 16 kHz mono ``wav16k``.

    The audio is normalised by ``extractor`` (the model's feature extractor) when given,
    else to zero mean and unit variance, once over the whole clip. Missing vectors at the
    end repeat the last one; extra ones are dropped.

    Self-attention memory grows with the square of the length (HuBERT-large on 10 minutes
    in one pass needs tens of GB), so the audio runs through the model in chunks of
    ``chunk_seconds``. Each chunk also sees ``context_seconds`` of audio on both sides
    whose outputs are thrown away, so vectors near a cut still see the audio around them
    (HuBERT's positional convolution alone spans 2.5 s); chunks start on multiples of the
    320-sample stride, so every vector is computed from the same samples as in one pass.
    """
    stride, receptive_field = _conv_geometry(model.config)
    if stride * VECTORS_PER_FRAME * FPS != SAMPLE_RATE:
        raise UserError(f"HuBERT features need a 50 Hz model (convolution stride 320), this one has stride {stride}")
    if extractor is not None:
        wav = extractor(wav16k, sampling_rate=SAMPLE_RATE, return_tensors="np").input_values[0]
    else:
        wav = (wav16k - np.mean(wav16k)) / np.sqrt(np.var(wav16k) + 1e-7)
    wav = np.pad(np.asarray(wav, dtype=np.float32), (0, max(0, receptive_field - len(wav))))
    total = (len(wav) - receptive_field) // stride + 1  # vectors of a single pass
    chunk, context = round(chunk_seconds * SAMPLE_RATE / stride), round(context_seconds * SAMPLE_RATE / stride)
    device = next(model.parameters()).device
    vectors = []
    with torch.inference_mode():
        for start in range(0, total, chunk):
            stop = min(start + chunk, total)
            first, last = max(0, start - context), min(total, stop + context)
            segment = torch.from_numpy(wav[first * stride : (last - 1) * stride + receptive_field])
            hidden = model(segment[None].to(device)).last_hidden_state[0]
            vectors.append(hidden[start - first : stop - first].float().cpu().numpy())
    vectors = np.concatenate(vectors)
    wanted = num_frames * VECTORS_PER_FRAME
    vectors = np.concatenate([vectors[:wanted], np.repeat(vectors[-1:], max(0, wanted - len(vectors)), axis=0)])
    return vectors.reshape(num_frames, VECTORS_PER_FRAME, -1)


def _conv_geometry(config) -> tuple[int, int]:
    """(stride, receptive field) in samples of the convolutional front end: (320, 400)."""
    stride, field = 1, 1
    for kernel, step in zip(config.conv_kernel, config.conv_stride):
        field += (kernel - 1) * stride
        stride *= step
    return stride, field
