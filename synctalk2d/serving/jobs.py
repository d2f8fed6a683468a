"""The durable job store: every render and avatar job is a record and a directory.

Where the record lives depends on where jobs run. Without a queue (jobs run in the
server's own threads) it is a row of SQLite, ``jobs.sqlite`` in the jobs directory (WAL
mode, so the server reads while its threads write): `JobStore`. With ``--queue
redis://...`` (jobs run on RQ workers, on any number of machines) it is a hash in the same
Redis server as the queue, so nothing but Redis and the shared jobs directory is common to
the machines: `RedisJobStore`. Both have the same methods and the same rules; `open_store`
picks one.

Each job also has a directory in the jobs directory, named by its random id (ids are
checked against `JOB_ID` before they are ever joined to a path), with its input and
output. The store is the one record of a job's state for whoever runs it: a job is
*claimed* by one runner at a time (an atomic check-and-set, so a job delivered twice runs
once), the runner's heartbeat shows it is alive, and a job whose heartbeat stopped (its
process died) is queued again once (`MAX_ATTEMPTS`) and otherwise failed with the reason.
Finished jobs (and their files) go `retention` seconds after they finish.
"""

from __future__ import annotations

import re
import shutil
import sqlite3
import threading
import time
import uuid
from abc import ABC, abstractmethod
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


class Store(ABC):
    """What both stores share: the job directories in ``root`` (created if missing), the
    queue limit and the retention. Every process that runs or serves jobs opens its own."""

    def __init__(self, root: str | Path, max_queued: int = 16, retention: float = 3600.0):
        self.root = Path(root)
        self.root.mkdir(parents=True, exist_ok=True)
        self.max_queued = max_queued
        self.retention = retention

    @abstractmethod
    def counts(self) -> dict[str, int]:
        """Jobs by status."""

    def output(self, job: Job) -> Path:
        return job.directory / OUTPUT

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


class JobStore(Store):
    """Jobs in SQLite (``jobs.sqlite`` in ``root``): the embedded store, for jobs run by the server itself."""

    def __init__(self, root: str | Path, max_queued: int = 16, retention: float = 3600.0):
        super().__init__(root, max_queued, retention)
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

    def counts(self) -> dict[str, int]:
        rows = self._execute("SELECT status, COUNT(*) FROM jobs GROUP BY status").fetchall()
        return {status: dict(rows).get(status, 0) for status in ("queued", "running", "done", "failed")}

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


def connect(url: str, decode_responses: bool = False):
    """A Redis connection to ``url`` (redis://host:port/db), checked now so a wrong URL fails at start in one line."""
    from redis import Redis
    from redis.exceptions import RedisError

    from synctalk2d.errors import UserError

    connection = Redis.from_url(url, decode_responses=decode_responses)
    try:
        connection.ping()
    except RedisError as e:
        raise UserError(f"cannot reach the queue at {url}: {e}") from None
    return connection


STATUSES = ("queued", "running", "done", "failed")
NUMBERS = {"progress": float, "attempts": int, "created": float, "started": float, "heartbeat": float, "finished": float}

# Every change of a job's state is one Lua script, which Redis runs atomically: the check
# (still queued? still this runner's?) and the change cannot be split by another runner.
# Times come from Redis's clock (TIME), one clock for every machine. Keys: PREFIX:job:ID (a
# hash of the job's fields; a None is a missing field), PREFIX:STATUS (the ids in that
# status, scored by creation time) and PREFIX:finished (ids scored by the time they ended).
LUA_COMMON = """
local prefix = ARGV[1]
local function clock()
    local t = redis.call('TIME')
    return tonumber(t[1]) + tonumber(t[2]) / 1e6
end
local function move(id, from, to)
    redis.call('ZREM', prefix .. ':' .. from, id)
    redis.call('ZADD', prefix .. ':' .. to, redis.call('HGET', prefix .. ':job:' .. id, 'created'), id)
end
local function fail(id, reason, now)
    redis.call('HSET', prefix .. ':job:' .. id, 'status', 'failed', 'error', reason, 'finished', now)
    move(id, 'running', 'failed')
    redis.call('ZADD', prefix .. ':finished', now, id)
end
"""
LUA = {
    # ARGV: prefix, id, field, value, ...
    "submit": """
local key = prefix .. ':job:' .. ARGV[2]
local now = clock()
redis.call('HSET', key, unpack(ARGV, 3))
redis.call('HSET', key, 'created', now, 'status', 'queued')
redis.call('ZADD', prefix .. ':queued', now, ARGV[2])
""",
    # ARGV: prefix, id, worker
    "claim": """
local key = prefix .. ':job:' .. ARGV[2]
if redis.call('HGET', key, 'status') ~= 'queued' then return 0 end
local now = clock()
redis.call('HSET', key, 'status', 'running', 'worker', ARGV[3], 'started', now, 'heartbeat', now, 'progress', 0)
redis.call('HINCRBY', key, 'attempts', 1)
move(ARGV[2], 'queued', 'running')
return 1
""",
    # ARGV: prefix, id, worker, progress ('' keeps it)
    "beat": """
local key = prefix .. ':job:' .. ARGV[2]
local state = redis.call('HMGET', key, 'status', 'worker')
if state[1] ~= 'running' or state[2] ~= ARGV[3] then return 0 end
redis.call('HSET', key, 'heartbeat', clock())
if ARGV[4] ~= '' then redis.call('HSET', key, 'progress', ARGV[4]) end
return 1
""",
    # ARGV: prefix, id, worker, error ('' for done)
    "finish": """
local key = prefix .. ':job:' .. ARGV[2]
local state = redis.call('HMGET', key, 'status', 'worker')
if state[1] ~= 'running' or state[2] ~= ARGV[3] then return 0 end
local now = clock()
if ARGV[4] ~= '' then
    fail(ARGV[2], ARGV[4], now)
else
    redis.call('HSET', key, 'status', 'done', 'progress', 1, 'finished', now)
    move(ARGV[2], 'running', 'done')
    redis.call('ZADD', prefix .. ':finished', now, ARGV[2])
end
return 1
""",
    # ARGV: prefix, silent_for, max_attempts; returns the ids queued again
    "recover": """
local now = clock()
local cutoff = now - tonumber(ARGV[2])
local retry = {}
for _, id in ipairs(redis.call('ZRANGE', prefix .. ':running', 0, -1)) do
    local key = prefix .. ':job:' .. id
    local state = redis.call('HMGET', key, 'heartbeat', 'attempts')
    if tonumber(state[1] or '0') < cutoff then
        local attempts = tonumber(state[2] or '0')
        if attempts < tonumber(ARGV[3]) then
            redis.call('HSET', key, 'status', 'queued', 'progress', 0)
            redis.call('HDEL', key, 'worker')
            move(id, 'running', 'queued')
            table.insert(retry, id)
        else
            fail(id, 'its worker stopped while running it, ' .. attempts .. ' times', now)
        end
    end
end
return retry
""",
    # ARGV: prefix, timeout, reason; returns how many failed
    "expire": """
local now = clock()
local cutoff = now - tonumber(ARGV[2])
local failed = 0
for _, id in ipairs(redis.call('ZRANGE', prefix .. ':running', 0, -1)) do
    if tonumber(redis.call('HGET', prefix .. ':job:' .. id, 'started') or now) < cutoff then
        fail(id, ARGV[3], now)
        failed = failed + 1
    end
end
return failed
""",
    # ARGV: prefix, retention, now ('' for Redis's clock); returns the ids removed
    "clean": """
local now = ARGV[3] ~= '' and tonumber(ARGV[3]) or clock()
local ids = redis.call('ZRANGEBYSCORE', prefix .. ':finished', '-inf', '(' .. (now - tonumber(ARGV[2])))
for _, id in ipairs(ids) do
    for _, status in ipairs({'queued', 'running', 'done', 'failed', 'finished'}) do
        redis.call('ZREM', prefix .. ':' .. status, id)
    end
    redis.call('DEL', prefix .. ':job:' .. id)
end
return ids
""",
    # ARGV: prefix, id
    "discard": """
for _, status in ipairs({'queued', 'running', 'done', 'failed', 'finished'}) do
    redis.call('ZREM', prefix .. ':' .. status, ARGV[2])
end
redis.call('DEL', prefix .. ':job:' .. ARGV[2])
""",
}


class RedisJobStore(Store):
    """Jobs in Redis at ``url`` (the queue's server), their files in ``root``: the store for
    RQ workers on any number of machines that share only Redis and the jobs directory."""

    def __init__(self, root: str | Path, url: str, max_queued: int = 16, retention: float = 3600.0, prefix: str = "synctalk2d:jobs"):
        super().__init__(root, max_queued, retention)
        self.url, self.prefix = url, prefix
        self.redis = connect(url, decode_responses=True)
        self.scripts = {name: self.redis.register_script(LUA_COMMON + body) for name, body in LUA.items()}

    def _run(self, script: str, *args):
        return self.scripts[script](args=[self.prefix, *args])

    def get(self, job_id: str) -> Job | None:
        """The job with ``job_id``, or None for an unknown or malformed id."""
        if not JOB_ID.fullmatch(job_id):
            return None
        fields = self.redis.hgetall(f"{self.prefix}:job:{job_id}")
        if not fields:
            return None
        job = Job(**{column: NUMBERS.get(column, str)(value) for column, value in fields.items() if column in COLUMNS})
        job.directory = self.root / job.id
        return job

    def counts(self) -> dict[str, int]:
        with self.redis.pipeline(transaction=False) as pipe:
            for status in STATUSES:
                pipe.zcard(f"{self.prefix}:{status}")
            return dict(zip(STATUSES, pipe.execute()))

    def submit(self, job: Job) -> None:
        """Record ``job`` as queued: from now on it survives server restarts (and Redis
        restarts, where Redis persists its data)."""
        values = [item for column in COLUMNS if getattr(job, column) is not None for item in (column, getattr(job, column))]
        self._run("submit", job.id, *values)

    def discard(self, job: Job) -> None:
        self._run("discard", job.id)
        shutil.rmtree(job.directory, ignore_errors=True)

    def queued(self) -> list[str]:
        return self.redis.zrange(f"{self.prefix}:queued", 0, -1)

    def claim(self, job_id: str, worker: str) -> Job | None:
        """Start ``job_id`` for ``worker`` if it is still queued (None: another runner has it, or it is gone)."""
        return self.get(job_id) if self._run("claim", job_id, worker) else None

    def beat(self, job_id: str, worker: str, progress: float | None = None) -> bool:
        """The runner is alive (and how far it got); False once the job is no longer its own."""
        return self._run("beat", job_id, worker, "" if progress is None else repr(float(progress))) == 1

    def finish(self, job_id: str, worker: str, error: str | None = None) -> bool:
        """Mark the job done (or failed with ``error``) if ``worker`` still owns it."""
        return self._run("finish", job_id, worker, error or "") == 1

    def recover(self, silent_for: float) -> list[str]:
        """Running jobs whose runner has not beaten for ``silent_for`` seconds (it died):
        queued again if they have attempts left, failed otherwise. Returns the ids queued again."""
        return list(self._run("recover", repr(float(silent_for)), MAX_ATTEMPTS))

    def expire(self, timeout: float) -> int:
        """Fail jobs running longer than ``timeout`` seconds (stuck); returns how many."""
        return self._run("expire", repr(float(timeout)), f"the job took longer than {timeout:g} s (--job-timeout)")

    def clean(self, now: float | None = None) -> int:
        """Remove jobs finished more than ``retention`` seconds ago; returns how many."""
        removed = self._run("clean", repr(float(self.retention)), "" if now is None else repr(float(now)))
        for job_id in removed:
            shutil.rmtree(self.root / job_id, ignore_errors=True)
        return len(removed)

    def close(self) -> None:
        self.redis.close()


def open_store(root: str | Path, queue: str | None = None, max_queued: int = 16, retention: float = 3600.0) -> Store:
    """The job store for a server or worker: in Redis with a queue URL, in SQLite without."""
    if queue:
        return RedisJobStore(root, queue, max_queued, retention)
    return JobStore(root, max_queued, retention)
