"""What a job does, wherever it runs (the server's thread pool or an RQ worker): render an
uploaded audio file, or build and train an avatar from an uploaded video.

`run_job` claims the job in the durable store (so a job delivered twice runs once), beats
its heartbeat while it works (so a dead runner is noticed and the job retried), and records
the outcome: a `UserError` becomes the job's one-line error, in the CLI's words.
"""

from __future__ import annotations

import os
import shutil
import socket
import threading
from collections.abc import Callable
from pathlib import Path

from synctalk2d.errors import UserError
from synctalk2d.inference.offline import render
from synctalk2d.serving.avatars import NAME_FILE, AvatarStore
from synctalk2d.serving.jobs import INPUT, Job, Store

HEARTBEAT = 1.0  # seconds between a runner's heartbeats
VIDEO, AUDIO = "video", "audio"  # an avatar job's inputs in its directory
PREPROCESS_SHARE = 0.7  # of an avatar job's progress; training is the rest


def runner_name() -> str:
    """Who runs a job, as recorded in the store: this machine and process."""
    return f"{socket.gethostname()}/{os.getpid()}"


def run_job(jobs: Store, avatars: AvatarStore, job_id: str) -> None:
    """Run the job ``job_id`` if it is still queued; never raises for a failed job."""
    worker = runner_name()
    job = jobs.claim(job_id, worker)
    if job is None:
        return
    for leftover in job.directory.glob(".*"):  # temp files of an earlier attempt that died ...
        if leftover.is_file():
            leftover.unlink(missing_ok=True)  # ... but not a render's finished parts: it resumes from them
    progress = {"share": 0.0}
    stop = threading.Event()

    def beat() -> None:
        while not stop.wait(HEARTBEAT) and jobs.beat(job_id, worker, progress["share"]):
            pass

    beater = threading.Thread(target=beat, daemon=True, name=f"heartbeat-{job_id[:8]}")
    beater.start()
    error = None
    try:
        work = render_job if job.kind == "render" else avatar_job
        work(job, jobs, avatars, lambda share: progress.__setitem__("share", share))
    except UserError as e:
        error = public(str(e), job, avatars)
    except Exception as e:  # a bug: the job fails, the runner keeps running
        error = f"internal error: {type(e).__name__}: {e}"
    finally:
        stop.set()
        beater.join()
    if jobs.finish(job_id, worker, error):
        for name in (INPUT, VIDEO, AUDIO):
            (job.directory / name).unlink(missing_ok=True)


def public(message: str, job: Job, avatars: AvatarStore) -> str:
    """A job's error without the server's paths (the CLI's words name the files it was given)."""
    names = {VIDEO: "the video", AUDIO: "the audio", INPUT: "the audio"}
    for path, name in [(job.directory / file, name) for file, name in names.items()] + [(building(avatars, job), "the new avatar")]:
        message = message.replace(str(path), name)
    return message.replace(f"{avatars.root}/", "")


def building(avatars: AvatarStore, job: Job) -> Path:
    """Where an avatar job builds its avatar: hidden, so it is never listed half-built."""
    return avatars.root / f".building-{job.avatar}"


def render_job(job: Job, jobs: Store, avatars: AvatarStore, on_progress: Callable[[float], None]) -> None:
    with avatars.lease(job.avatar) as lipsync:
        render(lipsync, job.directory / INPUT, jobs.output(job), show_progress=False, on_progress=on_progress)


def avatar_job(job: Job, jobs: Store, avatars: AvatarStore, on_progress: Callable[[float], None]) -> None:
    """Preprocess and train with the defaults of `synctalk2d preprocess` and `train`, in a
    hidden directory of the store renamed into place when the avatar is trained, so the
    avatar is listed only once it can be used."""
    from synctalk2d.preprocess import preprocess
    from synctalk2d.training.train import build_config, train

    work = building(avatars, job)
    shutil.rmtree(work, ignore_errors=True)
    try:
        audio = job.directory / AUDIO
        preprocess(job.directory / VIDEO, work, audio=audio if audio.is_file() else None, show_progress=False)
        on_progress(PREPROCESS_SHARE)
        train(build_config(work), show_progress=False)
        (work / NAME_FILE).write_text((job.name or job.avatar) + "\n")
        os.rename(work, avatars.root / job.avatar)
    finally:
        shutil.rmtree(work, ignore_errors=True)
