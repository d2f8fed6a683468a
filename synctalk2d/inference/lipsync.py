"""A trained avatar loaded for rendering: models, audio features, frame generator.

`LipSync` is loaded once and then renders any number of audio clips (offline files, a folder
in batch mode, or live audio in chunks): the expensive parts (models, crop cache) are
shared, and everything per clip flows through `audio_features`, `chunks` and the generator.

Two conditionings, as the avatar was trained (``train --conditioning``):

* ``mouth`` (default): the mouth model predicts a lip shape per frame and the mouth is taken
  from the avatar frame with that shape (`inference.mouth`); "features" are wanted shapes
  and the per-frame conditioning is the reference frame (with the one it crosses from, `inference.picker`);
* ``audio``: the U-Net draws the mouth from audio-feature windows (the reference design).

Mouth conditioning draws the chosen mouth with one of two renderers (``train --renderer``,
overridden per call with ``renderer=``): ``paste`` lays the recorded mouth onto the frame
(`inference.mouth.paste_mouth`); ``unet`` has the avatar's compositor U-Net redraw it
(`CompositorGenerator`).
"""

from __future__ import annotations

import json
import math
import threading
from collections.abc import Iterable, Iterator
from pathlib import Path

import numpy as np
import torch

from synctalk2d.audio.features import extract_features
from synctalk2d.audio.windows import feature_windows, to_model_window
from synctalk2d.avatar import SAMPLES_PER_FRAME, Avatar
from synctalk2d.device import pick_device
from synctalk2d.errors import UserError
from synctalk2d.face.crop import MOUTH_MASK_RECT, align_face, mask_lower_face, model_crop, model_inputs, model_points
from synctalk2d.inference.generator import LIVE_FRAME_CACHE_MB, CompositorGenerator, FrameGenerator, MouthGenerator
from synctalk2d.inference.mouth import MouthConditioning, ReferencePlan
from synctalk2d.inference.runtime import UNetRunner, resolve
from synctalk2d.media.audio import fit_length
from synctalk2d.models.checkpoint import (
    load_audio_encoder,
    load_checkpoint,
    load_compositor,
    load_unet,
    retrain_hint,
    trained_stem,
)
from synctalk2d.models.config import check_choice
from synctalk2d.progress import console
from synctalk2d.training.config import RENDERERS

EXPORTED_ONNX = "unet.onnx"  # where `synctalk2d export` writes by default, and `--backend onnx` looks
CALIBRATION_FRAMES = 4  # avatar frames that calibrate int8 and check reduced precision


def frame_count(num_samples: int) -> int:
    """Output frames for ``num_samples`` of 16 kHz audio: ceil(seconds * 25)."""
    return math.ceil(num_samples / SAMPLES_PER_FRAME)


class LipSync:
    """Everything needed to make one avatar speak."""

    def __init__(
        self,
        avatar_dir: str | Path,
        backend: str = "auto",
        precision: str = "auto",
        device: str = "auto",
        batch_size: int = 8,
        renderer: str | None = None,
    ):
        self.avatar = Avatar.open(avatar_dir)
        self.batch_size = batch_size
        self._generators: dict[int | None, FrameGenerator] = {}  # live ones, by width (`generator_at`)
        self._generators_lock = threading.Lock()
        settings = json.loads((self.avatar.root / "train.json").read_text()) if (self.avatar.root / "train.json").is_file() else {}
        self.conditioning = settings.get("conditioning", "audio")  # avatars trained before mouth conditioning existed
        self.renderer = renderer or settings.get("renderer", "paste")
        check_choice("renderer", self.renderer, RENDERERS)
        if self.conditioning == "mouth":
            self._check_matches_avatar("mouth")
            self.feature_type = "mouth"
            self.mouth = MouthConditioning(self.avatar, range(0, settings.get("holdout_frames", [len(self.avatar)])[0]))
            if self.renderer == "unet":
                self.unet = load_compositor(self.avatar.root)
                self._check_matches_avatar("compositor")
                self.runner = self._runner(backend, precision, device)
            self.generator = self._make_generator(None)
            return
        if renderer == "unet":
            raise UserError(f"--renderer unet draws what mouth conditioning chose; {self.avatar.root} was trained with --conditioning audio")
        self.unet = load_unet(self.avatar.root)
        self.feature_type = self.unet.config.feature_type
        self._check_matches_avatar("unet")
        self.runner = self._runner(backend, precision, device)
        self._feature_models = self._load_feature_models()
        self.generator = FrameGenerator(self.avatar, self.runner)

    def _runner(self, backend: str, precision: str, device: str) -> UNetRunner:
        """The U-Net (or compositor) ready to run, its choice of runtime said in one line."""
        self.device = pick_device(device)
        if self.conditioning == "mouth" and backend == "auto":  # the compositor has no onnx export
            backend = "torch"
        backend, precision = resolve(backend, precision, self.device)
        if self.conditioning == "mouth" and backend == "onnx":
            raise UserError("the compositor U-Net runs on torch only: use --backend torch (or auto) with --renderer unet")
        onnx_model = self._exported_onnx() if backend == "onnx" else None
        samples = self._calibration_samples() if precision != "fp32" else None
        runner = UNetRunner.from_model(self.unet, backend=backend, precision=precision, device=self.device, onnx_model=onnx_model, samples=samples)
        console.print(runner.summary, soft_wrap=True, highlight=False)
        return runner

    def generator_at(self, width: int | None) -> FrameGenerator:
        """The live frame generator drawing frames ``width`` pixels wide (None: the avatar's
        size), sharing this avatar's models; the same one for every session of that width,
        so its cache of decoded frames serves them all."""
        if width == self.avatar.info.width:
            width = None
        if width is not None and not 16 <= width <= self.avatar.info.width:
            raise UserError(f"frame width {width} must be between 16 and the avatar's {self.avatar.info.width} pixels")
        with self._generators_lock:  # one per width, shared: its frame cache serves every session
            if width not in self._generators:
                self._generators[width] = self._make_generator(width, LIVE_FRAME_CACHE_MB)
            return self._generators[width]

    def _make_generator(self, width: int | None, cache_mb: int = 0) -> FrameGenerator:
        if self.conditioning == "mouth" and self.renderer == "unet":
            return CompositorGenerator(self.avatar, self.runner, width=width, cache_mb=cache_mb)
        if self.conditioning == "mouth":
            return MouthGenerator(self.avatar, self.mouth.landmarks, width=width, cache_mb=cache_mb)
        return FrameGenerator(self.avatar, self.runner, width=width, cache_mb=cache_mb)

    def _check_matches_avatar(self, stage: str) -> None:
        """A checkpoint copied from another avatar would paste the wrong face: refuse it."""
        stem = trained_stem(self.avatar.root, stage)
        trained_on = load_checkpoint(stem).state.get("avatar")
        info = self.avatar.info
        if trained_on and (trained_on.get("created"), trained_on.get("num_frames")) != (info.created, info.num_frames):
            raise UserError(
                f"the {stage} model in {self.avatar.root} was trained on another avatar "
                f"({trained_on.get('source')}, {trained_on.get('created')}); {retrain_hint(stem)}"
            )

    def _calibration_samples(self) -> tuple[torch.Tensor, np.ndarray]:
        """(images, audio windows) of `CALIBRATION_FRAMES` frames spread over the avatar:
        int8 calibrates on them and reduced precision is checked on them against fp32
        (a fraction of a second per frame, once at load)."""
        indices = np.linspace(0, len(self.avatar) - 1, CALIBRATION_FRAMES).round().astype(int)
        if self.conditioning == "mouth":  # the compositor: each frame drawn from another's mouth, aligned onto it
            faces = model_crop(self.avatar.crops()[indices])
            points = model_points(self.avatar.landmarks()[indices], self.avatar.boxes()[indices])
            references = np.stack([align_face(faces[-1 - k], points[-1 - k], points[k]) for k in range(len(faces))])
            inputs = np.concatenate([references, mask_lower_face(faces, MOUTH_MASK_RECT)], axis=-1)
            return torch.from_numpy(inputs).permute(0, 3, 1, 2).float() / 255, None
        features = self.avatar.features(self.feature_type)
        images = torch.from_numpy(model_inputs(self.avatar.crops()[indices])).permute(0, 3, 1, 2).float() / 255
        return images, self.audio_windows(features, indices)

    def _exported_onnx(self) -> Path | None:
        """``AVATAR/unet.onnx`` from ``synctalk2d export``, if it is newer than the U-Net
        checkpoint; a stale one (the avatar was trained since) is ignored with a warning
        and the checkpoint is exported afresh in memory."""
        path = self.avatar.root / EXPORTED_ONNX
        if not path.is_file():
            return None
        checkpoint = trained_stem(self.avatar.root, "unet").with_suffix(".safetensors")
        if path.stat().st_mtime < checkpoint.stat().st_mtime:
            console.print(f"[yellow]warning:[/yellow] {path} is older than {checkpoint}; ignoring it (run `synctalk2d export` again)", soft_wrap=True)
            return None
        return path

    def _load_feature_models(self) -> dict:
        if self.feature_type == "ave":
            return {"ave_encoder": load_audio_encoder(self.avatar.root).to(self.device)}
        settings = json.loads((self.avatar.root / "train.json").read_text())
        key = {"hubert": "hubert_model", "wenet": "wenet_model"}[self.feature_type]
        if not settings.get(key):
            raise UserError(f"{self.avatar.root}/train.json names no {key} for {self.feature_type} features")
        return {key: settings[key]}

    def audio_features(self, wav: np.ndarray) -> np.ndarray:
        """Per-frame features (N, ...) for 16 kHz mono ``wav``; N = ceil(seconds * 25)."""
        num_frames = frame_count(len(wav))
        padded = fit_length(wav, num_frames * SAMPLES_PER_FRAME)
        if self.conditioning == "mouth":
            return self.mouth.wanted_shapes(padded)
        return extract_features(self.feature_type, padded, num_frames, device=self.device, **self._feature_models)

    def audio_windows(self, features: np.ndarray, indices: np.ndarray) -> np.ndarray:
        """Model-ready audio windows for output frames ``indices`` (the shared window rule)."""
        return to_model_window(feature_windows(features, indices), self.feature_type)

    def chunks(self, features: np.ndarray, schedule: np.ndarray) -> Iterator[tuple[np.ndarray, np.ndarray]]:
        """(source frames, conditioning) per batch, for the generator's ``frames``."""
        if self.conditioning == "mouth":
            plan = ReferencePlan(self.mouth, schedule)
            yield from self._batches([plan.push(features), plan.finish()], schedule)
            return
        for start in range(0, len(schedule), self.batch_size):
            indices = np.arange(start, min(start + self.batch_size, len(schedule)))
            yield schedule[indices], self.audio_windows(features, indices)

    def read_chunks(self, pieces: Iterable[np.ndarray], schedule: np.ndarray) -> Iterator[tuple[np.ndarray, np.ndarray]]:
        """`chunks` of 16 kHz mono audio read in ``pieces`` (`media.audio.read_audio`), for
        output frames drawn on ``schedule``, batch for batch the same. With mouth
        conditioning the lip shapes and references are decided as the audio arrives, so a
        file of any length renders in the memory of a few seconds of it; the audio
        conditioning's feature models see the whole utterance at once (HuBERT and WeNet
        attend over it), so there the audio and its features are held whole."""
        wanted = len(schedule) * SAMPLES_PER_FRAME
        audio = (piece[: max(0, wanted - start)] for piece, start in _with_offsets(pieces))
        if self.conditioning != "mouth":
            yield from self.chunks(self.audio_features(np.concatenate([np.zeros(0, np.float32), *audio])), schedule)
            return
        stream, plan = self.mouth.stream(), ReferencePlan(self.mouth, schedule)

        def planned() -> Iterator[np.ndarray]:
            for piece in audio:
                stream.push(piece)
                yield plan.push(stream.take()[1])
            stream.end()  # pads the last frame with silence, as `audio_features` does
            yield plan.push(stream.take()[1])
            yield plan.finish()

        yield from self._batches(planned(), schedule)

    def _batches(self, rows: Iterable[np.ndarray], schedule: np.ndarray) -> Iterator[tuple[np.ndarray, np.ndarray]]:
        """Reference rows arriving in pieces, as (source frames, rows) batches of `batch_size`."""
        waiting, start = [], 0
        for piece in rows:
            waiting.append(piece)
            if sum(map(len, waiting)) < self.batch_size:
                continue
            ready = np.concatenate(waiting)
            whole = len(ready) - len(ready) % self.batch_size
            for k in range(0, whole, self.batch_size):
                yield schedule[start + k : start + k + self.batch_size], ready[k : k + self.batch_size]
            waiting, start = [ready[whole:]], start + whole
        rest = np.concatenate(waiting) if waiting else np.zeros((0, 3))
        if len(rest):
            yield schedule[start : start + len(rest)], rest


def _with_offsets(pieces: Iterable[np.ndarray]) -> Iterator[tuple[np.ndarray, int]]:
    """Each piece with the number of samples before it."""
    start = 0
    for piece in pieces:
        yield piece, start
        start += len(piece)
