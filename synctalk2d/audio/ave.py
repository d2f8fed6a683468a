"""AVE features: the audio encoder's 512-d embedding of each video frame's mel window.

Video frame ``i`` owns the 16 mel frames (0.2 s) starting at ``mel_index(i)``. Near the end
that window would run past the mel, so it is clamped to the last 16 mel frames, as the
reference ``crop_audio_window`` does: the last frames reuse the final 0.2 s of audio.

The encoder only ever sees a few batch sizes (`BATCH_SIZES`; a batch is padded up to the
next one): on a GPU every new input shape makes cuDNN choose, and for some layers compile,
kernels, which took seconds per shape on an H100, and live streaming asks for features of
a different number of frames at almost every audio chunk. `warm_up` meets each size once,
at load time.
"""

from __future__ import annotations

import numpy as np
import torch

from synctalk2d.audio.mel import MAX_ABS_VALUE, N_MELS, mel_index

MEL_WINDOW = 16
BATCH_SIZES = (32, 64, 128, 256)  # the encoder's input shapes: batches are padded up to one of these


def mel_windows(mel: np.ndarray, frame_indices: np.ndarray) -> np.ndarray:
    """(B, 1, 80, 16) mel windows of video frames ``frame_indices`` from ``mel`` (T, 80):
    the encoder's input layout (mel bins as height, time as width)."""
    if len(mel) < MEL_WINDOW:  # audio under 0.2 s: the rest of the window is silence
        mel = np.pad(mel, ((0, MEL_WINDOW - len(mel)), (0, 0)), constant_values=-MAX_ABS_VALUE)
    starts = np.array([min(mel_index(int(i)), len(mel) - MEL_WINDOW) for i in frame_indices], dtype=np.int64)
    windows = mel[starts[:, None] + np.arange(MEL_WINDOW)]  # (B, 16, 80)
    return np.ascontiguousarray(windows.transpose(0, 2, 1)[:, None], dtype=np.float32)


def ave_features(
    mel: np.ndarray,
    num_frames: int,
    encoder: torch.nn.Module,
    device: str | torch.device | None = None,
) -> np.ndarray:
    """(num_frames, 512) float32: ``encoder`` (any module mapping (B, 1, 80, 16) to (B, 512))
    applied to every frame's mel window, in eval mode, on ``device`` (default: the
    encoder's). The encoder's train/eval mode is restored afterwards."""
    device = device or next(encoder.parameters()).device
    was_training = encoder.training
    encoder.eval()
    features = []
    try:
        with torch.inference_mode():
            for start in range(0, num_frames, BATCH_SIZES[-1]):
                windows = mel_windows(mel, np.arange(start, min(start + BATCH_SIZES[-1], num_frames)))
                padded = np.zeros((next(size for size in BATCH_SIZES if size >= len(windows)), *windows.shape[1:]), np.float32)
                padded[: len(windows)] = windows
                features.append(encoder(torch.from_numpy(padded).to(device))[: len(windows)].float().cpu())
    finally:
        encoder.train(was_training)
    return torch.cat(features).numpy()


def warm_up(encoder: torch.nn.Module, device: str | torch.device | None = None) -> None:
    """Run ``encoder`` once at each of `BATCH_SIZES`, so no call pays for kernel selection."""
    for size in BATCH_SIZES:
        ave_features(np.zeros((MEL_WINDOW, N_MELS), np.float32), size, encoder, device)
