"""The one training loop every stage runs: device and DDP setup, budgets, mixed precision,
checkpoints, resume, validation, TensorBoard and the progress bar.

A stage (see `Stage`) only says what its model, data and loss are. `fit` does the rest:

- resumes from ``checkpoints/<stage>/latest`` (model, optimizer, scaler, step);
- stops at the step budget or the time budget, whichever comes first, always leaving a
  ``latest`` checkpoint; the step budget is fixed up front, so a killed and resumed run
  ends at the same step as an uninterrupted one (and, thanks to the keyed sampler, sees
  the same batches);
- validates before the first step, every ``eval_every`` steps and at the end, keeping
  ``best`` by validation loss among the trained steps: the untrained step 0 is only the bar
  to beat, never ``best`` itself. A stage that never beats it keeps its last step as
  ``best``, says so loudly and records ``learned: false``, for the stages and loaders after it;
- under ``torchrun`` trains with DistributedDataParallel; only rank 0 validates, logs
  and writes, and rank 0 alone decides when to stop (broadcast), so ranks never disagree.
"""

from __future__ import annotations

import abc
import contextlib
import json
import os
import time
from collections import deque
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import torch
import torch.distributed as dist
from torch.utils.data import Dataset
from torch.utils.tensorboard import SummaryWriter

from synctalk2d.avatar import Avatar
from synctalk2d.device import cpu_has_fast_bf16, pick_device
from synctalk2d.errors import UserError
from synctalk2d.models.checkpoint import load_checkpoint, save_checkpoint, stage_dir
from synctalk2d.models.syncnet import sync_loss
from synctalk2d.progress import console, progress_bar
from synctalk2d.training.config import StageConfig
from synctalk2d.training.data import (
    KeyedBatchSampler,
    make_loader,
    to_device,
    validation_batches,
)

CHECKPOINT_SECONDS = 300.0  # also save ``latest`` this often, whatever the step count


@dataclass
class Runtime:
    """Where training runs: device, mixed precision, and this process's place in DDP."""

    device: torch.device
    amp_dtype: torch.dtype | None = None  # autocast dtype (CUDA; bf16 on CPUs with AVX512-BF16 or AMX), None: fp32
    rank: int = 0
    world_size: int = 1
    num_workers: int = 0
    seed: int = 0

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    @property
    def distributed(self) -> bool:
        return self.world_size > 1

    def autocast(self, stage: Stage) -> contextlib.AbstractContextManager:
        """Mixed precision for ``stage``'s forward passes (on a CPU only if the stage allows it)."""
        if self.amp_dtype is None or (self.device.type == "cpu" and not stage.bf16_on_cpu):
            return contextlib.nullcontext()
        return torch.autocast(device_type=self.device.type, dtype=self.amp_dtype)


def setup_runtime(device: str | None = None, num_workers: int | None = None, seed: int = 0) -> Runtime:
    """Pick the device (CUDA, then MPS, then CPU unless ``device`` says otherwise), join the
    process group when launched by ``torchrun`` (``WORLD_SIZE`` set), and choose mixed
    precision: on CUDA bf16 where the GPU supports it, else fp16 with loss scaling; on a
    CPU with AMX or AVX512-BF16, bf16 (measured: a full-width U-Net step at batch 8 takes
    4.2 s in bf16 + channels_last against 10.6 s in fp32 on this project's 2-core CPU);
    none elsewhere."""
    world_size = int(os.environ.get("WORLD_SIZE", "1"))
    rank = int(os.environ.get("RANK", "0"))
    torch_device = pick_device(device)
    if world_size > 1:
        if not dist.is_initialized():
            dist.init_process_group("nccl" if torch_device.type == "cuda" else "gloo")
    if torch_device.type == "cuda" and torch_device.index is None:  # set_device needs an index
        torch_device = torch.device("cuda", int(os.environ.get("LOCAL_RANK", "0")) if world_size > 1 else torch.cuda.current_device())
    amp = None
    if torch_device.type == "cuda":
        torch.cuda.set_device(torch_device)
        amp = torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float16
    elif torch_device.type == "cpu" and cpu_has_fast_bf16():
        amp = torch.bfloat16
    if num_workers is None:
        # Workers only pay off when they have cores to run on beside the training threads.
        num_workers = min(4, max(0, (os.cpu_count() or 1) // max(1, world_size) - 2))
    return Runtime(torch_device, amp, rank, world_size, num_workers, seed)


class Stage(abc.ABC):
    """One training stage: subclasses set the attributes and implement `loss`. A batch is
    a list of tensors that starts with the model's two inputs (image or faces, audio)."""

    name: str  # "syncnet" ... (directory names under checkpoints/ and runs/)
    kind: str  # model kind recorded in the checkpoint, read by the loaders
    config: StageConfig
    model: torch.nn.Module
    model_config: dict[str, Any]
    train_set: Dataset
    val_set: Dataset
    extra_config: dict[str, Any] = {}  # more for the checkpoint config (feature type, width)
    # bf16 autocast on AMX / AVX512-BF16 CPUs. The sync stages stay fp32: their in-sync and
    # off-sync cosines differ by little early on, and in bf16 they did not separate
    # (talk_b, 24 steps: validation sync accuracy 53 % in bf16, 61 % in fp32). For the same
    # reason the U-Net stage runs its frozen SyncNet in fp32 under any autocast.
    bf16_on_cpu: bool = False
    step: int = 0  # the current training step, kept up to date by the loop (for schedules)

    def setup(self, config: StageConfig, seed: int) -> StageConfig:
        """Keep the stage's ``config`` and seed what the subclass builds next (the model's
        initial weights: the same on every run and every rank). Returns ``config``."""
        self.config = config
        torch.manual_seed(seed)
        return config

    def inputs(self, batch: list[torch.Tensor]) -> list[torch.Tensor]:
        """What the model is called with: the batch's first two tensors (image or faces, audio)."""
        return batch[:2]

    @abc.abstractmethod
    def loss(self, model: torch.nn.Module, batch: list[torch.Tensor]) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        """The loss to minimise and named batch means to log (``loss`` included)."""

    def images(self, batch: list[torch.Tensor]) -> torch.Tensor | None:
        """An optional (3, H, W) image in [0, 1] for TensorBoard, of the batch just trained on."""
        return None

    def checkpoint_config(self) -> dict[str, Any]:
        return {"kind": self.kind, "model": self.model_config, "stage": asdict(self.config), **self.extra_config}


@dataclass
class StageResult:
    name: str
    step: int
    total_steps: int | None
    seconds: float
    stopped_by: str  # "steps" or "time"
    train: dict[str, float] = field(default_factory=dict)
    val: dict[str, float] = field(default_factory=dict)  # at the last step
    best_val: dict[str, float] = field(default_factory=dict)  # of the kept ``best`` checkpoint
    start_val: dict[str, float] = field(default_factory=dict)  # before the first step: what training improved on
    learned: bool = True  # whether a trained step beat ``start_val``'s loss (else ``best`` is the last step)

    def summary(self) -> str:
        parts = [f"{self.name}: {self.step} steps ({self.stopped_by} budget) in {self.seconds:.0f} s"]
        if "loss" in self.train:
            parts.append(f"train loss {self.train['loss']:.4f}")
        parts += _val_parts("val", self.val)
        if self.start_val:
            parts.append("at step 0: " + ", ".join(_val_parts("val", self.start_val)))
        if self.best_val and self.best_val != self.val:
            parts.append("kept best: " + ", ".join(_val_parts("val", self.best_val)))
        if not self.learned:
            parts.append("did not learn (validation never beat step 0)")
        return ", ".join(parts)


_VAL_LABELS = {"loss": "{} loss {:.4f}", "accuracy": "{} sync accuracy {:.1%}", "aperture_r": "{} mouth-opening r {:.3f}"}


def _val_parts(prefix: str, metrics: dict[str, float]) -> list[str]:
    return [_VAL_LABELS[k].format(prefix, v) for k, v in metrics.items() if k in _VAL_LABELS]


def sync_metrics(audio: torch.Tensor, face: torch.Tensor, frames: torch.Tensor, min_offset: int) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
    """The sync stages' loss and accuracy, with every off-sync pair of the batch as a negative.

    Row ``i`` holds the face and the audio of frame ``frames[i]``: the diagonal pairs are
    in sync, and face ``i`` with audio ``j`` is off sync when the two frames are at least
    ``min_offset`` apart (nearer pairs are ambiguous and left out). One forward pass of B
    faces thus gives B positives and up to B(B - 1) negatives, where pairing each face with
    one drawn negative would pay a face forward per negative. Loss: the mean of the BCE
    (on the cosine, `sync_loss`) over the positives and over the negatives; accuracy: the
    balanced share of pairs on the right side of 0.5.
    """
    far = (frames[:, None] - frames[None, :]).abs() >= min_offset
    faces, audios = far.nonzero(as_tuple=True)
    positive_loss, positive = sync_loss(audio, face, torch.ones_like(frames))
    if len(faces) == 0:  # a batch of neighbouring frames: nothing to contrast
        return positive_loss, {"loss": positive_loss.detach(), "accuracy": (positive > 0.5).float().mean()}
    negative_loss, negative = sync_loss(audio[audios], face[faces], torch.zeros_like(faces))
    loss = (positive_loss + negative_loss) / 2
    accuracy = ((positive > 0.5).float().mean() + (negative <= 0.5).float().mean()) / 2
    return loss, {"loss": loss.detach(), "accuracy": accuracy}


def completed_result(avatar_root: Path, stage: str) -> StageResult | None:
    """The result of ``stage`` if its ``latest`` checkpoint says it finished, else None."""
    path = stage_dir(avatar_root, stage) / "latest.json"
    state = json.loads(path.read_text()).get("state", {}) if path.is_file() else {}
    return StageResult(**state["result"]) if state.get("completed") else None


class ImageStage(Stage):
    """A stage whose model draws 320x320 face crops from a reference and a masked crop (the
    U-Net, the compositor): the optional VGG19 perceptual term and the TensorBoard rows."""

    perceptual: torch.nn.Module | None = None
    last_predicted: torch.Tensor  # up to 4 crops of the last batch, set by `loss`

    def finish_loss(
        self, loss: torch.Tensor, metrics: dict[str, torch.Tensor], predicted: torch.Tensor, target: torch.Tensor
    ) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        """``loss`` plus ``perceptual_weight`` * the perceptual loss when there is one, and the metrics to log."""
        if self.perceptual is not None:
            perceptual = self.perceptual(predicted, target)
            loss = loss + self.config.perceptual_weight * perceptual
            metrics["perceptual"] = perceptual.detach()
        return loss, {"loss": loss.detach(), **metrics}

    def images(self, batch: list[torch.Tensor]) -> torch.Tensor:
        """Rows of reference | masked input | predicted | real, for up to 4 samples of the
        last training batch, at half size."""
        inputs, target = batch[0][: len(self.last_predicted)], batch[-1][: len(self.last_predicted)]
        row = torch.cat([inputs[:, :3], inputs[:, 3:], self.last_predicted.float(), target], dim=3)
        grid = torch.cat(list(torch.nn.functional.interpolate(row, scale_factor=0.5, mode="area")), dim=1)
        return grid.clamp(0, 1).cpu()


def frozen(module: torch.nn.Module) -> torch.nn.Module:
    """Eval mode, no parameter gradients: gradients still flow through it to the model trained."""
    for p in module.parameters():
        p.requires_grad_(False)
    return module.eval()


def fit(stage: Stage, avatar: Avatar, runtime: Runtime, seconds: float | None = None, show_progress: bool = True) -> StageResult:
    """Train ``stage`` on ``avatar`` (resuming from its ``latest`` checkpoint) until its
    step budget or ``seconds`` run out."""
    return Trainer(stage, avatar, runtime).fit(seconds, show_progress)


class Trainer:
    """The state of one stage's training: model, optimizer, step, best validation loss."""

    def __init__(self, stage: Stage, avatar: Avatar, runtime: Runtime):
        self.stage, self.runtime, self.config = stage, runtime, stage.config
        self.directory = stage_dir(avatar.root, stage.name)
        self.logdir = avatar.root / "runs" / stage.name
        info = avatar.info
        # channels_last: what oneDNN and cuDNN convolutions run fastest on (no reorders)
        self.model = stage.model.to(runtime.device, memory_format=torch.channels_last).train()
        self.optimizer = torch.optim.Adam([p for p in self.model.parameters() if p.requires_grad], lr=self.config.lr)
        self.scaler = torch.amp.GradScaler("cuda", enabled=runtime.amp_dtype == torch.float16)
        self.started = time.monotonic()
        self.elapsed_before = 0.0  # training seconds of earlier (killed) runs of this stage
        self.resumed_at = 0  # the step this run started from
        self.eval_seconds: float | None = None  # how long the last validation took
        self.step_seconds: float | None = None  # recent wall time per step (data included)
        # Everything in ``state`` goes into the checkpoints; ``avatar`` lets inference refuse
        # a checkpoint copied from another avatar.
        self.state: dict[str, Any] = {
            "step": 0, "best_val": None, "elapsed": 0.0, "completed": False,
            "avatar": {"source": info.source, "created": info.created, "num_frames": info.num_frames},
        }  # fmt: skip
        self.recent: dict[str, deque[float]] = {}

    @property
    def step(self) -> int:
        return self.state["step"]

    def elapsed(self) -> float:
        return self.elapsed_before + time.monotonic() - self.started

    def fit(self, seconds: float | None, show_progress: bool) -> StageResult:
        if (self.directory / "latest.safetensors").is_file():
            self._resume(self.directory / "latest")
        sampler = KeyedBatchSampler(
            len(self.stage.train_set), self.config.batch_size, self.runtime.seed, self.step, None, self.runtime.rank, self.runtime.world_size
        )
        total = self.config.max_steps or (self.config.epochs * sampler.steps_per_epoch if self.config.epochs else None)
        if total is None and seconds is None:
            raise UserError(f"stage {self.stage.name} has no budget: give --epochs, --max-steps or --minutes")
        sampler.stop = total
        deadline = None if seconds is None else self.started + seconds
        train_model = self.model
        if self.runtime.distributed:
            device_ids = [self.runtime.device.index] if self.runtime.device.type == "cuda" else None
            train_model = torch.nn.parallel.DistributedDataParallel(self.model, device_ids=device_ids)
        self.writer = SummaryWriter(str(self.logdir), purge_step=self.step) if self.runtime.is_main else None
        if self.runtime.is_main and self.step == 0:  # the starting point of the val curves, and the bar for `best`
            self.state["start_val"] = self._evaluate()

        stopped_by = "steps"
        val: dict[str, float] = {}
        last_save = time.monotonic()
        loader = make_loader(self.stage.train_set, sampler, self.runtime.num_workers, pin_memory=self.runtime.device.type == "cuda")
        with progress_bar(show_progress and self.runtime.is_main, extra="loss {task.fields[loss]}") as bar:
            task = bar.add_task(self.stage.name, total=total, completed=self.step, loss="-")
            self.clock = {"since": time.perf_counter(), "waited": 0.0, "samples": 0}
            waiting = step_started = time.perf_counter()
            for batch in loader if total is None or self.step < total else ():
                self.clock["waited"] += time.perf_counter() - waiting
                if self.step > self.resumed_at and self._time_is_up(deadline):  # at least one step
                    stopped_by = "time"
                    break
                batch = to_device(batch, self.runtime.device)
                loss = self.train_step(train_model, batch)
                self._time_step(time.perf_counter() - step_started)
                self.clock["samples"] += len(batch[0])
                bar.update(task, advance=1, loss=f"{loss:.4f}")
                if self.runtime.is_main:
                    self._log(batch)
                    if self.step % self.config.eval_every == 0:
                        val = self._evaluate()
                    if self.step % self.config.checkpoint_every == 0 or time.monotonic() - last_save > CHECKPOINT_SECONDS:
                        self._save("latest")
                        last_save = time.monotonic()
                waiting = step_started = time.perf_counter()
            else:
                stopped_by = "steps" if total is not None else "time"

        train = {k: sum(v) / len(v) for k, v in self.recent.items()}
        if self.runtime.is_main and (not val or self.step % self.config.eval_every):
            val = self._evaluate()
        if self.runtime.is_main and not self.state.get("learned"):
            self._keep_last_as_best(val)
        result = StageResult(
            self.stage.name, self.step, total, self.elapsed(), stopped_by, train, val,
            self.state.get("val", {}), self.state.get("start_val", {}), self.state.get("learned", False),
        )  # fmt: skip
        if self.runtime.is_main:
            self.state.update(completed=True, result=asdict(result))
            self._save("latest")
            self.writer.close()
        if self.runtime.distributed:
            dist.barrier()
        return result

    def train_step(self, model: torch.nn.Module, batch: list[torch.Tensor]) -> float:
        self.stage.step = self.step
        with self.runtime.autocast(self.stage):
            loss, metrics = self.stage.loss(model, batch)
        self.optimizer.zero_grad(set_to_none=True)
        self.scaler.scale(loss).backward()
        self.scaler.step(self.optimizer)
        self.scaler.update()
        self.state["step"] += 1
        for k, v in metrics.items():
            self.recent.setdefault(k, deque(maxlen=self.config.log_every)).append(float(v))
        return float(loss.detach())

    def _log(self, batch: list[torch.Tensor]) -> None:
        """Scalars every ``log_every`` steps (means since the last log), images if due.

        ``perf/data_wait_share`` is the share of wall time spent waiting for the
        DataLoader: near 0 means the loader keeps up and the model is the bottleneck."""
        if self.step % self.config.log_every == 0 or self.step == 1:
            for k, values in self.recent.items():
                self.writer.add_scalar(f"train/{k}", sum(values) / len(values), self.step)
            self.writer.add_scalar("train/lr", self.optimizer.param_groups[0]["lr"], self.step)
            seconds = time.perf_counter() - self.clock["since"]
            self.writer.add_scalar("perf/samples_per_second", self.clock["samples"] * self.runtime.world_size / seconds, self.step)
            self.writer.add_scalar("perf/data_wait_share", self.clock["waited"] / seconds, self.step)
            self.clock = {"since": time.perf_counter(), "waited": 0.0, "samples": 0}
        every = getattr(self.config, "image_every", 0)
        if every and self.step % every == 0:
            grid = self.stage.images(batch)
            if grid is not None:
                self.writer.add_image("predicted_vs_real", grid, self.step)

    @torch.no_grad()
    def _calibrate_batchnorm(self) -> None:
        """Re-estimate the BatchNorm running statistics for the current weights ("precise
        BN") from up to ``bn_samples`` training samples.

        Training normalises with batch statistics; eval mode (validation, the frozen
        SyncNet, feature extraction, inference) uses running averages, which trail the
        weights by ~10 steps of momentum. At these learning rates the weights move too far
        in 10 steps, and a lip-sync expert in eval mode can collapse to the same score for
        every pair. A forward pass over fixed batches with a cumulative average fixes that.
        """
        norms = [m for m in self.model.modules() if isinstance(m, torch.nn.modules.batchnorm._BatchNorm)]
        if not norms or not self.config.bn_samples:
            return
        momenta = [m.momentum for m in norms]
        for m in norms:
            m.reset_running_stats()
            m.momentum = None  # cumulative average over the calibration batches
        size = self.config.batch_size
        full = [b for b in validation_batches(len(self.stage.train_set), size, self.runtime.seed) if len(b) == size]  # BN needs > 1 sample
        batches = full[: -(-self.config.bn_samples // size)]
        self.model.train()
        for batch in make_loader(self.stage.train_set, batches, 0):
            with self.runtime.autocast(self.stage):
                self.model(*self.stage.inputs(to_device(batch, self.runtime.device)))
        for m, momentum in zip(norms, momenta):
            m.momentum = momentum

    @torch.no_grad()
    def _evaluate(self) -> dict[str, float]:
        """Means of the stage's metrics over the validation split, in eval mode after
        calibrating BatchNorm; saves ``best`` when the loss beats every earlier validation's,
        step 0's included. Step 0 itself is never saved: an untrained ``best`` would pass
        silently into the loaders, features and sync gate downstream."""
        started = time.monotonic()
        self._calibrate_batchnorm()
        self.model.eval()
        totals: dict[str, float] = {}
        count = 0
        batches = validation_batches(len(self.stage.val_set), self.config.batch_size, self.runtime.seed)
        for batch in make_loader(self.stage.val_set, batches, 0):
            batch = to_device(batch, self.runtime.device)
            with self.runtime.autocast(self.stage):
                _, metrics = self.stage.loss(self.model, batch)
            for k, v in metrics.items():
                totals[k] = totals.get(k, 0.0) + float(v) * len(batch[0])
            count += len(batch[0])
        self.model.train()
        val = {k: v / max(count, 1) for k, v in totals.items()}
        for k, v in val.items():
            self.writer.add_scalar(f"val/{k}", v, self.step)
        self.state["val_frames"] = count  # what the validation figures rest on (the U-Net's sync gate reads it)
        if self.step == 0:
            self.state["best_val"] = val["loss"]
        elif val["loss"] < self.state["best_val"]:
            self.state.update(best_val=val["loss"], val=val, learned=True)
            self._save("best")
        self.eval_seconds = time.monotonic() - started
        return val

    def _keep_last_as_best(self, val: dict[str, float]) -> None:
        """No trained step beat step 0's validation loss: keep the last step as ``best``
        (trained, if no better), say so loudly, and record ``learned: false`` in both
        checkpoints so later stages and gates can see it."""
        start = self.state["start_val"]["loss"]
        console.print(
            f"[bold red]warning:[/bold red] {self.stage.name} did not learn: its validation loss never beat its untrained start "
            f"({start:.4f} at step 0, {val['loss']:.4f} at step {self.step}); keeping step {self.step} as best",
            soft_wrap=True,
        )
        self.state.update(best_val=val["loss"], val=val, learned=False)
        self._save("best")

    def _save(self, name: str) -> None:
        """``latest`` carries the optimizer and loss scale for resuming; ``best`` only the model."""
        self.state["elapsed"] = self.elapsed()
        resumable = name == "latest"
        state = {**self.state, "scaler": self.scaler.state_dict() if resumable and self.scaler.is_enabled() else None}
        save_checkpoint(self.directory / name, self.model, self.stage.checkpoint_config(), self.optimizer if resumable else None, state)

    def _resume(self, stem: Path) -> None:
        checkpoint = load_checkpoint(stem)
        config = self.stage.checkpoint_config()
        if (checkpoint.config.get("kind"), checkpoint.config.get("model")) != (config["kind"], config["model"]):
            raise UserError(
                f"{stem}.safetensors was trained with another model configuration ({checkpoint.config.get('model')}); "
                f"delete {stem.parent} to train this stage again"
            )
        self.model.load_state_dict(checkpoint.weights)
        if checkpoint.optimizer is not None:
            self.optimizer.load_state_dict(checkpoint.optimizer)
        if checkpoint.state.get("scaler") and self.scaler.is_enabled():
            self.scaler.load_state_dict(checkpoint.state["scaler"])
        self.state.update({k: v for k, v in checkpoint.state.items() if k != "scaler"})
        self.elapsed_before = float(self.state["elapsed"])
        self.resumed_at = self.step
        if self.runtime.is_main:
            console.print(f"{self.stage.name}: resuming from step {self.step}", soft_wrap=True)

    def _time_step(self, seconds: float) -> None:
        """Keep a running estimate of one step's wall time (waiting for data included,
        validations and saves not), so the budget check can see the next step coming. The
        first steps (warm-up, allocations) are slower and only seed the estimate."""
        if self.step_seconds is None or self.step - self.resumed_at <= 2:
            self.step_seconds = seconds
        else:
            self.step_seconds = 0.8 * self.step_seconds + 0.2 * seconds

    def _time_is_up(self, deadline: float | None) -> bool:
        """Whether the time budget cannot take one more step plus the final validation.

        The next step is expected to take as long as recent ones (`_time_step`), and the
        final validation as long as the last one (before any, half a step per validation
        batch), so a stage with slow steps stops early rather than overshooting by a step.
        Under DDP rank 0's clock decides for all ranks."""
        step = self.step_seconds or 0.0
        if self.eval_seconds is None:
            batches = -(-len(self.stage.val_set) // self.config.batch_size)
            reserve = batches * step / 2
        else:
            reserve = self.eval_seconds
        stop = deadline is not None and time.monotonic() + step + reserve >= deadline
        if self.runtime.distributed:
            flag = torch.tensor([float(stop)], device=self.runtime.device)
            dist.broadcast(flag, 0)
            stop = bool(flag.item())
        return stop
