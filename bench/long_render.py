"""Long renders: peak memory and speed of `synctalk2d infer` by length of speech, as JSON.

    python bench/long_render.py --avatar DIR [--minutes 1 10 60] [--speech FILE]
                                [--workdir DIR] [--figures docs/figures/long_render.json]
    python bench/long_render.py --avatar DIR --resume 10 6 [--figures ...]

SPEECH (default: the German fixture, `speech_pauses_de.mp3`) is repeated to each length
and written as an MP3 (as a user's recording would come), then `synctalk2d infer` renders
it in a fresh process, exactly as a user runs it. Per length it reports the process's peak
resident memory (``peak_rss_mb``, from the kernel's accounting of that child alone), wall
time and frames/s (model loading included). Without ``--avatar`` the bundled sample avatar
is built first with `synctalk2d demo`'s steps under WORKDIR.

``--resume M K`` measures instead what a killed render costs: M minutes of speech rendered
whole, then again killed (SIGKILL, as a crash would) once K minutes of parts are written,
and run again with the same arguments; the cost is the two runs' wall time less the whole
render's, and what the resumed run spent before its first new frame is the re-planning of
the K minutes. With ``--figures`` each mode refreshes its own table of the file.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import time
from datetime import date
from pathlib import Path

import av
import numpy as np

from synctalk2d.avatar import FPS
from synctalk2d.inference.offline import PART_SECONDS

FIXTURES = Path(__file__).resolve().parents[1].parent / "shared" / "fixtures"
SPEECH = FIXTURES / "speech_pauses_de.mp3"


def repeated_speech(speech: Path, minutes: float, output: Path) -> Path:
    """``speech`` repeated to ``minutes`` and encoded as MP3 at its own rate (mono), streamed."""
    if output.is_file():
        return output
    with av.open(str(speech)) as source:
        stream = source.streams.audio[0]
        rate = stream.rate
        resampler = av.AudioResampler(format="s16", layout="mono", rate=rate)
        samples = np.concatenate([f.to_ndarray().reshape(-1) for frame in source.decode(stream) for f in resampler.resample(frame)])
    total = int(minutes * 60 * rate)
    tmp = output.with_name(f".{output.name}.tmp.mp3")
    with av.open(str(tmp), "w", format="mp3") as out:
        encoder = out.add_stream("libmp3lame", rate=rate)
        encoder.layout = "mono"
        written = 0
        while written < total:
            piece = samples[: total - written]
            frame = av.AudioFrame.from_ndarray(piece[None], format="s16", layout="mono")
            frame.sample_rate, frame.pts = rate, written
            out.mux(encoder.encode(frame))
            written += len(piece)
        out.mux(encoder.encode(None))
    tmp.rename(output)
    return output


def timed_render(avatar: Path, audio: Path, output: Path) -> dict:
    """Run `synctalk2d infer` in a child process; its own peak RSS and wall time."""
    started = time.perf_counter()
    child = subprocess.Popen(
        [sys.executable, "-m", "synctalk2d", "infer", "--avatar", str(avatar), "--audio", str(audio), "-o", str(output)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )
    _, status, usage = os.wait4(child.pid, 0)
    wall = time.perf_counter() - started
    error = child.stderr.read().decode(errors="replace")
    child.returncode = os.waitstatus_to_exitcode(status)
    if child.returncode:
        raise SystemExit(f"infer failed on {audio}:\n{error}")
    with av.open(str(output)) as video:
        frames = video.streams.video[0].frames
    return {"frames": frames, "wall_s": round(wall, 1), "fps": round(frames / wall, 1), "peak_rss_mb": round(usage.ru_maxrss / 1024)}


def killed_and_resumed(avatar: Path, audio: Path, output: Path, kill_minutes: float) -> dict:
    """Render, SIGKILL once ``kill_minutes`` of parts are finished, render again."""
    parts = output.parent / f".{output.name}.parts"
    started = time.perf_counter()
    child = subprocess.Popen(
        [sys.executable, "-m", "synctalk2d", "infer", "--avatar", str(avatar), "--audio", str(audio), "-o", str(output)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    while len(list(parts.glob("part*.mp4"))) < kill_minutes * 60 / PART_SECONDS and child.poll() is None:
        time.sleep(0.2)
    child.kill()
    child.wait()
    killed = time.perf_counter() - started
    resumed = timed_render(avatar, audio, output)
    return {
        "killed_after_s": round(killed, 1),
        "rendered_before_kill_min": kill_minutes,
        "resumed_run_s": resumed["wall_s"],
        "resumed_peak_rss_mb": resumed["peak_rss_mb"],
    }


def sample_avatar(workdir: Path) -> Path:
    from synctalk2d.demo import HOLDOUT_SECONDS, SAMPLE_VIDEO, sample_path
    from synctalk2d.preprocess import preprocess
    from synctalk2d.training.train import build_config, train

    root = workdir / "avatar"
    if not (root / "train.json").is_file():
        preprocess(sample_path(SAMPLE_VIDEO), root, show_progress=False)
        train(build_config(root, holdout_seconds=HOLDOUT_SECONDS), show_progress=False)
    return root


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--avatar", type=Path)
    parser.add_argument("--minutes", type=float, nargs="+", default=[1, 10, 60])
    parser.add_argument("--speech", type=Path, default=SPEECH)
    parser.add_argument("--workdir", type=Path, default=Path("/tmp/synctalk2d-long-render"))
    parser.add_argument("--resume", type=float, nargs=2, metavar=("MINUTES", "KILL_AT"), help="measure a render of MINUTES killed at KILL_AT and resumed")
    parser.add_argument("--figures", type=Path, help="also write the JSON here (docs/figures/long_render.json)")
    args = parser.parse_args()
    args.workdir.mkdir(parents=True, exist_ok=True)
    avatar = args.avatar or sample_avatar(args.workdir)
    meta = {
        "date": date.today().isoformat(),
        "machine": f"{platform.processor() or platform.machine()}, {os.cpu_count()} CPUs",
        "command": "python bench/long_render.py " + " ".join(sys.argv[1:]),
    }
    if args.resume:
        minutes, kill_at = args.resume
        audio = repeated_speech(args.speech, minutes, args.workdir / f"speech_{minutes:g}min.mp3")
        whole = timed_render(avatar, audio, args.workdir / f"whole_{minutes:g}min.mp4")
        row = {"speech_minutes": minutes, "whole_run_s": whole["wall_s"]} | killed_and_resumed(
            avatar, audio, args.workdir / f"resumed_{minutes:g}min.mp4", kill_at
        )
        row["cost_s"] = round(row["killed_after_s"] + row["resumed_run_s"] - row["whole_run_s"], 1)
        row["cost_s_per_minute_resumed"] = round(row["cost_s"] / kill_at, 2)
        _write({"resume": meta | {"rows": [row]}}, args.figures)
        return
    runs = []
    for minutes in args.minutes:
        audio = repeated_speech(args.speech, minutes, args.workdir / f"speech_{minutes:g}min.mp3")
        run = {"speech_minutes": minutes} | timed_render(avatar, audio, args.workdir / f"render_{minutes:g}min.mp4")
        assert run["frames"] >= round(minutes * 60 * FPS), run
        runs.append(run)
        print(json.dumps(run), file=sys.stderr, flush=True)
    growth = (runs[-1]["peak_rss_mb"] - runs[0]["peak_rss_mb"]) / max(runs[-1]["speech_minutes"] - runs[0]["speech_minutes"], 1e-9)
    _write(meta | {"avatar": str(avatar), "runs": runs, "rss_growth_mb_per_minute": round(growth, 2)}, args.figures)


def _write(result: dict, figures: Path | None) -> None:
    """Print ``result``; with ``figures``, update those keys of that file (the other mode's table stays)."""
    print(json.dumps(result, indent=2))
    if figures:
        kept = json.loads(figures.read_text()) if figures.is_file() else {}
        figures.write_text(json.dumps(kept | result, indent=2) + "\n")


if __name__ == "__main__":
    main()
