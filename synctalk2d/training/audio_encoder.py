"""Stage ``audio-encoder``: learn the AVE audio encoder from the avatar itself, then write
``features/ave.npy``.

No pretrained AVE weights can be downloaded, so the encoder is trained the way Wav2Lip
trains its lip-sync expert: a `Wav2LipSyncNet` sees 5 consecutive face crops (the model
crop is already Wav2Lip's "lower half": nose to chin) and a 16-frame mel window (0.2 s,
the same 5 video frames: the window of the first face, as in Wav2Lip and as
`audio.ave.mel_windows` cuts it for feature extraction), and learns to tell the window
that belongs to those faces from windows at least ``min_offset`` frames away (BCE on the
cosine of the two embeddings, negatives taken within the batch: see `sync_metrics`).
Its audio half then encodes every frame.

With ``--audio-encoder-weights`` the stage loads those weights instead of training, and
with ``--feature-type hubert|wenet`` `run_features` computes the features from audio.wav.
"""

from __future__ import annotations

from dataclasses import asdict
from pathlib import Path

import cv2
import numpy as np
import torch
import torch.distributed as dist

from synctalk2d.atomic import atomic_path
from synctalk2d.audio.ave import ave_features, mel_windows
from synctalk2d.avatar import Avatar
from synctalk2d.models.audio_encoder import AudioEncoder, load_audio_encoder_weights
from synctalk2d.models.checkpoint import load_audio_encoder, save_checkpoint, stage_dir
from synctalk2d.models.syncnet import Wav2LipSyncNet
from synctalk2d.progress import console
from synctalk2d.training.config import Splits, TrainConfig
from synctalk2d.training.data import CropCache, FrameDataset, augment, to_chw
from synctalk2d.training.loop import Runtime, Stage, StageResult, fit, sync_metrics

GROUP = 5  # faces per sample: a 16-frame mel window lasts 0.2 s = 5 video frames


class FaceGroups(FrameDataset):
    """Item ``k``: the 5 faces from frame ``frames[k]`` stacked on channels (15, h, w), their
    mel window (1, 80, 16) and the start frame (which pairs of the batch are off-sync).
    ``frames`` are the group starts: every frame of the split whose group stays in it."""

    def __init__(self, crops: CropCache, mel: np.ndarray, frames: range, jitter: float = 0.0, flip: float = 0.0):
        super().__init__(crops, range(frames.start, frames.stop - GROUP + 1), jitter=jitter, flip=flip)
        self.mel = mel

    def __getitem__(self, item: tuple[int, tuple]) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        index, key = item
        start = self.frames[index]
        faces = expert_faces(self.crops.model_crops(range(start, start + GROUP)))
        faces = augment(faces, np.random.default_rng(key), self.jitter, self.flip)
        window = mel_windows(self.mel, np.array([start]))[0]
        return to_chw(faces).flatten(0, 1), torch.from_numpy(window), torch.tensor(start)


def expert_faces(faces: np.ndarray) -> np.ndarray:
    """(K, 320, 320, 3) model crops -> (K, h, w, 3) at the expert's ``FACE_SIZE``."""
    height, width = Wav2LipSyncNet.FACE_SIZE
    return np.stack([cv2.resize(face, (width, height), interpolation=cv2.INTER_AREA) for face in faces])


class AudioEncoderStage(Stage):
    name = "audio-encoder"
    kind = "wav2lip_syncnet"

    def __init__(self, avatar: Avatar, config: TrainConfig, splits: Splits):
        stage = self.setup(config.audio_encoder, config.seed)
        self.model = Wav2LipSyncNet()
        self.model_config = {}
        crops, mel = CropCache(avatar.crops_path), avatar.mel()
        self.train_set = FaceGroups(crops, mel, splits.train, stage.jitter, stage.flip)
        self.val_set = FaceGroups(crops, mel, splits.val)

    def loss(self, model, batch):
        faces, windows, frames = batch
        audio, face = model(faces, windows)
        return sync_metrics(audio, face, frames, self.config.min_offset)


def run(avatar: Avatar, config: TrainConfig, splits: Splits, runtime: Runtime, seconds: float | None, show_progress: bool = True) -> StageResult:
    """Train (or load) the encoder, then write ``features/ave.npy`` from its best weights."""
    if config.audio_encoder_weights:
        result = _load_pretrained(avatar, config.audio_encoder_weights, runtime)
    else:
        result = fit(AudioEncoderStage(avatar, config, splits), avatar, runtime, seconds, show_progress)
    if runtime.is_main:
        encoder = load_audio_encoder(avatar.root).to(runtime.device)
        features = ave_features(avatar.mel(), avatar.info.num_frames, encoder, device=runtime.device)
        save_features(avatar.root, "ave", features)
    if runtime.distributed:
        dist.barrier()
    return result


def _load_pretrained(avatar: Avatar, path: str, runtime: Runtime) -> StageResult:
    """Store the given weights as this avatar's encoder (kind ``audio_encoder``), as both
    ``best`` (what the loaders read) and a completed ``latest``."""
    result = StageResult("audio-encoder", 0, 0, 0.0, "pretrained")
    if runtime.is_main:
        encoder = AudioEncoder()
        load_audio_encoder_weights(encoder, path)
        for name in ("best", "latest"):
            config = {"kind": "audio_encoder", "model": {}, "weights": path}
            save_checkpoint(stage_dir(avatar.root, "audio-encoder") / name, encoder, config, state={"completed": True, "result": asdict(result)})
        console.print(f"audio-encoder: using pretrained weights {path}", soft_wrap=True)
    return result


def run_features(avatar: Avatar, config: TrainConfig, splits: Splits, runtime: Runtime, seconds: float | None, show_progress: bool = True) -> StageResult:
    """``features/<hubert|wenet>.npy`` from audio.wav with the pretrained model (HuBERT
    defaults to the one in the Hugging Face cache)."""
    from synctalk2d.audio.features import extract_features
    from synctalk2d.media.audio import load_audio

    if runtime.is_main:
        wav, _ = load_audio(avatar.audio_path)
        features = extract_features(
            config.feature_type, wav, avatar.info.num_frames, hubert_model=config.hubert_model, wenet_model=config.wenet_model, device=runtime.device
        )
        save_features(avatar.root, config.feature_type, features)
    if runtime.distributed:
        dist.barrier()
    return StageResult("features", 0, 0, 0.0, "pretrained")


def save_features(root: Path, feature_type: str, features: np.ndarray) -> Path:
    """Write ``features/<type>.npy`` atomically, so a kill never leaves half an array."""
    path = Avatar(root).features_path(feature_type)
    path.parent.mkdir(exist_ok=True)
    with atomic_path(path) as tmp:
        np.save(tmp, np.asarray(features, dtype=np.float32))
    return path
