"""Command-line interface: a thin layer that parses options and calls the pipeline stages.

Errors a user can fix print as one line on stderr with exit code 1; ``--debug`` shows the
full traceback instead.
"""

from __future__ import annotations

import functools
import sys
from collections.abc import Callable
from pathlib import Path

import typer

from synctalk2d import __version__
from synctalk2d.errors import UserError
from synctalk2d.progress import console


def tune_process() -> None:
    """Process-wide speed settings for the commands that render (see
    `inference.runtime.tune_process`): the CLI owns its process, library code does not."""
    from synctalk2d.inference.runtime import tune_process as tune

    tune()


app = typer.Typer(
    help="SyncTalk_2D lip-sync: learn a person from a short video, then make them say any speech.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    add_completion=False,
)


def _print_version(value: bool) -> None:
    if value:
        print(f"synctalk2d {__version__}")
        raise typer.Exit()


@app.callback()
def main(
    version: bool = typer.Option(False, "--version", callback=_print_version, is_eager=True, help="Print the version and exit."),
) -> None:
    """SyncTalk_2D lip-sync: preprocess a video into an avatar, train it, make it speak."""


DebugOption = typer.Option(False, "--debug", help="Show full tracebacks on errors.")


def _fail(message: str) -> None:
    print(f"synctalk2d: error: {message}", file=sys.stderr)
    raise typer.Exit(1)


def command(fn: Callable) -> Callable:
    """Register ``fn`` as a subcommand with the one-line error policy (it must take ``debug``)."""

    @functools.wraps(fn)
    def run(*args, **kwargs):
        try:
            return fn(*args, **kwargs)
        except (typer.Exit, typer.Abort):
            raise
        except KeyboardInterrupt:
            if kwargs.get("debug"):
                raise
            _fail("interrupted")
        except UserError as e:
            if kwargs.get("debug"):
                raise
            _fail(str(e))
        except Exception as e:  # unexpected: still one line, traceback on request
            if kwargs.get("debug"):
                raise
            _fail(f"{type(e).__name__}: {e} (run again with --debug for the traceback)")

    return app.command()(run)


LandmarksOption = typer.Option("mediapipe", "--landmarks", help="Landmark model: mediapipe (Apache-2.0, default) or dlib (iBUG 300-W, non-commercial terms).")


@command
def preprocess(
    video: Path = typer.Argument(..., help="Talking-head video (any format PyAV opens), ideally ~5 minutes."),
    avatar: Path = typer.Option(..., "--avatar", help="Directory to write the avatar to."),
    audio: Path | None = typer.Option(None, "--audio", help="Use this audio instead of the video's own track."),
    force: bool = typer.Option(False, "--force", help="Replace an existing complete avatar."),
    landmarks: str = LandmarksOption,
    debug: bool = DebugOption,
) -> None:
    """Turn a video of a person talking into an avatar directory (frames, landmarks, crops, audio)."""
    from synctalk2d.preprocess import preprocess as run_preprocess

    summary = run_preprocess(video, avatar, audio=audio, force=force, landmarks=landmarks)
    console.print(
        f"[green]avatar ready[/green] {summary.avatar}: {summary.num_frames} frames "
        f"({summary.duration:.1f} s at 25 fps), face found in {summary.face_share:.1%} of frames, "
        f"took {summary.seconds:.1f} s ({summary.num_frames / max(summary.seconds, 1e-9):.1f} frames/s)"
    )


@command
def train(
    avatar: Path = typer.Option(..., "--avatar", help="Avatar directory written by `synctalk2d preprocess`."),
    conditioning: str | None = typer.Option(
        None,
        "--conditioning",
        help="mouth (default): predicted lip shapes pick real mouths of the avatar (seconds to train); "
        "audio: the reference U-Net on audio features (hours, ideally on a GPU). A re-run keeps the avatar's.",
    ),
    renderer: str | None = typer.Option(
        None,
        "--renderer",
        help="With mouth conditioning: paste (default) lays the chosen recorded mouth onto each frame; "
        "unet also trains the compositor U-Net that redraws it (minutes on a GPU). A re-run keeps the avatar's.",
    ),
    stage: str | None = typer.Option(None, "--stage", help="Run only this stage: mouth, compositor; or audio-encoder (or features), syncnet, unet."),
    feature_type: str = typer.Option("ave", "--feature-type", help="Audio features: ave, hubert or wenet."),
    width: str = typer.Option("full", "--width", help="U-Net width: full or mobile (about 4x faster)."),
    epochs: int | None = typer.Option(None, "--epochs", help="Epochs per stage (default: each stage's own)."),
    max_steps: int | None = typer.Option(None, "--max-steps", help="At most this many steps per stage."),
    minutes: float | None = typer.Option(None, "--minutes", help="Wall-clock budget for the whole run (20/15/65% per stage)."),
    batch_size: int | None = typer.Option(None, "--batch-size", help="Batch size per process for every stage (default 32/32/8)."),
    holdout_seconds: float = typer.Option(0.0, "--holdout-seconds", help="Never train on the clip's last S seconds (kept for evaluation)."),
    device: str | None = typer.Option(None, "--device", help="cuda, mps or cpu (default: the best available)."),
    audio_encoder_weights: Path | None = typer.Option(None, "--audio-encoder-weights", help="Pretrained AVE encoder (Wav2Lip layout) instead of training one."),
    hubert_model: Path | None = typer.Option(None, "--hubert-model", help="HuBERT model directory (with --feature-type hubert)."),
    wenet_model: Path | None = typer.Option(None, "--wenet-model", help="WeNet encoder .onnx (with --feature-type wenet)."),
    vgg_weights: Path | None = typer.Option(None, "--vgg-weights", help="VGG19 weights for the perceptual loss (default: torch hub cache)."),
    mouth_prior: Path | None = typer.Option(
        None, "--mouth-prior", help="Mouth-motion prior to adapt (default: the one shipped with synctalk2d; see `synctalk2d mouth-prior`)."
    ),
    checkpoint_every: int | None = typer.Option(None, "--checkpoint-every", help="Steps between resumable checkpoints (default 200)."),
    seed: int = typer.Option(0, "--seed", help="Seed for initialisation, data order and augmentation."),
    debug: bool = DebugOption,
) -> None:
    """Train an avatar: its mouth-motion model (default), or audio encoder, lip-sync expert and U-Net (--conditioning audio); re-run to resume."""
    from synctalk2d.training.train import build_config
    from synctalk2d.training.train import train as run_train

    config = build_config(
        avatar,
        conditioning=conditioning,
        renderer=renderer,
        stage=stage,
        feature_type=feature_type,
        width=width,
        epochs=epochs,
        max_steps=max_steps,
        minutes=minutes,
        batch_size=batch_size,
        holdout_seconds=holdout_seconds,
        device=device,
        audio_encoder_weights=audio_encoder_weights,
        hubert_model=hubert_model,
        wenet_model=wenet_model,
        vgg_weights=vgg_weights,
        mouth_prior=mouth_prior,
        checkpoint_every=checkpoint_every,
        seed=seed,
    )
    run_train(config)
    console.print(f"[green]trained[/green] {avatar}")


@command
def mouth_prior(
    videos: list[Path] = typer.Argument(..., help="Talking clips (videos with their own speech), or folders of them."),
    workdir: Path = typer.Option(Path("mouth-pool"), "--workdir", help="Where the clips are preprocessed (reused on the next run)."),
    output: Path | None = typer.Option(None, "-o", "--output", help="Where to write the prior (default: the one shipped inside the package)."),
    landmarks: str = LandmarksOption,
    debug: bool = DebugOption,
) -> None:
    """Train the speaker-independent mouth-motion prior that `train` adapts to each avatar."""
    from synctalk2d.training.mouth import PRIOR_PATH, build_prior

    files = sorted(p for v in videos for p in (v.iterdir() if v.is_dir() else [v]) if p.suffix.lower() in {".mp4", ".mov", ".mkv", ".webm"})
    if not files:
        raise UserError("no video files (.mp4, .mov, .mkv, .webm) among the given paths")
    path = output or PRIOR_PATH
    build_prior(files, workdir, path, landmarks=landmarks)
    console.print(f"[green]wrote[/green] {path} (trained on {len(files)} clips)")


BackendOption = typer.Option("auto", "--backend", help="U-Net runtime: auto, torch or onnx.")
PrecisionOption = typer.Option(
    "auto",
    "--precision",
    help="auto, fp32, bf16, fp16 (CUDA) or int8 (onnxruntime, calibrated on the avatar's frames); "
    "reduced precision is checked at load and falls back to fp32 below 40 dB PSNR.",
)
DeviceOption = typer.Option("auto", "--device", help="auto, cpu, cuda or mps.")
RendererOption = typer.Option(
    None, "--renderer", help="Mouth conditioning: paste or unet (the compositor; needs `train --renderer unet`). Default: what the avatar was trained with."
)


@command
def infer(
    avatar: Path = typer.Option(..., "--avatar", help="A trained avatar directory."),
    audio: Path = typer.Option(..., "--audio", help="Speech to say (wav, mp3, m4a, flac, ogg...), or a folder of such files."),
    output: Path = typer.Option(..., "-o", "--output", help="Output .mp4 (or a folder when --audio is a folder)."),
    start_frame: int = typer.Option(0, "--start-frame", help="Avatar frame the video starts on."),
    loop_back: bool = typer.Option(True, "--loop-back/--no-loop-back", help="End on the start frame, for seamless loops."),
    crf: int = typer.Option(18, "--crf", help="H.264 quality (lower is better, 18 is visually lossless)."),
    batch_size: int = typer.Option(8, "--batch-size", help="Frames per U-Net call."),
    renderer: str | None = RendererOption,
    backend: str = BackendOption,
    precision: str = PrecisionOption,
    device: str = DeviceOption,
    debug: bool = DebugOption,
) -> None:
    """Make the avatar say AUDIO: a lip-synced MP4 at the avatar's size and 25 fps. A killed render resumes when run again with the same arguments."""
    from synctalk2d.inference.lipsync import LipSync
    from synctalk2d.inference.offline import render, render_folder

    if not audio.exists():
        raise UserError(f"{audio}: no such file or folder")
    tune_process()
    lipsync = LipSync(avatar, backend=backend, precision=precision, device=device, batch_size=batch_size, renderer=renderer)
    options = dict(start_frame=start_frame, loop_back=loop_back, crf=crf)
    if audio.is_dir():
        done, failed = render_folder(lipsync, audio, output, **options)
        for summary in done:
            console.print(f"[green]wrote[/green] {summary.output} ({summary.frames} frames, {summary.fps:.1f} frames/s)")
        for path, reason in failed.items():
            print(f"synctalk2d: failed: {path}: {reason}", file=sys.stderr)
        if failed:
            _fail(f"{len(failed)} of {len(done) + len(failed)} files failed")
        return
    summary = render(lipsync, audio, output, **options)
    resumed = f", {summary.resumed_frames} of them rendered by an earlier run" if summary.resumed_frames else ""
    console.print(f"[green]wrote[/green] {summary.output}: {summary.frames} frames{resumed} in {summary.seconds:.1f} s ({summary.fps:.1f} frames/s)")


@command
def export(
    avatar: Path = typer.Option(..., "--avatar", help="A trained avatar directory."),
    output: Path | None = typer.Option(None, "-o", "--output", help="Where to write the ONNX model (default: AVATAR/unet.onnx)."),
    debug: bool = DebugOption,
) -> None:
    """Export the avatar's U-Net to ONNX (BatchNorm folded, dynamic batch) for `infer --backend onnx` or other runtimes."""
    from synctalk2d.inference.lipsync import EXPORTED_ONNX
    from synctalk2d.inference.runtime import export_onnx
    from synctalk2d.models.checkpoint import load_unet

    path = export_onnx(load_unet(avatar), output or Path(avatar) / EXPORTED_ONNX)
    console.print(f"[green]wrote[/green] {path}")


@command
def evaluate(
    avatar: Path = typer.Option(..., "--avatar", help="An avatar trained with --holdout-seconds."),
    json_path: Path | None = typer.Option(None, "--json", help="Also write the report as JSON here."),
    preview: Path | None = typer.Option(None, "--preview", help="Write a side-by-side video (generated | real) of the held-out tail."),
    renderer: str | None = RendererOption,
    backend: str = BackendOption,
    precision: str = PrecisionOption,
    device: str = DeviceOption,
    debug: bool = DebugOption,
) -> None:
    """Measure lip sync on the held-out tail against two baselines (unchanged frames, real frames)."""
    from synctalk2d.atomic import write_json_atomic
    from synctalk2d.evaluation.evaluate import evaluate as run_evaluate
    from synctalk2d.evaluation.report import print_report

    tune_process()
    report = run_evaluate(avatar, preview=preview, backend=backend, precision=precision, device=device, renderer=renderer)
    print_report(report)
    if json_path:
        write_json_atomic(json_path, report)


@command
def demo(
    workdir: Path = typer.Option(Path("synctalk2d-demo"), "--workdir", help="Where the demo avatar and demo.mp4 go."),
    minutes: float = typer.Option(3.0, "--minutes", help="Training budget."),
    width: str = typer.Option("mobile", "--width", help="U-Net width: mobile (fast) or full."),
    debug: bool = DebugOption,
) -> None:
    """Build, train and render the bundled sample avatar, then evaluate it: the whole pipeline in a few minutes."""
    from synctalk2d.demo import run_demo
    from synctalk2d.evaluation.report import print_report

    tune_process()
    result = run_demo(workdir, minutes=minutes, width=width)
    print_report(result.report)
    console.print(f"[green]demo video:[/green] {result.video.output.resolve()} ({result.video.frames} frames)")


QueueOption = typer.Option(
    None,
    "--queue",
    help="redis://host:port/db: run jobs on `synctalk2d worker` processes through RQ, job records in the same Redis (default: in this process).",
)
MaxLoadedOption = typer.Option(4, "--max-loaded-avatars", help="Avatars kept loaded at once; the least recently used one without a live session is unloaded.")


@command
def serve(
    avatar: Path | None = typer.Option(None, "--avatar", help="One trained avatar directory (or use --avatars)."),
    avatars: Path | None = typer.Option(None, "--avatars", help="A directory of avatars (each subdirectory one), loaded on first use."),
    host: str = typer.Option("127.0.0.1", "--host", help="Address to listen on (0.0.0.0: every interface; set an API key then)."),
    port: int = typer.Option(8000, "--port", help="TCP port."),
    api_key: str | None = typer.Option(
        None, "--api-key", envvar="SYNCTALK2D_API_KEY", help="Require this key on every API call and stream (env SYNCTALK2D_API_KEY)."
    ),
    jobs_dir: Path | None = typer.Option(
        None,
        "--jobs-dir",
        help="Job files, and without --queue job state (jobs.sqlite) (default: a temporary directory; with --queue: required, shared with the workers).",
    ),
    queue: str | None = QueueOption,
    job_workers: int = typer.Option(1, "--job-workers", help="Jobs run at the same time in this process (without --queue)."),
    job_timeout: float = typer.Option(1800.0, "--job-timeout", help="Seconds a job may run before it is failed as stuck."),
    retention: float = typer.Option(3600.0, "--retention", help="Seconds a finished job's video is kept."),
    max_sessions: int = typer.Option(4, "--max-sessions", help="Live streams served at once."),
    max_loaded_avatars: int = MaxLoadedOption,
    max_upload_mb: float = typer.Option(50.0, "--max-upload-mb", help="Largest audio upload accepted."),
    max_audio_seconds: float = typer.Option(600.0, "--max-audio-seconds", help="Longest audio a job renders."),
    max_video_mb: float = typer.Option(500.0, "--max-video-mb", help="Largest video upload accepted for a new avatar."),
    max_video_seconds: float = typer.Option(600.0, "--max-video-seconds", help="Longest video accepted for a new avatar."),
    debug: bool = DebugOption,
) -> None:
    """Serve avatars over HTTP: render jobs, new avatars, a live WebSocket stream and a web page at /."""
    import uvicorn

    from synctalk2d.serving.app import ServerSettings, create_app
    from synctalk2d.serving.avatars import AvatarStore

    if (avatar is None) == (avatars is None):
        raise UserError("give one of --avatar DIR (one avatar) or --avatars DIR (a directory of avatars)")
    if avatars is not None and not avatars.is_dir():
        raise UserError(f"{avatars}: no such directory")
    if queue and jobs_dir is None:
        raise UserError("--queue needs --jobs-dir: a directory the workers share, where they read each job's input and write its video")
    if host not in ("127.0.0.1", "localhost", "::1") and not api_key:
        console.print(f"[yellow]warning:[/yellow] serving on {host} without --api-key: anyone who can reach this port can use it", soft_wrap=True)
    settings = ServerSettings(
        api_key=api_key,
        jobs_dir=jobs_dir,
        queue=queue,
        job_workers=job_workers,
        job_timeout=job_timeout,
        retention=retention,
        max_sessions=max_sessions,
        max_upload_mb=max_upload_mb,
        max_audio_seconds=max_audio_seconds,
        max_video_mb=max_video_mb,
        max_video_seconds=max_video_seconds,
    )
    server_app = create_app(avatar or AvatarStore(avatars, max_loaded_avatars), settings)
    console.print(f"serving {avatar or avatars} on [bold]http://{host}:{port}/[/bold] (Ctrl+C stops)")
    # no per-message deflate: the live stream's JPEGs and PCM do not compress, and deflating them cost CPU per frame
    uvicorn.run(server_app, host=host, port=port, log_level="debug" if debug else "warning", ws_per_message_deflate=False)


@command
def worker(
    queue: str = typer.Option(..., "--queue", help="The queue `serve --queue` sends jobs to (redis://host:port/db)."),
    avatars: Path = typer.Option(..., "--avatars", help="The server's avatar directory (for `serve --avatar DIR`: DIR's parent)."),
    jobs_dir: Path = typer.Option(..., "--jobs-dir", help="The server's --jobs-dir (job inputs and videos), mounted on this machine."),
    max_loaded_avatars: int = MaxLoadedOption,
    debug: bool = DebugOption,
) -> None:
    """Run the server's render and avatar jobs from an RQ queue, on this or any machine sharing its Redis and its avatar and jobs directories."""
    from synctalk2d.serving.queue import connect, run_worker

    tune_process()
    connect(queue)  # a queue that cannot be reached fails here, before the line that says the worker runs
    console.print(f"worker on {queue} (Ctrl+C stops after the current job)")
    run_worker(queue, avatars, jobs_dir, max_loaded_avatars)


if __name__ == "__main__":
    app()
