"""Stage ``mouth``: the audio -> lip-shape model, adapted to one avatar from the shipped prior.

The prior (`models/weights/mouth_prior.safetensors`) was trained on many speakers by
`train_prior` (`synctalk2d mouth-prior`). Adapting it to an avatar fine-tunes it on the
avatar's own speech and lip landmarks with an L2 pull towards the prior's weights, so a
few seconds of video cannot drag it far from what it knows about speech. The adapted model
is kept only if it beats the prior on the avatar's validation block (mouth-opening
correlation); otherwise the prior is kept and the run says so.

Some recordings are out of sync (VoxCeleb-style crops, re-encoded demo videos: the picture
trails or leads the sound by 80 ms or more). A model trained on such pairs learns a smeared
mapping, so the prior's pool and each avatar are first realigned where a predictor that
never saw the clip gives clear evidence of an offset (`synctalk2d.timing.av_offset`), and
left as recorded otherwise: the lips' natural lead over the sound is part of what the model
must learn.

Also recorded for rendering: the avatar's mean lip shape (what coefficients are relative
to) and its rest shape (mean of the frames the voice-activity rule calls silent).
"""

from __future__ import annotations

import copy
import time
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import soundfile as sf
import torch

from synctalk2d.audio.speech_features import frame_windows, normalised_mel
from synctalk2d.audio.vad import voice_activity
from synctalk2d.avatar import FPS, Avatar
from synctalk2d.errors import UserError
from synctalk2d.face.landmarks import DEFAULT_LANDMARKS, landmark_model
from synctalk2d.face.lip_shape import aperture, lip_shapes
from synctalk2d.models.checkpoint import load_checkpoint, load_mouth_model, save_checkpoint, stage_dir, trained_stem
from synctalk2d.models.mouth import LinearPredictor, MouthModel, MouthModelConfig, predict_shapes
from synctalk2d.progress import console, progress_bar
from synctalk2d.timing import OffsetEvidence, av_offset, offset_evidence
from synctalk2d.training.config import MouthStageConfig

PRIOR_PATH = Path(__file__).resolve().parent.parent / "models" / "weights" / "mouth_prior.safetensors"
INPUT_NOISE = 0.1  # std of Gaussian noise on the normalised mel during training
FREQUENCY_WARP = 0.12  # prior training stretches each window's mel axis by a random factor within 1 +- this
RIDGE_STRENGTH = 3000.0  # of the linear predictor's ridge regression, on standardised block averages
MIN_REST_FRAMES = 8
CV_FOLDS = 3  # blocks of the avatar that decide whether adaptation helps
MAX_MOTION_GAIN = 2.5  # the most the predicted movement is scaled up to the avatar's own (see `motion_gain`)
OPENING_WEIGHT = 3.0  # loss weight of the first coefficient (the opening) against 1 for the others


@dataclass
class PriorConfig:
    """Training of the speaker-independent prior on a pool of clips."""

    epochs: int = 20
    lr: float = 2e-3
    frequency_warp: float = FREQUENCY_WARP
    ridge_strength: float = RIDGE_STRENGTH
    batch_size: int = 64
    weight_decay: float = 1e-2
    seed: int = 0


@dataclass
class Clip:
    """One talking clip as the mouth model sees it."""

    name: str
    windows: np.ndarray  # (N, WINDOW, 80)
    shapes: np.ndarray  # (N, 40) lip shapes
    speech: np.ndarray  # (N,) voice activity

    @classmethod
    def of(cls, avatar: Avatar, frames: range | None = None) -> Clip:
        wav, _ = sf.read(avatar.audio_path, dtype="float32")
        shapes = lip_shapes(avatar.landmarks(), avatar.boxes())
        windows = frame_windows(normalised_mel(wav), len(shapes))
        speech = voice_activity(wav, len(shapes))
        frames = frames or range(len(shapes))
        return cls(avatar.root.name, windows[frames.start : frames.stop], shapes[frames.start : frames.stop], speech[frames.start : frames.stop])

    def realigned(self, offset: int) -> Clip:
        """The clip with each frame's speech (window, voice activity) paired with the lips
        ``offset`` frames later: a recording whose picture trails its sound by ``offset``
        frames (leads it, when negative), put back in sync. The frames at the ends that lose
        their partner are dropped."""
        if offset == 0:
            return self
        sound, picture = (slice(0, -offset), slice(offset, None)) if offset > 0 else (slice(-offset, None), slice(0, offset))
        return Clip(self.name, self.windows[sound], self.shapes[picture], self.speech[sound])


def aperture_r(model: MouthModel, clip: Clip, mean_shape: np.ndarray) -> float:
    """Correlation of the predicted and the real mouth opening over ``clip``."""
    predicted = predict_shapes(model, clip.windows, mean_shape)
    a, b = aperture(predicted), aperture(clip.shapes)
    return float(np.corrcoef(a, b)[0, 1]) if a.std() > 0 and b.std() > 0 else 0.0


def fit(
    model: torch.nn.Module,
    windows: np.ndarray,
    targets: np.ndarray,
    epochs: int,
    lr: float,
    batch_size: int,
    weight_decay: float = 0.0,
    anchor: MouthModel | None = None,
    anchor_weight: float = 0.0,
    frequency_warp: float = 0.0,
    show_progress: bool = False,
    label: str = "mouth",
) -> float:
    """Train ``model`` (a `MouthModel` or one of its predictors) to map windows to
    coefficient ``targets`` (MSE with the opening weighted up, noise on the input, one-cycle
    learning rate); with ``anchor``, an L2 pull of the weights towards it; with
    ``frequency_warp``, `warp_bands` on every batch.
    Returns the last epoch's mean loss."""
    x, y = torch.from_numpy(windows), torch.from_numpy(targets.astype(np.float32))
    batch_size = min(batch_size, len(x))
    steps_per_epoch = max(1, len(x) // batch_size)
    optimizer = torch.optim.AdamW(model.parameters(), lr, weight_decay=weight_decay)
    schedule = torch.optim.lr_scheduler.OneCycleLR(optimizer, lr, total_steps=epochs * steps_per_epoch)
    anchors = [p.detach().clone() for p in anchor.parameters()] if anchor is not None else []
    weights = torch.ones(y.shape[1])
    weights[0] = OPENING_WEIGHT
    model.train()
    loss_sum = 0.0
    with progress_bar(show_progress) as bar:
        task = bar.add_task(label, total=epochs)
        for _ in range(epochs):
            order, loss_sum = torch.randperm(len(x)), 0.0
            for i in range(steps_per_epoch):
                index = order[i * batch_size : (i + 1) * batch_size]
                batch = x[index] + INPUT_NOISE * torch.randn_like(x[index])
                if frequency_warp:
                    batch = warp_bands(batch, frequency_warp)
                loss = torch.mean((model(batch) - y[index]) ** 2 * weights)
                if anchors:
                    loss = loss + anchor_weight * sum(torch.sum((p - a) ** 2) for p, a in zip(model.parameters(), anchors))
                optimizer.zero_grad(set_to_none=True)
                loss.backward()
                optimizer.step()
                schedule.step()
                loss_sum += loss.item()
            bar.update(task, advance=1)
    model.eval()
    return loss_sum / steps_per_epoch


def warp_bands(windows: torch.Tensor, amount: float) -> torch.Tensor:
    """(B, T, bands) windows, each with its band axis stretched by its own random factor in
    1 +- ``amount`` (linear interpolation, edge band repeated): a longer or shorter vocal
    tract moves every formant by one factor, so this shows the model voices the pool lacks."""
    b, _, bands = windows.shape
    factor = 1 + (2 * torch.rand(b, 1) - 1) * amount
    source = (torch.arange(bands, dtype=torch.float32)[None] * factor).clamp(0, bands - 1)  # (B, bands)
    low = source.floor().long()
    high = (low + 1).clamp(max=bands - 1)
    t = (source - low)[:, None, :]
    take = lambda index: torch.gather(windows, 2, index[:, None, :].expand_as(windows))  # noqa: E731
    return take(low) * (1 - t) + take(high) * t


def ridge_solution(features: np.ndarray, targets: np.ndarray, strength: float) -> tuple[np.ndarray, np.ndarray]:
    """(weight (F, K), bias (K,)) of the ridge regression of ``targets`` on ``features``
    (features standardised for the penalty, then folded into the weights)."""
    mean, std = features.mean(axis=0), features.std(axis=0) + 1e-6
    standard = (features - mean) / std
    target_mean = targets.mean(axis=0)
    solution = np.linalg.solve(standard.T @ standard + strength * np.eye(standard.shape[1]), standard.T @ (targets - target_mean))
    weight = solution / std[:, None]
    return weight, target_mean - mean @ weight


@torch.no_grad()
def fit_ridge(predictor: LinearPredictor, windows: np.ndarray, targets: np.ndarray, strength: float) -> None:
    """Set ``predictor`` to the ridge regression of ``targets`` on its block averages of ``windows``."""
    weight, bias = ridge_solution(predictor.features(torch.from_numpy(windows)).double().numpy(), targets, strength)
    predictor.linear.weight.copy_(torch.from_numpy(weight.T))
    predictor.linear.bias.copy_(torch.from_numpy(bias))


# -- the prior -----------------------------------------------------------------------


def pool_evidence(clips: list[Clip], basis: np.ndarray, model_config: MouthModelConfig, strength: float) -> list[OffsetEvidence]:
    """Each clip's audio-video timing evidence (`timing.offset_evidence`), judged by a ridge
    regression of the mouth opening fitted on all the *other* clips (each clip's opening in
    units of its own std)."""
    if len(clips) < 2:
        return [OffsetEvidence(0, (0, 0), 0.0) for _ in clips]
    blocks = LinearPredictor(model_config)
    features = [blocks.features(torch.from_numpy(c.windows)).double().numpy() for c in clips]
    openings = [(c.shapes - c.shapes.mean(axis=0)) @ basis[0] for c in clips]
    openings = [o / max(o.std(), 1e-6) for o in openings]
    evidence = []
    for i in range(len(clips)):
        others = [j for j in range(len(clips)) if j != i]
        weight, bias = ridge_solution(np.concatenate([features[j] for j in others]), np.concatenate([openings[j] for j in others])[:, None], strength)
        evidence.append(offset_evidence((features[i] @ weight + bias)[:, 0], openings[i]))
    return evidence


def train_prior(
    clips: list[Clip], config: PriorConfig | None = None, model_config: MouthModelConfig | None = None, show_progress: bool = False
) -> tuple[MouthModel, dict[str, int]]:
    """A speaker-independent prior from ``clips``, and the audio-video offset each clip was
    realigned by (`pool_evidence`, where the evidence holds) before training on it: PCA of every clip's lip-shape
    changes (each clip relative to its own mean shape), then both predictors on all clips
    pooled, each clip's coefficients in units of that clip's own std, so that people who
    move their lips a little count as much as those who move them a lot: the linear one in
    closed form, the convolutional one by `fit` with `warp_bands`. The prior's ``scale`` is
    the mean of those stds: the movement it assumes for a speaker it knows nothing of."""
    config, model_config = config or PriorConfig(), model_config or MouthModelConfig()
    torch.manual_seed(config.seed)
    _, _, components = np.linalg.svd(np.concatenate([c.shapes - c.shapes.mean(axis=0) for c in clips]), full_matrices=False)
    basis = components[: model_config.num_coefficients]
    offsets = [e.offset() for e in pool_evidence(clips, basis, model_config, config.ridge_strength)]
    clips = [c.realigned(offset) for c, offset in zip(clips, offsets)]
    changes = [c.shapes - c.shapes.mean(axis=0) for c in clips]
    stds = [np.maximum((d @ basis.T).std(axis=0), 1e-6) for d in changes]
    model = MouthModel(model_config)
    model.basis.copy_(torch.from_numpy(basis))
    model.scale.copy_(torch.from_numpy(np.mean(stds, axis=0)))
    windows = np.concatenate([c.windows for c in clips])
    targets = np.concatenate([(d @ basis.T) / std for d, std in zip(changes, stds)])
    fit_ridge(model.linear, windows, targets, config.ridge_strength)
    fit(
        model.conv,
        windows,
        targets,
        config.epochs,
        config.lr,
        config.batch_size,
        config.weight_decay,
        frequency_warp=config.frequency_warp,
        show_progress=show_progress,
        label="mouth prior",
    )
    return model, {c.name: offset for c, offset in zip(clips, offsets)}


def speaker_scale(model: MouthModel, shapes: np.ndarray, mean_shape: np.ndarray) -> torch.Tensor:
    """Each coefficient's std over one speaker's frames: how much this person moves their lips."""
    coefficients = (shapes - mean_shape) @ model.basis.numpy().T
    return torch.from_numpy(np.maximum(coefficients.std(axis=0), 1e-6).astype(np.float32))


def pool_clips(videos: list[Path], workdir: Path, show_progress: bool = False, landmarks: str = DEFAULT_LANDMARKS) -> list[Clip]:
    """Every video of the pool as a `Clip`, preprocessed into ``workdir/<name>`` with the
    landmark model ``landmarks`` once (later calls reuse it; made again when it was made with
    another model). A video without a usable face or audio is skipped with a message."""
    from synctalk2d.preprocess import preprocess

    model = landmark_model(landmarks)
    clips = []
    for video in videos:
        avatar = Avatar(Path(workdir) / Path(video).stem)
        if not avatar.is_complete() or avatar.info.landmark_model != model:
            try:
                preprocess(video, avatar.root, force=True, show_progress=show_progress, landmarks=landmarks)
            except UserError as e:
                console.print(f"[yellow]skipping {video}: {e}[/yellow]", soft_wrap=True)
                continue
        clips.append(Clip.of(avatar))
    return clips


def build_prior(
    videos: list[Path],
    workdir: Path,
    output: Path = PRIOR_PATH,
    config: PriorConfig | None = None,
    show_progress: bool = True,
    landmarks: str = DEFAULT_LANDMARKS,
) -> MouthModel:
    """`synctalk2d mouth-prior`: preprocess the pool with the landmark model ``landmarks``,
    train the prior on all of it, save it to ``output`` (safetensors + a JSON record of the
    clips, the landmark model and the settings)."""
    config = config or PriorConfig()
    clips = pool_clips(videos, workdir, show_progress, landmarks)
    if not clips:
        raise UserError("none of the given videos could be used to train the mouth prior")
    model, offsets = train_prior(clips, config, show_progress=show_progress)
    record = {
        "clips": [c.name for c in clips],
        "picture_delay_frames": offsets,  # per clip: how far its picture trailed its sound (`av_offset`)
        "frames": int(sum(len(c.shapes) for c in clips)),
        "landmark_model": landmark_model(landmarks),
        "prior_config": asdict(config),
        "note": "speaker-independent audio -> lip-shape prior; see MODEL_CARD.md beside this file",
    }
    output.parent.mkdir(parents=True, exist_ok=True)
    save_checkpoint(output.with_suffix(""), model, {"kind": "mouth", "model": model.config.to_dict()}, state=record)
    return model


def load_prior(path: Path = PRIOR_PATH, with_state: bool = False):
    """The prior at ``path`` (and, with ``with_state``, its recorded clips, settings and landmark model)."""
    if not path.is_file():
        raise UserError(f"the mouth-motion prior {path} is missing; reinstall synctalk2d or run `synctalk2d mouth-prior`")
    model, state = load_mouth_model(path.with_suffix(""))
    return (model, state) if with_state else model


# -- the stage -----------------------------------------------------------------------


def rest_shape_of(clip: Clip) -> np.ndarray:
    """The lips at rest: the mean of the most closed quarter of the frames the voice-activity
    rule calls silent (of all frames, when there are fewer than `MIN_REST_FRAMES` silent
    ones). Only the closed ones, because a short pause is often a breath with the lips apart."""
    silent = clip.shapes[~clip.speech]
    pool = silent if len(silent) >= MIN_REST_FRAMES else clip.shapes
    openings = aperture(pool)
    return pool[openings <= np.percentile(openings, 25)].mean(axis=0)


def motion_gain(model: MouthModel, clip: Clip, mean_shape: np.ndarray) -> float:
    """How much to scale the predicted lip movement so the mouth moves as much as this
    person's does while speaking: the std of the real opening coefficient over the
    predicted one's, on ``clip``'s speech frames, within 1 .. `MAX_MOTION_GAIN`. A
    regression predicts towards the mean where it is unsure (by about its r), so unscaled
    predictions make a mumbling mouth; scaling changes no correlation."""
    speech = clip.speech if clip.speech.sum() >= MIN_REST_FRAMES else np.ones(len(clip.shapes), bool)
    predicted = predict_shapes(model, clip.windows[speech], mean_shape) - mean_shape
    with torch.no_grad():
        wanted, real = (model.coefficients(torch.from_numpy(c.astype(np.float32)))[:, 0].std().item() for c in (predicted, clip.shapes[speech] - mean_shape))
    return float(np.clip(real / max(wanted, 1e-6), 1.0, MAX_MOTION_GAIN))


def adapt(prior: MouthModel, clip: Clip, mean_shape: np.ndarray, stage: MouthStageConfig, show_progress: bool = False) -> tuple[MouthModel, float]:
    """A copy of ``prior`` fine-tuned on ``clip`` (L2 pull towards the prior); and its last loss."""
    adapted = copy.deepcopy(prior)
    targets = adapted.coefficients(torch.from_numpy(clip.shapes - mean_shape)).numpy()
    loss = fit(
        adapted,
        clip.windows,
        targets,
        stage.epochs,
        stage.lr,
        stage.batch_size,
        anchor=prior,
        anchor_weight=stage.prior_weight,
        show_progress=show_progress,
        label="mouth (adapting the prior)",
    )
    return adapted, loss


@dataclass
class Choice:
    model: MouthModel  # the adapted model if it won, else the prior
    learned: bool  # adaptation won
    prior_r: float  # cross-validated mouth-opening r of the prior
    adapted_r: float  # ... and of adaptation
    loss: float | None  # the adapted model's last training loss


def choose(prior: MouthModel, clip: Clip, mean_shape: np.ndarray, stage: MouthStageConfig, show_progress: bool = False) -> Choice:
    """Adaptation on ``clip`` if it beats the prior, decided by cross-validation.

    A short recording's validation block is a second or two, too little to decide on, so
    ``clip`` is cut into `CV_FOLDS` contiguous blocks, each scored by a model adapted on the
    others; the model kept is then adapted on all of them."""
    edges = np.linspace(0, len(clip.shapes), CV_FOLDS + 1).astype(int)
    prior_rs, adapted_rs = [], []
    for a, b in zip(edges[:-1], edges[1:]):
        keep = np.r_[0:a, b : len(clip.shapes)]
        block = Clip(clip.name, clip.windows[a:b], clip.shapes[a:b], clip.speech[a:b])
        rest = Clip(clip.name, clip.windows[keep], clip.shapes[keep], clip.speech[keep])
        prior_rs.append(aperture_r(prior, block, mean_shape))
        adapted_rs.append(aperture_r(adapt(prior, rest, mean_shape, stage)[0], block, mean_shape))
    prior_r, adapted_r = float(np.mean(prior_rs)), float(np.mean(adapted_rs))
    if adapted_r > prior_r:
        model, loss = adapt(prior, clip, mean_shape, stage, show_progress)
        return Choice(model, True, prior_r, adapted_r, loss)
    return Choice(prior, False, prior_r, adapted_r, None)


def run(avatar: Avatar, config, splits, runtime, seconds: float | None, show_progress: bool):
    """Adapt the prior to ``avatar``, keeping the adapted model only if it predicts the
    mouth opening of unseen stretches of the avatar better than the prior does, and save
    it with the avatar's mean and rest lip shapes (`choose`: cross-validated on the frames
    before the held-out tail). The recording is first put back in sync where the prior
    finds its picture trailing or leading its sound (`av_offset`)."""
    from synctalk2d.training.loop import StageResult

    stage: MouthStageConfig = config.mouth
    started = time.monotonic()
    torch.manual_seed(config.seed)
    prior, prior_state = load_prior(Path(config.mouth_prior) if config.mouth_prior else PRIOR_PATH, with_state=True)
    prior_landmarks = prior_state.get("landmark_model")
    if prior_landmarks and prior_landmarks != avatar.info.landmark_model:
        console.print(
            f"[yellow]mouth: this avatar's landmarks come from {avatar.info.landmark_model}, the prior's from {prior_landmarks}; "
            "their lip points differ slightly, so the prior fits less well (preprocess again with the prior's model for the best sync)[/yellow]",
            soft_wrap=True,
        )
    whole = Clip.of(avatar, range(0, splits.val.stop))
    offset = av_offset(aperture(predict_shapes(prior, whole.windows, whole.shapes.mean(axis=0))), aperture(whole.shapes))
    if offset:
        console.print(
            f"mouth: this recording's picture {'trails' if offset > 0 else 'leads'} its sound by {abs(offset) * 1000 / FPS:.0f} ms "
            f"({abs(offset)} frames); training pairs each frame with the sound it was spoken with",
            soft_wrap=True,
        )
    whole = whole.realigned(offset)
    mean_shape = whole.shapes.mean(axis=0)
    rest_shape = rest_shape_of(whole)
    prior.scale.copy_(speaker_scale(prior, whole.shapes, mean_shape))  # this person's amount of movement

    choice = choose(prior, whole, mean_shape, stage, show_progress)
    model, loss, learned, prior_r, adapted_r = choice.model, choice.loss, choice.learned, choice.prior_r, choice.adapted_r
    gain = motion_gain(model, whole, mean_shape)
    if not learned:
        console.print(
            f"[yellow]mouth: adapting to this avatar did not beat the prior on unseen stretches of it "
            f"(cross-validated mouth-opening r {adapted_r:.3f} vs {prior_r:.3f}); keeping the prior[/yellow]",
            soft_wrap=True,
        )
    result = StageResult(
        "mouth",
        stage.epochs,
        stage.epochs,
        time.monotonic() - started,
        "steps",
        train={"loss": loss} if loss is not None else {},
        val={"aperture_r": adapted_r},
        best_val={"aperture_r": max(adapted_r, prior_r)},
        start_val={"aperture_r": prior_r},
    )
    state = {
        "completed": True,
        "result": asdict(result),
        "learned": bool(learned),
        "kept": "adapted" if learned else "prior",
        "mean_shape": mean_shape.tolist(),
        "rest_shape": rest_shape.tolist(),
        "motion_gain": gain,
        "picture_delay_frames": offset,
        "avatar": {"source": avatar.info.source, "created": avatar.info.created, "num_frames": avatar.info.num_frames},
        "stage_config": asdict(stage),
    }
    if runtime.is_main:
        directory = stage_dir(avatar.root, "mouth")
        for name in ("best", "latest"):
            save_checkpoint(directory / name, model, {"kind": "mouth", "model": model.config.to_dict()}, state=state)
    return result


def picture_delay(avatar_root: str | Path) -> int:
    """How many frames the avatar's recorded picture trails its sound (leads it, when
    negative), as stage ``mouth`` found it."""
    return int(load_checkpoint(trained_stem(avatar_root, "mouth")).state.get("picture_delay_frames", 0))
