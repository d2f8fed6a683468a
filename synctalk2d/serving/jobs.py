"""The durable job store: every render and avatar job is a row in SQLite and a directory.

The table lives in ``jobs.sqlite`` (WAL mode, so the server reads while workers write) in
the jobs directory, beside one directory per job named by its random id; ids are checked
against `JOB_ID` before they are ever joined to a path. The store is the one record of a
job's state for whoever runs it (the server's own thread pool or RQ workers on the same
jobs directory): a job is *claimed* by one runner at a time (a conditional update, so a
job delivered twice runs once), the runner's heartbeat shows it is alive, and a job whose
heartbeat stopped (its process died) is queued again once (`MAX_ATTEMPTS`) and otherwise
failed with the reason. Finished jobs (and their files) go `retention` seconds after they
finish.
"""

from __future__ import annotations

import re
import shutil
import sqlite3
import threading
import time
import uuid
from dataclasses import dataclass, fields
from pathlib import Path

JOB_ID = re.compile(r"[0-9a-f]{32}")
INPUT, OUTPUT = "input", "output.mp4"
DATABASE = "jobs.sqlite"
MAX_ATTEMPTS = 2  # a job whose runner died is retried once
KINDS = ("render", "avatar")

SCHEMA = """
CREATE TABLE IF NOT EXISTS jobs (
    id TEXT PRIMARY KEY,
    kind TEXT NOT NULL,
    avatar TEXT NOT NULL,
    name TEXT,
    status TEXT NOT NULL,
    progress REAL NOT NULL DEFAULT 0,
    error TEXT,
    attempts INTEGER NOT NULL DEFAULT 0,
    worker TEXT,
    created REAL NOT NULL,
    started REAL,
    heartbeat REAL,
    finished REAL
)
"""


class QueueFull(Exception):
    """More jobs are waiting than the server accepts."""


@dataclass
class Job:
    id: str
    kind: str  # render | avatar
    avatar: str  # the avatar it renders, or the one it creates
    name: str | None = None  # a new avatar's display name
    status: str = "queued"  # queued | running | done | failed
    progress: float = 0.0
    error: str | None = None
    attempts: int = 0
    worker: str | None = None
    created: float = 0.0
    started: float | None = None
    heartbeat: float | None = None
    finished: float | None = None
    directory: Path | None = None

    def to_dict(self) -> dict:
        return {
            "id": self.id,
            "kind": self.kind,
            "avatar": self.avatar,
            "status": self.status,
            "progress": round(self.progress, 3),
            "error": self.error,
            "attempts": self.attempts,
        }


COLUMNS = [f.name for f in fields(Job) if f.name != "directory"]


class JobStore:
    """Jobs in ``root`` (created if missing); every process that runs or serves jobs opens its own."""

    def __init__(self, root: str | Path, max_queued: int = 16, retention: float = 3600.0):
        self.root = Path(root)
        self.root.mkdir(parents=True, exist_ok=True)
        self.max_queued = max_queued
        self.retention = retention
        self.lock = threading.Lock()
        self.db = sqlite3.connect(self.root / DATABASE, timeout=30, isolation_level=None, check_same_thread=False)
        self.db.execute("PRAGMA journal_mode=WAL")
        self.db.execute("PRAGMA synchronous=NORMAL")
        self.db.execute(SCHEMA)

    def _execute(self, sql: str, *args) -> sqlite3.Cursor:
        with self.lock:
            return self.db.execute(sql, args)

    def _job(self, row: tuple) -> Job:
        job = Job(**dict(zip(COLUMNS, row)))
        job.directory = self.root / job.id
        return job

    def get(self, job_id: str) -> Job | None:
        """The job with ``job_id``, or None for an unknown or malformed id."""
        if not JOB_ID.fullmatch(job_id):
            return None
        row = self._execute(f"SELECT {', '.join(COLUMNS)} FROM jobs WHERE id = ?", job_id).fetchone()
        return self._job(row) if row else None

    def output(self, job: Job) -> Path:
        return job.directory / OUTPUT

    def counts(self) -> dict[str, int]:
        rows = self._execute("SELECT status, COUNT(*) FROM jobs GROUP BY status").fetchall()
        return {status: dict(rows).get(status, 0) for status in ("queued", "running", "done", "failed")}

    def create(self, kind: str, avatar: str, name: str | None = None) -> Job:
        """A new job and its directory, not yet queued: the caller writes its input, then
        calls `submit` (or `discard` when the input is refused)."""
        counts = self.counts()
        if counts["queued"] + counts["running"] >= self.max_queued:
            raise QueueFull(f"{counts['queued'] + counts['running']} jobs are already waiting; try again later")
        job = Job(uuid.uuid4().hex, kind, avatar, name, created=time.time())
        job.directory = self.root / job.id
        job.directory.mkdir()
        return job

    def submit(self, job: Job) -> None:
        """Record ``job`` as queued: from now on it survives restarts."""
        values = [getattr(job, column) for column in COLUMNS]
        self._execute(f"INSERT INTO jobs ({', '.join(COLUMNS)}) VALUES ({', '.join('?' * len(COLUMNS))})", *values)

    def discard(self, job: Job) -> None:
        self._execute("DELETE FROM jobs WHERE id = ?", job.id)
        shutil.rmtree(job.directory, ignore_errors=True)

    def queued(self) -> list[str]:
        return [row[0] for row in self._execute("SELECT id FROM jobs WHERE status = 'queued' ORDER BY created").fetchall()]

    def claim(self, job_id: str, worker: str) -> Job | None:
        """Start ``job_id`` for ``worker`` if it is still queued (None: another runner has it, or it is gone)."""
        now = time.time()
        sql = "UPDATE jobs SET status = 'running', worker = ?, attempts = attempts + 1, started = ?, heartbeat = ?, progress = 0"
        sql += " WHERE id = ? AND status = 'queued'"
        claimed = self._execute(sql, worker, now, now, job_id).rowcount
        return self.get(job_id) if claimed else None

    def beat(self, job_id: str, worker: str, progress: float | None = None) -> bool:
        """The runner is alive (and how far it got); False once the job is no longer its own."""
        sql = "UPDATE jobs SET heartbeat = ?, progress = COALESCE(?, progress) WHERE id = ? AND worker = ? AND status = 'running'"
        return self._execute(sql, time.time(), progress, job_id, worker).rowcount == 1

    def finish(self, job_id: str, worker: str, error: str | None = None) -> bool:
        """Mark the job done (or failed with ``error``) if ``worker`` still owns it."""
        status, progress = ("failed", None) if error else ("done", 1.0)
        sql = "UPDATE jobs SET status = ?, error = ?, progress = COALESCE(?, progress), finished = ? WHERE id = ? AND worker = ? AND status = 'running'"
        return self._execute(sql, status, error, progress, time.time(), job_id, worker).rowcount == 1

    def recover(self, silent_for: float) -> list[str]:
        """Running jobs whose runner has not beaten for ``silent_for`` seconds (it died):
        queued again if they have attempts left, failed otherwise. Returns the ids queued again."""
        cutoff = time.time() - silent_for
        stale = self._execute("SELECT id, attempts FROM jobs WHERE status = 'running' AND heartbeat < ?", cutoff).fetchall()
        retry = []
        for job_id, attempts in stale:  # each update re-checks the row: its runner may have finished meanwhile
            if attempts < MAX_ATTEMPTS:
                sql = "UPDATE jobs SET status = 'queued', worker = NULL, progress = 0 WHERE id = ? AND status = 'running' AND heartbeat < ?"
                if self._execute(sql, job_id, cutoff).rowcount:
                    retry.append(job_id)
            else:
                reason = f"its worker stopped while running it, {attempts} times"
                sql = "UPDATE jobs SET status = 'failed', error = ?, finished = ? WHERE id = ? AND status = 'running' AND heartbeat < ?"
                self._execute(sql, reason, time.time(), job_id, cutoff)
        return retry

    def expire(self, timeout: float) -> int:
        """Fail jobs running longer than ``timeout`` seconds (stuck); returns how many."""
        reason = f"the job took longer than {timeout:g} s (--job-timeout)"
        sql = "UPDATE jobs SET status = 'failed', error = ?, finished = ? WHERE status = 'running' AND started < ?"
        return self._execute(sql, reason, time.time(), time.time() - timeout).rowcount

    def clean(self, now: float | None = None) -> int:
        """Remove jobs finished more than ``retention`` seconds ago; returns how many."""
        now = time.time() if now is None else now
        cutoff = now - self.retention
        expired = [row[0] for row in self._execute("SELECT id FROM jobs WHERE finished IS NOT NULL AND finished < ?", cutoff).fetchall()]
        for job_id in expired:
            self._execute("DELETE FROM jobs WHERE id = ?", job_id)
            shutil.rmtree(self.root / job_id, ignore_errors=True)
        return len(expired)

    def close(self) -> None:
        with self.lock:
            self.db.close()
