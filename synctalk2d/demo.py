"""`synctalk2d demo`: the whole pipeline on the bundled sample, within a few CPU minutes.

Preprocess the bundled clip into an avatar, train it (mobile width, time budget, the last
second held out), render the bundled speech to ``demo.mp4``, then evaluate the avatar on its
held-out second. Every step is the same code the individual commands run, and every step
resumes: running the demo again reuses what is already done.
"""

from __future__ import annotations

from dataclasses import dataclass
from importlib.resources import files
from pathlib import Path

from synctalk2d.avatar import Avatar
from synctalk2d.evaluation.evaluate import evaluate
from synctalk2d.inference.lipsync import LipSync
from synctalk2d.inference.offline import RenderSummary, render
from synctalk2d.preprocess import preprocess
from synctalk2d.training.train import build_config, train

SAMPLE_VIDEO = "talk_b.mp4"
SAMPLE_SPEECH = "speech_sun_12s.wav"
HOLDOUT_SECONDS = 1.0


def sample_path(name: str) -> Path:
    return Path(str(files("synctalk2d") / "sample_data" / name))


@dataclass
class DemoResult:
    avatar: Path
    video: RenderSummary
    report: dict


def run_demo(workdir: str | Path = "synctalk2d-demo", minutes: float = 3.0, width: str = "mobile", show_progress: bool = True) -> DemoResult:
    """Build, train, render and evaluate the sample avatar under ``workdir``."""
    workdir = Path(workdir)
    avatar_dir = workdir / "avatar"
    if not Avatar(avatar_dir).is_complete():
        preprocess(sample_path(SAMPLE_VIDEO), avatar_dir, show_progress=show_progress)
    train(build_config(avatar_dir, width=width, minutes=minutes, holdout_seconds=HOLDOUT_SECONDS), show_progress=show_progress)
    lipsync = LipSync(avatar_dir)
    video = render(lipsync, sample_path(SAMPLE_SPEECH), workdir / "demo.mp4", show_progress=show_progress)
    report = evaluate(avatar_dir, show_progress=show_progress)
    return DemoResult(avatar_dir, video, report)
