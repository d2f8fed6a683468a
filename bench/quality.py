"""Lip-sync quality of the mouth conditioning, as JSON on stdout.

    python bench/quality.py [--workdir DIR] [--minutes 30] [--landmarks mediapipe|dlib]
                            [--folds N] [--prior-only] [--skip-render] [--skip-mouth]
                            [--tails-only] [--clips NAME...] [--strips DIR] [--compare-paste VARIANT]
                            [--prior-seed N] [picker and paste variants, see --help]

Every opening r is Pearson's r of the mouth opening **at lag 0** against the real frames;
best lags and r at a recording's found delay are diagnostics beside it.

1. ``mouth_model``: the speaker-independent prior scored on speakers it never saw, over
   every speaking clip of ``../shared/data/mouth-pool`` and ``../shared/fixtures``
   (speakers from the pool's ``speakers.tsv``; each fixture is its own speaker): for each
   speaker (``--folds N``: each of N groups of speakers) a prior is trained on all *other*
   speakers (`train_prior`, the same code as `synctalk2d mouth-prior`) and its opening r is
   measured on the held-out clips: as recorded, per clip and per source, and at the clip's
   own audio-video alignment (`cross_fitted_r`: the offset `av_offset` finds on one half
   scores the other half). ``--prior-only`` stops there. ``--prior-seed N`` trains the
   priors with another seed (cached beside the shipped seed's): the
   tails' figures move with the priors' training draw, so compare settings on one draw.
   Per-avatar adaptation is scored on each clip's last 30 % after adapting on its first
   70 % as stage `mouth` does (realigned where the offset rule finds evidence; its evidence
   is reported); on the same tail, the opening of the wanted shapes as rendering settles
   them and of the recorded frames the reference picker takes from the first 70 % for the
   frames it is drawn on (with their best lags, and the picker's fidelity: picked r over
   wanted r; the same choice made as the live stream makes it, frame by frame with no
   look-ahead: its opening r and cuts per second, beside the file's); and the tail's speech
   rendered as `evaluate` does (onto the first 70 %'s frames, mouths from them), with the
   avatars' landmark model run on the rendered and the real tail: the rendered r and its
   best lag on every clip, and how its lips move (`evaluate.Motion`: jumps, 95th-percentile
   change and seams against the clip's whole recording, beside the unchanged frames' and
   the real tail's, and where the jumps fall: on crossings or elsewhere), summarised over
   all clips and for the heads that move most (``--strips DIR``: PNG strips of 30
   consecutive mouths); ``--compare-paste`` draws every tail's plan a second way as well
   (a paired comparison of the drawings). ``release_calibration``: the wanted and picked r for several
   lengths of the lips' release into rest after speech. The shipped prior is scored on
   ``mouth-eval-research/`` (research-only footage it never saw) beside it.
2. ``rendered``: for speaker_20s and mimictalk_german_20s, the default
   ``synctalk2d train --minutes M --holdout-seconds 5`` with a prior that never saw that
   speaker, then `synctalk2d evaluate`: rendered r against the mouth model's own r, silence
   stillness, mouth sharpness, PSNR/SSIM against the unchanged frames. PNG strips of
   generated and real mouths go to ``DIR/<clip>/mouths.png`` for a person to look at.
"""

from __future__ import annotations

import argparse
import copy
import json
import platform
import time
from dataclasses import asdict
from pathlib import Path

import cv2
import numpy as np
import soundfile as sf
import torch
from face_coherence import VARIANTS  # noqa: E402  (bench/, beside this script)
from face_coherence import use as use_variant  # noqa: E402

from synctalk2d.audio.vad import frame_activity, with_lead
from synctalk2d.avatar import FPS, Avatar
from synctalk2d.evaluation.evaluate import Clip as Detected
from synctalk2d.evaluation.evaluate import Motion, evaluate
from synctalk2d.evaluation.metrics import lip_changes, lip_regions, mean_sharpness, mouth_aperture, mouth_box
from synctalk2d.face.landmarks import DEFAULT_LANDMARKS, LANDMARK_MODELS, landmark_detector
from synctalk2d.face.lip_shape import aperture
from synctalk2d.inference import mouth as mouth_module
from synctalk2d.inference import picker as picker_module
from synctalk2d.inference.generator import MouthGenerator
from synctalk2d.inference.mouth import amplify, face_poses, settle, with_wanted
from synctalk2d.inference.picker import Crossings, ReferencePicker
from synctalk2d.inference.schedule import frame_schedule
from synctalk2d.media.writer import VideoWriter
from synctalk2d.models.checkpoint import load_mouth_model, save_checkpoint
from synctalk2d.models.mouth import MouthModel, MouthModelConfig, predict_shapes
from synctalk2d.timing import MAX_AV_OFFSET, MIN_OFFSET_GAIN, av_offset, best_lag, correlation_by_lag, offset_evidence
from synctalk2d.training.config import MouthStageConfig
from synctalk2d.training.mouth import (
    Clip,
    PriorConfig,
    adapt,
    aperture_r,
    choose,
    load_prior,
    motion_gain,
    pool_clips,
    rest_shape_of,
    speaker_scale,
    train_prior,
)
from synctalk2d.training.train import build_config, train

SHARED = Path(__file__).resolve().parents[1].parent / "shared"
POOL = sorted((SHARED / "data" / "mouth-pool").glob("*.mp4")) + [
    SHARED / "fixtures" / f for f in ("talk_a.mp4", "talk_b.mp4", "talk_c.mp4", "talk_d.mp4", "talk_e.mp4", "speaker_20s.mp4")
]
RESEARCH = sorted((SHARED / "data" / "mouth-eval-research").glob("*.mp4"))
RENDERED = ("speaker_20s", "mimictalk_german_20s")
ADAPT_SHARE = 0.7
RELEASES = (0, 4, 8, 12, 16, 25)  # release lengths `release_calibration` tries


def read_speakers(path: Path = SHARED / "data" / "mouth-pool" / "speakers.tsv") -> dict[str, str]:
    """clip name -> speaker id, from the pool's ``speakers.tsv`` (clips of one person share an id)."""
    rows = (line.split("\t") for line in path.read_text().splitlines() if line.strip() and not line.startswith("#"))
    return {clip.strip(): who.strip() for clip, who in rows}


SPEAKERS = read_speakers()
FOLDS = 0  # 0: leave one speaker out; N: speakers dealt into N folds (`--folds`)
SWITCH_COST_SCALE = 1.0  # the picker's cut cost times this (`--switch-cost-scale`; 0: frame by frame)
HOLD_COST_SPEECH: float | None = None  # the picker's cost of holding a mouth in speech instead of the shipped one (`--hold-cost-speech`)
POSE_WEIGHT_SPEECH: float | None = None  # the picker's head-pose weight in speech instead of the shipped one (`--pose-weight-speech`)
CROSSINGS = True  # cuts spread over a few frames (`--no-crossings`: cut)
STRIPS: Path | None = None  # where rendered tails leave PNG strips of consecutive mouths (`--strips`)
STRIP_FRAMES = 30
ONLY: set[str] = set()  # score only these clips (`--clips`; the priors still leave out only their speakers)
PRIOR_SEED = PriorConfig().seed  # the held-out priors' training draw (`--prior-seed`: how much another draw moves the figures)
COMPARE_PASTE: str | None = None  # also render every tail with this paste on the same plan (`--compare-paste`)
LANDMARKS = DEFAULT_LANDMARKS  # the landmark model the pool is preprocessed with (`--landmarks`)
SMALL_SIDE = 256  # `--small-copies`: each named clip again as a SMALL_SIDE-pixel square video around its face
SMALL_COPIES: dict[str, str] = {}  # copy name -> the clip it was made from: scored, never trained on


def speaker(name: str) -> str:
    """The held-out unit of ``name``: its speaker (the fixtures are one speaker each), or the
    fold its speaker is dealt into with ``--folds``."""
    who = SPEAKERS.get(name, name)
    if not FOLDS:
        return who
    ordered = sorted(set(SPEAKERS.values()) | {p.stem for p in POOL if p.stem not in SPEAKERS})
    return f"fold{ordered.index(who) % FOLDS}"


def prior_without(clips: list[Clip], held_out: str) -> torch.nn.Module:
    return train_prior([c for c in clips if speaker(c.name) != held_out], PriorConfig(seed=PRIOR_SEED))[0]


def small_copy(avatar: Avatar, path: Path) -> Path:
    """``avatar``'s recording as a `SMALL_SIDE`-pixel square video, 25 fps, its own audio: the
    square around its face (twice the median crop box, inside the frame) scaled down, so
    the face is as small as in a distant or low-resolution recording. Made once."""
    if path.is_file():
        return path
    boxes = avatar.boxes().astype(np.float32)
    side = min(2 * float(np.median(boxes[:, 2] - boxes[:, 0])), avatar.info.width, avatar.info.height)
    cx, cy = np.median((boxes[:, 0] + boxes[:, 2]) / 2), np.median((boxes[:, 1] + boxes[:, 3]) / 2)
    x1 = int(np.clip(cx - side / 2, 0, avatar.info.width - side))
    y1 = int(np.clip(cy - side / 2, 0, avatar.info.height - side))
    wav, _ = sf.read(avatar.audio_path, dtype="float32")
    path.parent.mkdir(parents=True, exist_ok=True)
    with VideoWriter(path, SMALL_SIDE, SMALL_SIDE, audio=wav, sample_rate=16000) as writer:
        for k in range(len(avatar)):
            region = avatar.frame(k)[y1 : y1 + int(side), x1 : x1 + int(side)]
            writer.write(cv2.resize(region, (SMALL_SIDE, SMALL_SIDE), interpolation=cv2.INTER_AREA))
    return path


def small_faces_summary(per_clip: dict, workdir: Path) -> dict:
    """Each small copy against the clip it was made from (the same frames and speech): how
    well their landmarks agree on the lip opening, frame by frame, and their scores; and
    the pool's own small faces (crop box under 160 px) against the rest."""
    pairs = {}
    for copy_name, name in SMALL_COPIES.items():
        if copy_name not in per_clip or name not in per_clip:
            continue
        small, original = (Clip.of(Avatar(workdir / "pool" / n)) for n in (copy_name, name))
        keys = ("face_px", "prior_r", "tail_wanted_r", "tail_picked_r", "tail_rendered_r", "motion_gain", "tail_wanted_over_real_std")
        pairs[copy_name] = {
            "landmark_agreement_r": float(np.corrcoef(aperture(small.shapes), aperture(original.shapes))[0, 1]),
            **{k: per_clip[copy_name].get(k) for k in keys},
            **{f"original_{k}": per_clip[name].get(k) for k in keys},
        }
    pool = {n: v for n, v in per_clip.items() if n not in SMALL_COPIES}
    small = [n for n, v in pool.items() if v["face_px"] < 160]
    mean = lambda names, key: float(np.mean([np.nan_to_num(pool[n].get(key, np.nan)) for n in names])) if names else None  # noqa: E731
    rest = [n for n in pool if n not in small]
    return {
        "copies": pairs,
        "pool_small_faces": small,
        **{f"{key}_small": mean(small, key) for key in ("prior_r", "tail_wanted_r", "tail_rendered_r")},
        **{f"{key}_rest": mean(rest, key) for key in ("prior_r", "tail_wanted_r", "tail_rendered_r")},
    }


def aligned_r(predicted: np.ndarray, real: np.ndarray, offset: int) -> float:
    """Opening r of ``predicted`` against ``real`` whose picture trails the sound by ``offset`` frames."""
    return correlation_by_lag(real, predicted, abs(offset))[offset]


def cross_fitted_r(model: MouthModel, clip: Clip) -> float:
    """The prior's opening r on ``clip`` at the clip's own audio-video alignment, with no
    peeking: the offset `av_offset` finds on each half of the clip scores the other half."""
    half = len(clip.shapes) // 2
    parts = [Clip(clip.name, clip.windows[s], clip.shapes[s], clip.speech[s]) for s in (slice(0, half), slice(half, None))]
    mean = clip.shapes.mean(axis=0)
    predicted = [aperture(predict_shapes(model, p.windows, mean)) for p in parts]
    real = [aperture(p.shapes) for p in parts]
    offsets = [av_offset(p, r) for p, r in zip(predicted, real)]
    return float(np.mean([aligned_r(predicted[i], real[i], offsets[1 - i]) for i in (0, 1)]))


def tail_split(clip: Clip) -> tuple[Clip, Clip]:
    cut = int(len(clip.shapes) * ADAPT_SHARE)
    part = lambda s: Clip(clip.name, clip.windows[s], clip.shapes[s], clip.speech[s])  # noqa: E731
    return part(slice(0, cut)), part(slice(cut, None))


def rendered_tail(avatar: Avatar, cut: int, plan: np.ndarray, motion: Motion) -> dict:
    """The tail frames ``cut``.. against those frames' audio rendered as `evaluate` does:
    mouths by ``plan`` (`inference.mouth.MouthConditioning.references`) pasted onto the
    frames from 0 on, both measured by the avatar's landmark model. Mouth-opening r by lag
    (positive lag: the render is late), and how the lips of the render, of the frames it is
    drawn on (unchanged) and of the real tail move against the whole recording's
    (`evaluate.Motion`)."""
    boxes = avatar.boxes()
    generator = MouthGenerator(avatar, avatar.landmarks())
    sources = frame_schedule(len(plan), cut, start=0, loop_back=False)
    rendered, unchanged, real = Detected(), Detected(), Detected()
    trackers = [landmark_detector(avatar.info.landmark_model) for _ in range(3)]
    for k, (source, row) in enumerate(zip(sources, plan)):
        rendered.add(generator.composite(int(source), row), boxes[source], trackers[0])
        unchanged.add(avatar.frame(int(source)), boxes[source], trackers[1])
        real.add(avatar.frame(cut + k), boxes[cut + k], trackers[2])
    (rendered_crops, rendered_points), (real_crops, real_points) = rendered.arrays(), real.arrays()
    if STRIPS:
        turning = np.linalg.norm(np.diff(face_poses(avatar.landmarks()[sources]), axis=0), axis=1)  # the frames drawn on turn most
        syllables = np.abs(np.diff(mouth_aperture(real_points)))  # the real lips move fastest
        for what, speed in (("turn", turning), ("syllables", syllables)):
            start = int(np.argmax(np.convolve(speed, np.ones(STRIP_FRAMES), "valid"))) if len(speed) >= STRIP_FRAMES else 0
            strip(rendered_crops, real_crops, real_points, start, STRIPS / f"{avatar.root.name}_{what}.png")
    regions = [(slice(max(0, y1), max(y2, y1 + 8)), slice(max(0, x1), max(x2, x1 + 8))) for x1, y1, x2, y2 in (mouth_box(p) for p in real_points)]
    # where the jumps are: on transitions into, within or out of a crossing, or elsewhere
    jumped = lip_changes(lip_regions(rendered_crops, rendered_points)) > np.percentile(motion.changes, 99)
    crossing = (plan[:-1, 2] < 1) | (plan[1:, 2] < 1)
    return {
        "r_by_lag": correlation_by_lag(mouth_aperture(rendered_points), mouth_aperture(real_points), MAX_AV_OFFSET),
        "rendered": motion(rendered_crops, rendered_points),
        "unchanged": motion(*unchanged.arrays()),
        "real": motion(real_crops, real_points),
        "sharpness_over_real": mean_sharpness(rendered_crops, regions) / mean_sharpness(real_crops, regions),
        "jumps_at_crossings": float(np.sum(jumped & crossing) / max(len(jumped), 1)),  # as a share of all transitions
        "jumps_elsewhere": float(np.sum(jumped & ~crossing) / max(len(jumped), 1)),
    }


def strip(rendered: np.ndarray, real: np.ndarray, real_points: np.ndarray, start: int, path: Path) -> None:
    """`STRIP_FRAMES` consecutive mouths from ``start``, rendered (top) over real (bottom),
    each cropped to the box around the real mouths, as one PNG (two rows of 15 per half)."""
    x1, y1, x2, y2 = np.clip(mouth_box(np.median(real_points[start : start + STRIP_FRAMES], axis=0), margin=0.6), 0, rendered.shape[1])
    width = 96
    tile = lambda crop: cv2.resize(np.ascontiguousarray(crop[y1:y2, x1:x2]), (width, round(width * (y2 - y1) / max(x2 - x1, 1))))  # noqa: E731
    frames = range(start, min(start + STRIP_FRAMES, len(rendered)))
    halves = [list(frames)[i : i + 15] for i in range(0, len(frames), 15)]
    rows = [np.concatenate([tile(images[k]) for k in half], axis=1) for half in halves for images in (rendered, real)]
    rows = [np.pad(r, ((0, 0), (0, rows[0].shape[1] - r.shape[1]), (0, 0))) for r in rows]
    path.parent.mkdir(parents=True, exist_ok=True)
    cv2.imwrite(str(path), cv2.cvtColor(np.concatenate(rows, axis=0), cv2.COLOR_RGB2BGR))


def cuts_per_second(references: np.ndarray) -> float:
    """How often a sequence of references cuts to a frame other than the next or the same one."""
    return float(np.sum(~np.isin(np.diff(references), (0, 1))) * FPS / max(len(references), 1))


def head_motion(avatar: Avatar) -> float:
    """How much the head turns and nods in a recording: the mean frame-to-frame change of
    its pose as the paste sees it (`face_poses`), in the pose's units."""
    return float(np.linalg.norm(np.diff(face_poses(avatar.landmarks()), axis=0), axis=1).mean())


def prior_stem(workdir: Path, held_out: str) -> Path:
    """Where the prior trained without ``held_out`` is cached (another seed's beside it)."""
    seed = "" if PRIOR_SEED == PriorConfig().seed else f"_seed{PRIOR_SEED}"
    return workdir / "priors" / f"loso_without_{held_out}{seed}"


def cached_prior(clips: list[Clip], held_out: str, stem: Path) -> MouthModel:
    """The prior trained without ``held_out``'s clips, trained once per work directory (again
    when the prior's training settings or architecture have changed since)."""
    settings = {
        "held_out_speaker": held_out,
        "clips": sorted(c.name for c in clips),
        "landmark_model": LANDMARK_MODELS[LANDMARKS],  # the pool's lip shapes come from it
        "prior_config": asdict(PriorConfig(seed=PRIOR_SEED)),
        "model": MouthModelConfig().to_dict(),
        "pool_realigned": f"on evidence, min gain {MIN_OFFSET_GAIN}",
    }
    if stem.with_suffix(".safetensors").is_file():
        model, state = load_mouth_model(stem)
        if all(state.get(key) == value for key, value in settings.items()):
            return model
    prior = prior_without(clips, held_out)
    save_checkpoint(stem, prior, {"kind": "mouth", "model": prior.config.to_dict()}, state=settings)
    return prior


def score_prior_only(clips: list[Clip], workdir: Path) -> dict:
    """Part 1's held-out prior alone: opening r at lag 0 as recorded, and at each clip's own
    alignment (cross-fitted), per clip, per source and on average."""
    per_clip = {}
    for held_out in sorted({speaker(c.name) for c in clips}):
        prior = cached_prior(clips, held_out, prior_stem(workdir, held_out))
        for clip in (c for c in clips if speaker(c.name) == held_out):
            per_clip[clip.name] = {"prior_r": aperture_r(prior, clip, clip.shapes.mean(axis=0)), "prior_r_aligned": cross_fitted_r(prior, clip)}
    return {
        "clips": len(per_clip),
        "speakers": len({SPEAKERS.get(n, n) for n in per_clip}),
        "mean_r_leave_one_speaker_out": float(np.mean([v["prior_r"] for v in per_clip.values()])),
        "median_r": float(np.median([v["prior_r"] for v in per_clip.values()])),
        "mean_r_leave_one_speaker_out_aligned": float(np.mean([v["prior_r_aligned"] for v in per_clip.values()])),
        "mean_r_by_source": by_source({n: v["prior_r"] for n, v in per_clip.items()}),
        "per_clip": per_clip,
    }


def timing_calibration(clips: list[Clip], workdir: Path, leads: range = range(0, 5)) -> dict:
    """How early the mouth must start opening before the sound: for each voice-activity lead
    (`audio.vad.with_lead`), the held-out prior's wanted shapes settled as rendering settles
    them, against the real opening of every clip: mean r at lag 0 and the median best lag
    (positive: the wanted mouth is late)."""
    predicted, real, active, rests = {}, {}, {}, {}
    for held_out in sorted({speaker(c.name) for c in clips}):
        prior = cached_prior(clips, held_out, prior_stem(workdir, held_out))
        for clip in (c for c in clips if speaker(c.name) == held_out):
            avatar = Avatar.open(workdir / "pool" / clip.name)
            wav, _ = sf.read(avatar.audio_path, dtype="float32")
            predicted[clip.name] = predict_shapes(prior, clip.windows, clip.shapes.mean(axis=0))
            real[clip.name] = aperture(clip.shapes)
            active[clip.name] = frame_activity(wav, len(clip.shapes))
            rests[clip.name] = rest_shape_of(clip)
    out = {}
    for lead in leads:
        by_lag = {}
        for name in predicted:
            wanted, _ = settle(predicted[name], with_lead(active[name], len(real[name]), lead), rests[name])
            by_lag[name] = correlation_by_lag(aperture(wanted), real[name], MAX_AV_OFFSET)
        out[f"lead_{lead}_frames"] = {
            "mean_r": float(np.mean([b[0] for b in by_lag.values()])),
            "median_best_lag": float(np.median([best_lag(b) for b in by_lag.values()])),
            "mean_best_lag": float(np.mean([best_lag(b) for b in by_lag.values()])),
        }
    return out


def score_mouth_model(clips: list[Clip], workdir: Path, render: bool = True) -> dict:
    stage = MouthStageConfig()
    per_clip = {}
    scored = [c for c in clips if not ONLY or c.name in ONLY]
    trainable = [c for c in clips if c.name not in SMALL_COPIES]
    for held_out in sorted({speaker(c.name) for c in scored}):
        prior = cached_prior(trainable, held_out, prior_stem(workdir, held_out))
        for clip in (c for c in scored if speaker(c.name) == held_out):
            torch.manual_seed(0)  # each clip's adaptation draws the same, whether its prior was cached or not
            own = copy.deepcopy(prior)  # the prior as shipped: the pool's average amount of movement
            prior_r = aperture_r(own, clip, clip.shapes.mean(axis=0))
            prior_r_aligned = cross_fitted_r(own, clip)
            head, tail = tail_split(clip)
            # what stage `mouth` does: realign the head where the prior finds an offset on
            # evidence, then adapt; the tail is scored at lag 0 against its real frames (and,
            # as a diagnostic, at that offset)
            evidence = offset_evidence(aperture(predict_shapes(own, head.windows, head.shapes.mean(axis=0))), aperture(head.shapes))
            offset = evidence.offset()
            head = head.realigned(offset)
            mean = head.shapes.mean(axis=0)
            own.scale.copy_(speaker_scale(own, head.shapes, mean))
            adapted, _ = adapt(own, head, mean, stage)
            chosen = choose(own, head, mean, stage)  # what stage `mouth` keeps
            # what rendering makes of it: shapes settled (rest in silence, smoothed), then the
            # picker's references from the head as the bank; their real opening against the tail's
            rest = rest_shape_of(head)
            gain = motion_gain(chosen.model, head, mean)
            predicted = amplify(predict_shapes(chosen.model, tail.windows, mean), mean, mouth_module.MOTION_REACH * gain)
            wanted, _ = settle(predicted, tail.speech, rest)
            cut = int(len(clip.shapes) * ADAPT_SHARE)
            bank = np.arange(cut)
            avatar = Avatar.open(workdir / "pool" / clip.name)
            poses = face_poses(avatar.landmarks())
            picker = ReferencePicker(chosen.model, mean, rest, bank, clip.shapes[:cut], poses[:cut])
            picker.switch_cost *= SWITCH_COST_SCALE
            picker.pose_weights = (picker.pose_weights[0], POSE_WEIGHT_SPEECH or picker.pose_weights[1])
            picker.hold_cost = picker.hold_cost if HOLD_COST_SPEECH is None else HOLD_COST_SPEECH * float(picker.model.scale[0])
            targets = frame_schedule(len(wanted), cut, start=0, loop_back=False)  # the frames `evaluate` draws on
            references = picker.path(wanted, poses[targets])
            release = release_calibration(predicted, tail, rest, picker, poses[targets], clip.shapes)
            plan = Crossings(bank).plan(references) if CROSSINGS else np.stack([references, references, np.ones(len(references))], axis=1)
            plan = with_wanted(plan, wanted)  # the lips drawn bend towards the wanted shape (`inference.mouth.LIP_REACH`)
            picked = clip.shapes[references]
            live = copy.copy(picker)  # the live stream's choice: each frame with no look-ahead (audio arriving in real time)
            live.previous = None
            streamed = np.array([live(wanted[k : k + 1], poses[targets[k : k + 1]])[0] for k in range(len(wanted))])
            real, speaking = aperture(tail.shapes), tail.speech
            models = {"tail_prior_r": own, "tail_adapted_r": adapted, "tail_stage_r": chosen.model}
            by_lag = {"wanted": correlation_by_lag(aperture(wanted), real, MAX_AV_OFFSET), "picked": correlation_by_lag(aperture(picked), real, MAX_AV_OFFSET)}
            per_clip[clip.name] = {
                "prior_r": prior_r,
                "prior_r_aligned": prior_r_aligned,
                "picture_delay_frames": offset,
                "offset_evidence": {"best_lag": evidence.best, "halves": list(evidence.halves), "gain": evidence.gain},
                **{key: aligned_r(aperture(predict_shapes(m, tail.windows, mean)), real, 0) for key, m in models.items()},
                "tail_stage_r_at_delay": aligned_r(aperture(predict_shapes(chosen.model, tail.windows, mean)), real, offset),
                "stage_kept_adapted": chosen.learned,
                "tail_wanted_r": by_lag["wanted"][0],
                "tail_wanted_best_lag": best_lag(by_lag["wanted"]),
                "tail_picked_r": by_lag["picked"][0],
                "tail_picked_best_lag": best_lag(by_lag["picked"]),
                "picker_fidelity": by_lag["picked"][0] / by_lag["wanted"][0],
                "tail_streamed_r": correlation_by_lag(aperture(clip.shapes[streamed]), real, 0)[0],
                "cuts_per_second": cuts_per_second(references),
                "streamed_cuts_per_second": cuts_per_second(streamed),
                "head_motion": head_motion(avatar),
                "face_px": float(np.median(np.diff(avatar.boxes()[:, ::2], axis=1))),
                "motion_gain": gain,
                "tail_wanted_over_real_std": float(aperture(wanted[speaking]).std() / real[speaking].std()),
                "tail_picked_over_real_std": float(aperture(picked[speaking]).std() / real[speaking].std()),
                "release_calibration": release,
            }
            if render:
                rendered = rendered_tail(avatar, cut, plan, Motion(avatar))
                per_clip[clip.name] |= {
                    "tail_rendered_r": rendered["r_by_lag"][0],
                    "tail_rendered_best_lag": best_lag(rendered["r_by_lag"]),
                    "rendered_over_wanted_r": rendered["r_by_lag"][0] / by_lag["wanted"][0],
                    "sharpness_over_real": rendered["sharpness_over_real"],
                    "jumps_at_crossings": rendered["jumps_at_crossings"],
                    "jumps_elsewhere": rendered["jumps_elsewhere"],
                    **{f"rendered_{k}": v for k, v in rendered["rendered"].items()},
                    **{f"unchanged_{k}": v for k, v in rendered["unchanged"].items()},
                    **{f"real_tail_{k}": v for k, v in rendered["real"].items()},
                }
                if COMPARE_PASTE:  # the same plan drawn the other way: a paired comparison of the pastes
                    drawn = mouth_module.PASTE, mouth_module.LIP_REACH, mouth_module.MOUTH_RESAMPLING
                    use_variant(COMPARE_PASTE)
                    try:
                        other = rendered_tail(avatar, cut, plan, Motion(avatar))
                    finally:
                        mouth_module.PASTE, mouth_module.LIP_REACH, mouth_module.MOUTH_RESAMPLING = drawn
                    per_clip[clip.name] |= {
                        f"tail_rendered_r_{COMPARE_PASTE}": other["r_by_lag"][0],
                        f"sharpness_over_real_{COMPARE_PASTE}": other["sharpness_over_real"],
                        **{f"rendered_{COMPARE_PASTE}_{k}": v for k, v in other["rendered"].items()},
                    }
    small_faces = small_faces_summary(per_clip, workdir) if SMALL_COPIES else None
    copies = {n: per_clip.pop(n) for n in list(per_clip) if n in SMALL_COPIES}  # reported beside the pool, not in its means
    # an r is nan where one side never moves (a tail the voice-activity rule calls silent
    # throughout): such a mouth follows nothing, so it counts as 0; a ratio of stds over no
    # speech frames is left out of its mean
    column = lambda key: float(np.mean([np.nan_to_num(v[key]) if key.endswith("_r") else v[key] for v in per_clip.values()]))  # noqa: E731
    ratio = lambda key: float(np.nanmean([v[key] for v in per_clip.values()]))  # noqa: E731
    return {
        "clips": len(per_clip),
        "speakers": len({SPEAKERS.get(n, n) for n in per_clip}),
        "mean_r_leave_one_speaker_out": column("prior_r"),
        "median_r": float(np.median([v["prior_r"] for v in per_clip.values()])),
        "mean_r_by_source": by_source({n: v["prior_r"] for n, v in per_clip.items()}),
        "mean_r_leave_one_speaker_out_aligned": column("prior_r_aligned"),
        "clips_out_of_sync": sum(v["picture_delay_frames"] != 0 for v in per_clip.values()),
        "tail_mean_r_prior": column("tail_prior_r"),
        "tail_mean_r_adapted": column("tail_adapted_r"),
        "tail_mean_r_stage": column("tail_stage_r"),
        "stage_kept_adapted": sum(v["stage_kept_adapted"] for v in per_clip.values()),
        "tail_mean_r_wanted": column("tail_wanted_r"),
        "tail_mean_r_picked": column("tail_picked_r"),
        "tail_mean_r_streamed": column("tail_streamed_r"),
        "cuts_per_second": column("cuts_per_second"),
        "streamed_cuts_per_second": column("streamed_cuts_per_second"),
        "mean_motion_gain": column("motion_gain"),
        "tail_wanted_over_real_std": ratio("tail_wanted_over_real_std"),
        "tail_picked_over_real_std": ratio("tail_picked_over_real_std"),
        "tail_median_best_lag_wanted": float(np.median([v["tail_wanted_best_lag"] for v in per_clip.values()])),
        "tail_median_best_lag_picked": float(np.median([v["tail_picked_best_lag"] for v in per_clip.values()])),
        "tail_mean_r_rendered": column("tail_rendered_r") if render else None,
        "tail_median_r_rendered": float(np.median([np.nan_to_num(v["tail_rendered_r"]) for v in per_clip.values()])) if render else None,
        "tail_median_best_lag_rendered": float(np.median([v["tail_rendered_best_lag"] for v in per_clip.values()])) if render else None,
        **({f"tail_mean_r_rendered_{COMPARE_PASTE}": column(f"tail_rendered_r_{COMPARE_PASTE}")} if render and COMPARE_PASTE else {}),
        "picker_fidelity": column("tail_picked_r") / column("tail_wanted_r"),
        "release_calibration": {
            frames: {
                kind: float(np.mean([np.nan_to_num(v["release_calibration"][frames][kind]) for v in per_clip.values()])) for kind in ("wanted_r", "picked_r")
            }
            for frames in RELEASES
        },
        **(motion_summary(per_clip) if render else {}),
        "per_clip": per_clip,
        **({"small_faces": small_faces, "small_copies": copies} if SMALL_COPIES else {}),
    }


def release_calibration(predicted: np.ndarray, tail: Clip, rest: np.ndarray, picker: ReferencePicker, poses: np.ndarray, shapes: np.ndarray) -> dict:
    """The tail's wanted and picked opening r at lag 0 for each `RELEASE_FRAMES` (frames
    over which the lips ease into the rest shape after speech; 0: at once)."""
    shipped, result = mouth_module.RELEASE_FRAMES, {}
    real = aperture(tail.shapes)
    try:
        for frames in RELEASES:
            mouth_module.RELEASE_FRAMES = frames
            wanted, _ = settle(predicted, tail.speech, rest)
            picked = shapes[picker.path(wanted, poses)]
            result[frames] = {kind: correlation_by_lag(aperture(x), real, 0)[0] for kind, x in (("wanted_r", wanted), ("picked_r", picked))}
    finally:
        mouth_module.RELEASE_FRAMES = shipped
    return result


def motion_summary(per_clip: dict) -> dict:
    """Jumps, seams and sharpness of the rendered tails: over all clips, and on the clips
    whose heads move most (with speaker_20s, a phone recording with a moving head)."""
    measures = ("jump_rate", "change_p95_over_real", "seam_over_real")
    keys = [f"{who}_{m}" for who in ("rendered", "unchanged", "real_tail") for m in measures] + ["sharpness_over_real", "jumps_at_crossings", "jumps_elsewhere"]
    moving = sorted((n for n in per_clip if n in SPEAKERS), key=lambda n: -per_clip[n]["head_motion"])[:2] + ["speaker_20s"]
    summary = {f"tail_mean_{k}": float(np.nanmean([v[k] for v in per_clip.values()])) for k in keys}
    rendered, wanted = (float(np.mean([np.nan_to_num(v[k]) for v in per_clip.values()])) for k in ("tail_rendered_r", "tail_wanted_r"))
    summary["rendered_fidelity"] = rendered / wanted  # the render's mean r over the wanted shapes' (ratios per clip explode where r ~ 0)
    summary["moving_heads"] = {
        n: {k: per_clip[n][k] for k in keys + ["tail_wanted_r", "tail_rendered_r", "rendered_over_wanted_r", "head_motion"]} for n in moving if n in per_clip
    }
    return summary


def by_source(values: dict[str, float]) -> dict[str, float]:
    """Mean of per-clip values by where the clips come from (the name's first word: grid, pcavs, ...)."""
    groups: dict[str, list[float]] = {}
    for name, value in values.items():
        groups.setdefault(name.split("_")[0], []).append(value)
    return {source: float(np.mean(v)) for source, v in sorted(groups.items())}


def score_research(workdir: Path, landmarks: str) -> dict:
    """The shipped prior (which never saw these clips) on ``mouth-eval-research/``: opening r
    at lag 0 per clip. Research-only footage: scored, never trained on."""
    clips = pool_clips(RESEARCH, workdir / "research", landmarks=landmarks)
    prior = load_prior()
    per_clip = {c.name: aperture_r(prior, c, c.shapes.mean(axis=0)) for c in clips}
    return {"clips": len(per_clip), "mean_r": float(np.mean(list(per_clip.values()))), "per_clip": per_clip}


def mouth_strip(avatar: Avatar, report_dir: Path, video: Path) -> None:
    """Generated (top) over real (bottom) mouths, every 5th held-out frame, as one PNG."""
    import av

    from synctalk2d.evaluation.metrics import mouth_box
    from synctalk2d.face.crop import crop_face
    from synctalk2d.face.lip_shape import crop_coordinates

    boxes, landmarks = avatar.boxes(), avatar.landmarks()
    settings = json.loads((avatar.root / "train.json").read_text())
    start, stop = settings["holdout_frames"]
    with av.open(str(video)) as container:
        generated = [f.to_ndarray(format="rgb24") for f in container.decode(video=0)]
    points = crop_coordinates(landmarks, boxes)
    x1, y1, x2, y2 = np.clip(mouth_box(np.median(points[start:stop], axis=0), margin=0.6), 0, 328)
    rows = [[], []]
    for k in range(0, min(len(generated), stop - start), 5):
        real_index = start + k
        for row, (frame, box) in enumerate(((generated[k], boxes[k]), (avatar.frame(real_index), boxes[real_index]))):
            rows[row].append(cv2.resize(crop_face(frame, box)[y1:y2, x1:x2], (160, round(160 * (y2 - y1) / (x2 - x1)))))
    strip = np.concatenate([np.concatenate(r, axis=1) for r in rows], axis=0)
    cv2.imwrite(str(report_dir / "mouths.png"), cv2.cvtColor(strip, cv2.COLOR_RGB2BGR))


def score_rendered(clips: list[Clip], workdir: Path, minutes: float) -> dict:
    from synctalk2d.inference.lipsync import LipSync
    from synctalk2d.inference.offline import render

    out = {}
    for name in RENDERED:
        video = next(p for p in POOL if p.stem == name)
        root = workdir / "rendered" / name
        prior_path = prior_stem(workdir, speaker(name)).with_suffix(".safetensors")
        cached_prior(clips, speaker(name), prior_path.with_suffix(""))
        if not Avatar(root).is_complete():
            from synctalk2d.preprocess import preprocess

            preprocess(video, root, show_progress=False)
        started = time.monotonic()
        train(build_config(root, conditioning="mouth", minutes=minutes, holdout_seconds=5.0, mouth_prior=str(prior_path)), show_progress=False)
        train_seconds = time.monotonic() - started
        report = evaluate(root, show_progress=False)
        avatar = Avatar.open(root)
        # the held-out tail's own audio rendered as `infer` does, for the PNG strip
        tail_audio = workdir / "rendered" / f"{name}_tail.wav"
        import soundfile as sf

        wav, rate = sf.read(avatar.audio_path, dtype="float32")
        start = report["held_out"]["first_frame"]
        sf.write(tail_audio, wav[start * rate // 25 :], rate)
        render(LipSync(root), tail_audio, root / "tail.mp4", start_frame=0, loop_back=False, show_progress=False)
        mouth_strip(avatar, root, root / "tail.mp4")
        speech, silence = report["speech"], report["silence"]
        model_r = report["mouth_model"]["mouth_aperture_r"]
        out[name] = {
            "train_seconds": train_seconds,
            "mouth_model_r": model_r,
            "rendered_r": speech["generated"]["mouth_aperture_r"],
            "rendered_over_model_r": speech["generated"]["mouth_aperture_r"] / model_r if model_r else None,
            "unchanged_r": speech["unchanged"]["mouth_aperture_r"],
            "best_lag": speech["generated"]["best_lag"],
            "silence_aperture_std": silence["generated"]["mouth_aperture_std"],
            "silence_aperture_std_unchanged": silence["unchanged"]["mouth_aperture_std"],
            "silence_aperture_robust_std": silence["generated"]["mouth_aperture_robust_std"],
            "silence_aperture_robust_std_unchanged": silence["unchanged"]["mouth_aperture_robust_std"],
            "movement_over_real": speech["generated"]["mouth_movement"] / speech["real"]["mouth_movement"],
            "movement_unchanged_over_real": speech["unchanged"]["mouth_movement"] / speech["real"]["mouth_movement"],
            "sharpness_over_real": speech["generated"]["mouth_sharpness"] / speech["real"]["mouth_sharpness"],
            "sharpness_unchanged_over_real": speech["unchanged"]["mouth_sharpness"] / speech["real"]["mouth_sharpness"],
            "mouth_psnr_db": speech["generated"]["mouth_psnr_db"],
            "mouth_psnr_db_unchanged": speech["unchanged"]["mouth_psnr_db"],
            "mouth_ssim": speech["generated"]["mouth_ssim"],
            "mouth_ssim_unchanged": speech["unchanged"]["mouth_ssim"],
            "audio_usage": speech["generated"]["audio_usage"],
            "mouth_png": str(root / "mouths.png"),
        }
    out["mean_rendered_r"] = float(np.mean([out[n]["rendered_r"] for n in RENDERED]))
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--workdir", type=Path, default=Path("bench-quality"))
    parser.add_argument("--minutes", type=float, default=30.0, help="the train budget of the rendered part (default: 30, as a user runs it)")
    parser.add_argument("--skip-mouth", action="store_true")
    parser.add_argument("--skip-render", action="store_true")
    parser.add_argument("--prior-only", action="store_true", help="part 1's held-out prior r alone (no adaptation, picking or rendering)")
    parser.add_argument("--landmarks", default=DEFAULT_LANDMARKS, choices=list(LANDMARK_MODELS), help="the landmark model the pool is preprocessed with")
    parser.add_argument("--folds", type=int, default=0, help="hold out speakers N folds at a time instead of one by one (0: leave one speaker out)")
    parser.add_argument("--clips", nargs="*", help="score only these clips' tails (names, no .mp4); implies --tails-only")
    parser.add_argument("--tails-only", action="store_true", help="part 1 without its timing calibration and research clips, and no part 2: to try a change")
    parser.add_argument("--switch-cost-scale", type=float, default=1.0, help="scale the picker's cut cost (0: frame-by-frame picking)")
    parser.add_argument(
        "--hold-cost-speech", type=float, help="the picker's cost (opening stds per frame) of holding a mouth in speech instead of the shipped one"
    )
    parser.add_argument("--pose-weight-speech", type=float, help="the picker's head-pose weight in speech instead of the shipped one")
    parser.add_argument("--crossing-shares", type=float, nargs="*", help="the new mouth's share in each frame of a crossing instead of the shipped ones")
    parser.add_argument("--release-frames", type=int, help="frames over which the lips ease into the rest shape after speech instead of the shipped number")
    parser.add_argument("--motion-reach", type=float, help="how far the wanted movement reaches beyond the avatar's own instead of the shipped factor")
    parser.add_argument("--opening-weight", type=float, help="the opening's weight among the lip coefficients in picking instead of the shipped one")
    parser.add_argument("--crossing-lead", type=int, choices=[0, 1], help="frames of a crossing before its cut instead of the shipped number")
    parser.add_argument("--blend", choices=["feather", "poisson"], help="how the paste meets the frame instead of the shipped way")
    parser.add_argument("--paste", choices=["warp", "region"], help="what of the chosen frame is drawn (inference.mouth.PASTE) instead of the shipped way")
    parser.add_argument(
        "--lip-reach",
        type=float,
        help="how far the drawn lips bend towards the wanted shape (inference.mouth.LIP_REACH; 0: as recorded) instead of the shipped share",
    )
    parser.add_argument(
        "--max-lip-move", type=float, help="the most a lip point bends, in face sides (inference.mouth.MAX_LIP_MOVE) instead of the shipped cap"
    )
    parser.add_argument("--prior-seed", type=int, help="train the held-out priors with this seed instead of the shipped one (another training draw)")
    parser.add_argument("--compare-paste", choices=VARIANTS, help="also render every tail this way (bench/face_coherence.py's variants), on the same plan")
    parser.add_argument("--no-crossings", action="store_true", help="cut between references instead of morphing over a few frames")
    parser.add_argument("--strips", type=Path, help="save PNG strips of 30 consecutive rendered-over-real mouths (head turn, fast syllables) here")
    parser.add_argument(
        "--small-copies", nargs="*", default=[], help=f"also score these clips as {SMALL_SIDE}-pixel videos around the face (small faces; never trained on)"
    )
    args = parser.parse_args()
    global FOLDS, LANDMARKS, SWITCH_COST_SCALE, POSE_WEIGHT_SPEECH, HOLD_COST_SPEECH, CROSSINGS, ONLY, STRIPS, COMPARE_PASTE, PRIOR_SEED
    FOLDS, LANDMARKS, SWITCH_COST_SCALE, CROSSINGS = args.folds, args.landmarks, args.switch_cost_scale, not args.no_crossings
    POSE_WEIGHT_SPEECH, HOLD_COST_SPEECH = args.pose_weight_speech, args.hold_cost_speech
    if args.blend:
        mouth_module.BLEND = args.blend
    if args.paste:
        mouth_module.PASTE = args.paste
    if args.lip_reach is not None:
        mouth_module.LIP_REACH = args.lip_reach
    if args.prior_seed is not None:
        PRIOR_SEED = args.prior_seed
    if args.max_lip_move is not None:
        mouth_module.MAX_LIP_MOVE = args.max_lip_move
    if args.release_frames is not None:
        mouth_module.RELEASE_FRAMES = args.release_frames
    if args.motion_reach is not None:
        mouth_module.MOTION_REACH = args.motion_reach
    if args.crossing_shares:
        picker_module.CROSSING_SHARES = tuple(args.crossing_shares)
    if args.opening_weight is not None:
        picker_module.OPENING_WEIGHT = args.opening_weight
    if args.crossing_lead is not None:
        picker_module.CROSSING_LEAD = args.crossing_lead
    ONLY, STRIPS, COMPARE_PASTE = set(args.clips or ()), args.strips, args.compare_paste
    quick = args.tails_only or bool(ONLY)
    torch.manual_seed(0)
    started = time.monotonic()
    clips = pool_clips(POOL, args.workdir / "pool", landmarks=args.landmarks)
    for name in args.small_copies:
        copy_name = f"{name}_{SMALL_SIDE}px"
        video = small_copy(Avatar.open(args.workdir / "pool" / name), args.workdir / "small" / f"{copy_name}.mp4")
        clips += pool_clips([video], args.workdir / "pool", landmarks=args.landmarks)
        SMALL_COPIES[copy_name] = name
        SPEAKERS[copy_name] = SPEAKERS.get(name, name)  # held out with the clip it was made from
    result = {
        "machine": platform.processor() or platform.machine(),
        "torch_threads": torch.get_num_threads(),
        "pool_frames": int(sum(len(c.shapes) for c in clips)),
        "landmark_model": LANDMARK_MODELS[args.landmarks],
        "held_out": f"{args.folds} folds of speakers" if args.folds else "one speaker at a time",
        "prior_seed": PRIOR_SEED,
    }
    if args.prior_only:
        result["mouth_model"] = score_prior_only(clips, args.workdir)
    elif not args.skip_mouth:
        result["mouth_model"] = score_mouth_model(clips, args.workdir, render=not args.skip_render)
    if not args.skip_mouth and not quick:
        result["timing_calibration"] = timing_calibration(clips, args.workdir)
        result["shipped_prior_on_research_clips"] = score_research(args.workdir, args.landmarks)
    if not args.skip_render and not args.prior_only and not quick:
        result["rendered"] = score_rendered(clips, args.workdir, args.minutes)
    result["seconds"] = time.monotonic() - started
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
