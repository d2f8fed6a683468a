"""Training configuration: one dataclass per stage plus the run that strings them together.

Each stage's dataclass is saved inside its checkpoints; the run's `TrainConfig` is saved
as ``train.json`` in the avatar directory. Budgets left at ``None`` fall back to the
stage's default epochs unless ``--minutes`` is given, in which case time alone decides.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from pathlib import Path

from synctalk2d.avatar import FPS

CONDITIONINGS = ("mouth", "audio")  # what drives the mouth: predicted lip shapes, or audio features into the U-Net
RENDERERS = ("paste", "unet")  # how mouth conditioning draws the chosen mouth: pasted, or redrawn by the compositor U-Net


@dataclass
class StageConfig:
    """What every stage shares: optimisation, budget, logging and augmentation."""

    batch_size: int = 16
    lr: float = 1e-3
    epochs: int | None = None  # default budget when neither max_steps nor minutes is set
    max_steps: int | None = None
    checkpoint_every: int = 200  # steps between ``latest`` saves (also every 5 minutes)
    eval_every: int = 100  # steps between validations (and ``best`` saves)
    log_every: int = 10  # steps between TensorBoard scalars
    bn_samples: int = 64  # training samples that re-estimate BatchNorm statistics before each validation
    jitter: float = 0.1  # +- brightness/contrast/saturation, the same for all images of a sample
    flip: float = 0.5  # chance of a horizontal flip, the same for all images of a sample


@dataclass
class AudioEncoderStageConfig(StageConfig):
    """Stage ``audio-encoder``: a Wav2Lip-style SyncNet (5 lower faces vs. a mel window)
    trained on the avatar, whose audio half becomes the AVE feature extractor."""

    batch_size: int = 32
    epochs: int | None = 40
    min_offset: int = 5  # negatives pair faces with audio at least this many frames away


@dataclass
class SyncNetStageConfig(StageConfig):
    """Stage ``syncnet``: the lip-sync expert on 16-frame feature windows, later frozen to
    give the U-Net its sync loss."""

    batch_size: int = 32
    epochs: int | None = 40
    min_offset: int = 5


@dataclass
class UNetStageConfig(StageConfig):
    """Stage ``unet``: the generator; loss = L1 + 0.01 * perceptual + 10 * sync."""

    batch_size: int = 8
    lr: float = 1e-3
    epochs: int | None = 100
    perceptual_weight: float = 0.01
    sync_weight: float = 10.0
    sync_warmup_steps: int = 200  # the sync weight ramps up from 0 over these first steps
    min_sync_accuracy: float = 0.6  # below this SyncNet validation accuracy the sync loss is off
    min_sync_val_seconds: float = 10.0  # ... and when that accuracy rests on less validation video
    image_every: int = 200  # steps between predicted-vs-real image grids in TensorBoard


@dataclass
class CompositorStageConfig(StageConfig):
    """Stage ``compositor`` (``--renderer unet``): the U-Net that redraws the target's mouth
    from the reference the picker chose; loss = L1 + pixel-difference L1 (+ 0.01 * perceptual)."""

    batch_size: int = 8
    lr: float = 1e-3
    epochs: int | None = 20
    gradient_weight: float = 1.0  # L1 of pixel differences: edges (lip lines, teeth) as well as colours
    perceptual_weight: float = 0.01
    image_every: int = 200


@dataclass
class MouthStageConfig:
    """Stage ``mouth``: adapting the shipped mouth-motion prior to the avatar (seconds on a CPU)."""

    epochs: int = 30
    lr: float = 5e-4
    batch_size: int = 64
    prior_weight: float = 1e-2  # L2 pull of every weight towards the prior's


@dataclass
class TrainConfig:
    """One ``synctalk2d train`` run (saved as ``train.json``)."""

    avatar: str
    conditioning: str = "mouth"
    renderer: str = "paste"  # mouth conditioning: "unet" also trains stage compositor
    feature_type: str = "ave"
    width: str = "full"
    stage: str | None = None  # run only this stage
    minutes: float | None = None  # whole-run wall-clock budget
    holdout_seconds: float = 0.0  # the clip's last seconds, never trained or validated on
    val_fraction: float = 0.1  # contiguous block at the end of the training frames
    device: str | None = None  # cuda / mps / cpu; None picks the best available
    seed: int = 0
    num_workers: int | None = None  # DataLoader workers; None picks from the CPU count
    audio_encoder_weights: str | None = None
    hubert_model: str | None = None
    wenet_model: str | None = None
    vgg_weights: str | None = None
    mouth_prior: str | None = None  # None: the prior shipped with synctalk2d
    audio_encoder: AudioEncoderStageConfig = field(default_factory=AudioEncoderStageConfig)
    syncnet: SyncNetStageConfig = field(default_factory=SyncNetStageConfig)
    unet: UNetStageConfig = field(default_factory=UNetStageConfig)
    mouth: MouthStageConfig = field(default_factory=MouthStageConfig)
    compositor: CompositorStageConfig = field(default_factory=CompositorStageConfig)

    def stage_names(self) -> list[str]:
        """The stages of this conditioning and feature type, in order."""
        if self.conditioning == "mouth":
            return ["mouth", "compositor"] if self.renderer == "unet" else ["mouth"]
        first = "audio-encoder" if self.feature_type == "ave" else "features"
        return [first, "syncnet", "unet"]

    def stage_config(self, name: str) -> StageConfig | MouthStageConfig:
        stages = {"audio-encoder": self.audio_encoder, "syncnet": self.syncnet, "unet": self.unet, "mouth": self.mouth, "compositor": self.compositor}
        return stages[name]

    def override(self, batch_size: int | None = None, epochs: int | None = None, max_steps: int | None = None, checkpoint_every: int | None = None) -> None:
        """Apply the command line's per-stage options to every stage; with ``minutes`` and
        no ``epochs`` the default epochs no longer apply, so time alone decides."""
        for stage in (self.audio_encoder, self.syncnet, self.unet, self.compositor):
            stage.batch_size = batch_size or stage.batch_size
            stage.max_steps = max_steps or stage.max_steps
            stage.checkpoint_every = checkpoint_every or stage.checkpoint_every
            stage.epochs = epochs if epochs is not None else (None if self.minutes else stage.epochs)


# Share of ``--minutes`` per stage; a stage that finishes early leaves its time to the next.
TIME_SHARES = {"mouth": 0.05, "audio-encoder": 0.20, "features": 0.0, "syncnet": 0.15, "unet": 0.65, "compositor": 0.95}


MIN_VAL_FRAMES = 20  # enough for off-sync negatives inside the validation block


@dataclass(frozen=True)
class Splits:
    """Frame ranges: train, then a contiguous validation block, then the held-out tail."""

    train: range
    val: range
    holdout: range

    @classmethod
    def of(cls, num_frames: int, holdout_seconds: float, val_fraction: float) -> Splits:
        holdout = min(num_frames, int(round(holdout_seconds * FPS)))
        used = num_frames - holdout
        val = max(MIN_VAL_FRAMES, int(math.ceil(used * val_fraction)))
        return cls(range(0, used - val), range(used - val, used), range(used, num_frames))


def resolve_path(value: str | None) -> str | None:
    return str(Path(value).expanduser().resolve()) if value else None
