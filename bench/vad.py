"""Voice activity and the mouth over sound that is not speech, as JSON on stdout.

    python bench/vad.py [--workdir DIR]

Sounds: 6 s of silence, pink noise and music (plucked harmonic notes, one a second), each at
a peak of -20 dBFS; 12 s of speech (``speech_hb.wav``) and the same speech over that noise.
For each: the share of frames the shipped rule (`audio.vad`, Silero VAD) calls speech, and
the share the previous release's energy rule called speech (re-implemented below for the
comparison only); the rule's time per second of audio. Then the bundled sample avatar is
trained (mouth conditioning, as ``synctalk2d demo`` does) and each sound rendered onto its
frames: the rendered mouth opening's mean and std (the avatar's landmark model on the
rendered frames, as `evaluate` measures silence), and each over silence's.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import numpy as np

from synctalk2d.audio.vad import voice_activity
from synctalk2d.avatar import SAMPLES_PER_FRAME, Avatar
from synctalk2d.demo import SAMPLE_VIDEO, sample_path
from synctalk2d.evaluation import metrics
from synctalk2d.evaluation.evaluate import Clip
from synctalk2d.face.landmarks import landmark_detector
from synctalk2d.inference.lipsync import LipSync
from synctalk2d.inference.schedule import frame_schedule
from synctalk2d.media.audio import SAMPLE_RATE, load_audio
from synctalk2d.preprocess import preprocess
from synctalk2d.training.train import build_config, train

SPEECH = Path(__file__).resolve().parents[1].parent / "shared" / "fixtures" / "speech_hb.wav"


def pink(seconds: float, seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    n = int(seconds * SAMPLE_RATE)
    return np.fft.irfft(np.fft.rfft(rng.normal(size=n)) / np.sqrt(np.arange(1, n // 2 + 2)), n)


def music(seconds: float) -> np.ndarray:
    t = np.arange(int(seconds * SAMPLE_RATE)) / SAMPLE_RATE
    x = np.zeros_like(t)
    for k, f0 in enumerate(([220, 277, 330, 440, 392, 330] * 4)[: int(seconds)]):
        on = (t >= k) & (t < k + 1)
        x[on] = sum(np.sin(2 * np.pi * f0 * h * t[on]) / h for h in (1, 2, 3)) * np.exp(-3 * (t[on] - k))
    return x


def peak(x: np.ndarray, db: float = -20.0) -> np.ndarray:
    return (x / np.abs(x).max() * 10 ** (db / 20)).astype(np.float32)


def energy_rule(wav: np.ndarray, frames: int) -> np.ndarray:
    """The previous release's rule: RMS level with hysteresis, relative to the loudest frame so far."""
    padded = np.zeros(frames * SAMPLES_PER_FRAME, np.float32)
    padded[: min(len(wav), len(padded))] = wav[: len(padded)]
    levels = 20 * np.log10(np.maximum(np.sqrt((padded.reshape(frames, -1) ** 2).mean(axis=1)), 1e-6))
    loud, speaking, quiet, out = -20.0, False, 0, []
    for level in levels:
        loud = max(loud, level - 3.0)
        if level - loud > -30.0:
            speaking, quiet = True, 0
        elif speaking and level - loud < -38.0:
            quiet += 1
            speaking = quiet <= 4
        out.append(speaking)
    return np.array(out)


def rendered_opening(lipsync: LipSync, wav: np.ndarray) -> dict:
    features = lipsync.audio_features(wav)
    schedule = frame_schedule(len(features), lipsync.avatar.info.num_frames, start=0, loop_back=False)
    clip, tracker, boxes = Clip(), landmark_detector(lipsync.avatar.info.landmark_model), lipsync.avatar.boxes()
    for k, frame in enumerate(lipsync.generator.frames(lipsync.chunks(features, schedule))):
        clip.add(frame, boxes[schedule[k]], tracker)
    opening = metrics.mouth_aperture(clip.arrays()[1])
    return {"mean": float(opening.mean()), "std": float(opening.std())}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--workdir", type=Path, default=Path("bench-vad"))
    args = parser.parse_args()
    speech, _ = load_audio(SPEECH)
    speech = speech[: 12 * SAMPLE_RATE]
    sounds = {
        "silence": np.zeros(6 * SAMPLE_RATE, np.float32),
        "pink_noise": peak(pink(6)),
        "music": peak(music(6)),
        "speech": speech,
        "speech_over_noise": (speech + 0.5 * peak(pink(12))).astype(np.float32),
    }
    result = {"speech_share": {}, "rule_ms_per_audio_second": None, "rendered_opening": {}}
    started, seconds = time.perf_counter(), 0.0
    for name, wav in sounds.items():
        frames = len(wav) // SAMPLES_PER_FRAME
        result["speech_share"][name] = {"silero": float(voice_activity(wav, frames).mean()), "energy_rule": float(energy_rule(wav, frames).mean())}
        seconds += len(wav) / SAMPLE_RATE
    result["rule_ms_per_audio_second"] = 1000 * (time.perf_counter() - started) / seconds
    avatar = args.workdir / "avatar"
    if not Avatar(avatar).is_complete():
        preprocess(sample_path(SAMPLE_VIDEO), avatar, show_progress=False)
    train(build_config(avatar, holdout_seconds=1.0), show_progress=False)
    lipsync = LipSync(avatar)
    for name in ("silence", "pink_noise", "music", "speech_over_noise"):
        result["rendered_opening"][name] = rendered_opening(lipsync, sounds[name])
    silence = result["rendered_opening"]["silence"]
    for values in result["rendered_opening"].values():
        values["mean_over_silence"] = values["mean"] / silence["mean"]
        values["std_over_silence"] = values["std"] / silence["std"]
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
