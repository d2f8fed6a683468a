"""wenet features: a WeNet conformer ASR encoder (user-supplied ONNX) run once per video frame.

SyncTalk_2D takes its wenet features from Ultralight-Digital-Human
(``data_utils/wenet_infer.py``): Kaldi fbank of the int16-scaled audio with 0.32 s of
silence before and 0.35 s after; then, for every video frame, the encoder sees a chunk of
67 fbank frames (0.67 s) with zeroed caches, its 4x subsampling gives 16 vectors of 512, and
that (16, 512) block is the frame's feature. A 16-frame window is then 16 x 16 x 512 =
256 x 16 x 32 values. The reference steps 5 fbank frames (50 ms) per chunk because its
wenet videos run at 20 fps; at our 25 fps the step is 4 (40 ms), which keeps chunk ``i``
(audio from 320 ms before frame ``i`` to 365 ms after its start) centred on frame ``i``.

The ONNX graph (a WeNet ``encoder.onnx`` as exported for streaming) must have:

* ``chunk``: float, (1, 67, 80) or (1, 1, 67, 80), the time axis may be dynamic;
* optionally ``offset``: int64 with a fixed shape (fed 100, as the reference does);
* optionally ``att_cache`` and ``cnn_cache``: float with fixed shapes (fed zeros);

and its first output is (1, 16, 512). Each frame runs on its own (the caches are never
carried over), so chunks can't be batched, but they are small.
"""

from __future__ import annotations

from functools import lru_cache
from pathlib import Path

import numpy as np
import onnxruntime as ort

from synctalk2d.avatar import SAMPLES_PER_FRAME
from synctalk2d.errors import UserError
from synctalk2d.media.audio import SAMPLE_RATE, fit_length

N_MELS = 80
FBANK_WINDOW, FBANK_HOP, FBANK_FFT = 400, 160, 512  # 25 ms, 10 ms, next power of two
CHUNK = 67  # fbank frames per encoder call: 16 outputs after 4x subsampling
FBANK_BLOCK = 6000  # fbank frames (a minute) computed at a time, so long audio needs little memory
FBANK_PER_FRAME = SAMPLES_PER_FRAME // FBANK_HOP  # 4
PAD_BEFORE, PAD_AFTER = 32 * FBANK_HOP, 35 * FBANK_HOP
OFFSET = 100
CONSTANT_INPUTS = {"offset": "tensor(int64)", "att_cache": "tensor(float)", "cnn_cache": "tensor(float)"}


def kaldi_fbank(wav16k: np.ndarray) -> np.ndarray:
    """(T, 80) float32 log mel filterbank as Kaldi's ``compute-fbank-feats`` (and
    torchaudio's ``kaldi.fbank``) computes it with dither 0: int16-scaled samples, 25 ms
    frames every 10 ms without edge padding, DC removal, pre-emphasis 0.97, Povey window,
    512-point power spectrum, Kaldi mel triangles from 20 Hz to 8 kHz, natural log."""
    samples = np.asarray(wav16k, dtype=np.float64) * 32768
    if len(samples) < FBANK_WINDOW:
        return np.zeros((0, N_MELS), dtype=np.float32)
    frames = np.lib.stride_tricks.sliding_window_view(samples, FBANK_WINDOW)[::FBANK_HOP]
    return np.concatenate([_log_mel_energies(frames[start : start + FBANK_BLOCK]) for start in range(0, len(frames), FBANK_BLOCK)])


def _log_mel_energies(frames: np.ndarray) -> np.ndarray:
    frames = frames - frames.mean(axis=1, keepdims=True)
    frames = np.concatenate([frames[:, :1] * (1 - 0.97), frames[:, 1:] - 0.97 * frames[:, :-1]], axis=1)
    power = np.abs(np.fft.rfft(frames * _povey_window(), n=FBANK_FFT)) ** 2
    energies = power[:, : FBANK_FFT // 2] @ _kaldi_mel_banks().T
    return np.log(np.maximum(energies, np.finfo(np.float32).eps)).astype(np.float32)


@lru_cache(maxsize=1)
def _povey_window() -> np.ndarray:
    return (0.5 - 0.5 * np.cos(2 * np.pi * np.arange(FBANK_WINDOW) / (FBANK_WINDOW - 1))) ** 0.85


@lru_cache(maxsize=1)
def _kaldi_mel_banks() -> np.ndarray:
    """(80, 256) triangles, linear in Kaldi's mel scale, over FFT bins 0..255 (Nyquist unused)."""

    def mel(hz):
        return 1127.0 * np.log(1.0 + hz / 700.0)

    edges = np.linspace(mel(20.0), mel(SAMPLE_RATE / 2), N_MELS + 2)
    left, centre, right = edges[:-2, None], edges[1:-1, None], edges[2:, None]
    bins = mel(np.arange(FBANK_FFT // 2) * SAMPLE_RATE / FBANK_FFT)
    return np.maximum(0.0, np.minimum((bins - left) / (centre - left), (right - bins) / (right - centre)))


@lru_cache(maxsize=1)
def load_wenet(path: str | Path) -> ort.InferenceSession:
    """An onnxruntime session for the encoder at ``path``, its inputs checked (see module doc).
    The last one stays loaded for the next clip."""
    if not Path(path).is_file():
        raise UserError(f"wenet encoder {path} not found: pass --wenet-model with a WeNet encoder exported to ONNX")
    try:
        session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    except Exception as e:  # onnxruntime raises its own exception types for unreadable graphs
        raise UserError(f"{path} is not a usable ONNX model ({e})") from None
    _check_inputs(session, path)
    return session


def _check_inputs(session: ort.InferenceSession, path: str | Path) -> None:
    args = session.get_inputs()
    if "chunk" not in {arg.name for arg in args} or not all(map(_fits, args)):
        found = ", ".join(f"{arg.name} {arg.type} {arg.shape}" for arg in args)
        raise UserError(
            f"{path} is not a WeNet encoder this tool can run: it takes {found}; expected chunk (float, 1x67x80 "
            "or 1x1x67x80) and optionally offset (int64), att_cache and cnn_cache (float) with fixed shapes"
        )


def _fits(arg: ort.NodeArg) -> bool:
    """Whether one graph input is one the module doc lists (dynamic axes match any size)."""
    if arg.name != "chunk":
        return CONSTANT_INPUTS.get(arg.name) == arg.type and all(isinstance(d, int) for d in arg.shape)
    wanted = (1,) * (len(arg.shape) - 2) + (CHUNK, N_MELS)
    sizes_fit = all(not isinstance(size, int) or size == want for size, want in zip(arg.shape, wanted))
    return arg.type == "tensor(float)" and len(arg.shape) in (3, 4) and sizes_fit


def wenet_features(wav16k: np.ndarray, num_frames: int, session: ort.InferenceSession) -> np.ndarray:
    """(num_frames, 16, 512) float32: the encoder's output for each video frame's chunk.
    The chunks of the last frames see the audio that follows them, or silence."""
    total = PAD_BEFORE + num_frames * SAMPLES_PER_FRAME + PAD_AFTER
    fbank = kaldi_fbank(fit_length(wav16k, total, offset=-PAD_BEFORE))
    inputs = {arg.name: arg for arg in session.get_inputs()}
    chunk_shape = (1,) * (len(inputs.pop("chunk").shape) - 2) + (CHUNK, N_MELS)
    constants = {name: np.full(arg.shape, OFFSET, np.int64) if name == "offset" else np.zeros(arg.shape, np.float32) for name, arg in inputs.items()}
    features = []
    for start in range(0, num_frames * FBANK_PER_FRAME, FBANK_PER_FRAME):
        chunk = fbank[start : start + CHUNK].reshape(chunk_shape)
        features.append(session.run(None, {"chunk": chunk, **constants})[0][0])
    return np.stack(features).astype(np.float32)
