"""Render jobs: an uploaded audio file becomes an MP4, in a bounded pool of workers.

Each job lives in its own directory of the job store, named by a random id that is checked
against `JOB_ID` before it is ever joined to a path, so no id can reach outside the store.
Jobs run whether or not the client that posted them is still connected; finished jobs
(and their files) are removed `retention` seconds after they finish.
"""

from __future__ import annotations

import re
import shutil
import threading
import time
import uuid
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

from synctalk2d.errors import UserError
from synctalk2d.inference.lipsync import LipSync
from synctalk2d.inference.offline import render

JOB_ID = re.compile(r"[0-9a-f]{32}")
INPUT, OUTPUT = "input", "output.mp4"


class QueueFull(Exception):
    """More jobs are waiting than the server accepts."""


@dataclass
class Job:
    id: str
    directory: Path
    status: str = "queued"  # queued | running | done | failed
    progress: float = 0.0
    error: str | None = None
    created: float = field(default_factory=time.time)
    finished: float | None = None

    def to_dict(self) -> dict:
        return {"id": self.id, "status": self.status, "progress": round(self.progress, 3), "error": self.error}


class JobStore:
    def __init__(self, lipsync: LipSync, root: Path, workers: int = 1, max_queued: int = 16, retention: float = 3600.0):
        self.lipsync = lipsync
        self.root = Path(root)
        self.root.mkdir(parents=True, exist_ok=True)
        self.retention = retention
        self.max_queued = max_queued
        self.jobs: dict[str, Job] = {}
        self.lock = threading.Lock()
        self.pool = ThreadPoolExecutor(workers, thread_name_prefix="render-job")

    def get(self, job_id: str) -> Job | None:
        """The job with ``job_id``, or None for an unknown or malformed id."""
        if not JOB_ID.fullmatch(job_id):
            return None
        with self.lock:
            return self.jobs.get(job_id)

    def output(self, job: Job) -> Path:
        return job.directory / OUTPUT

    def create(self) -> Job:
        """A new job directory; the caller writes the input to ``job.directory / INPUT`` and then calls `start`."""
        with self.lock:
            waiting = sum(job.status in ("queued", "running") for job in self.jobs.values())
            if waiting >= self.max_queued:
                raise QueueFull(f"{waiting} jobs are already waiting; try again later")
            job_id = uuid.uuid4().hex
            job = Job(job_id, self.root / job_id)
            job.directory.mkdir()
            self.jobs[job.id] = job
        return job

    def discard(self, job: Job) -> None:
        with self.lock:
            self.jobs.pop(job.id, None)
        shutil.rmtree(job.directory, ignore_errors=True)

    def start(self, job: Job) -> None:
        self.pool.submit(self._run, job)

    def _run(self, job: Job) -> None:
        job.status = "running"
        try:
            render(self.lipsync, job.directory / INPUT, self.output(job), show_progress=False, on_progress=lambda share: setattr(job, "progress", share))
            job.status, job.progress = "done", 1.0
        except UserError as e:
            job.status, job.error = "failed", str(e)
        except Exception as e:  # a bug: the job fails, the server keeps serving
            job.status, job.error = "failed", f"internal error: {type(e).__name__}: {e}"
        finally:
            job.finished = time.time()
            (job.directory / INPUT).unlink(missing_ok=True)

    def clean(self, now: float | None = None) -> int:
        """Remove jobs finished more than ``retention`` seconds ago; returns how many."""
        now = time.time() if now is None else now
        with self.lock:
            expired = [job for job in self.jobs.values() if job.finished is not None and now - job.finished > self.retention]
            for job in expired:
                del self.jobs[job.id]
        for job in expired:
            shutil.rmtree(job.directory, ignore_errors=True)
        return len(expired)

    def close(self) -> None:
        self.pool.shutdown(wait=False, cancel_futures=True)
