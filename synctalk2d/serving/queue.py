"""Where queued jobs run: the server's own thread pool (`LocalQueue`, the default), or RQ
workers on any machine that shares the avatar store and the jobs directory
(`RedisQueue` on the server, `run_worker` behind `synctalk2d worker`).

Both only carry job ids: the job itself (its state, progress and heartbeat) is in the
durable job store, which every runner opens (SQLite without a queue; with one, the
`RedisJobStore` in the queue's own Redis, so workers on other machines share nothing but
Redis and the directories), and its files are in the jobs directory. The server answers
status requests the same way in both modes, a job lost by the queue is handed over again
(the server queues its queued jobs again at start), and a job delivered twice runs once
(the store's atomic `claim`). RQ workers are `SimpleWorker`s, which run jobs in their own
process rather than a fork per job, so the avatars they loaded stay loaded between jobs.
"""

from __future__ import annotations

import uuid
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Protocol

from synctalk2d.serving.avatars import AvatarStore
from synctalk2d.serving.jobs import Store, connect, open_store
from synctalk2d.serving.tasks import run_job

QUEUE_NAME = "synctalk2d"
TIMEOUT_MARGIN = 30  # seconds RQ waits past --job-timeout before it kills a job the store already failed


class JobQueue(Protocol):
    def submit(self, job_id: str) -> None: ...

    def close(self) -> None: ...


class LocalQueue:
    """Jobs run in ``workers`` threads of this process."""

    def __init__(self, jobs: Store, avatars: AvatarStore, workers: int = 1):
        self.jobs, self.avatars = jobs, avatars
        self.pool = ThreadPoolExecutor(workers, thread_name_prefix="job")

    def submit(self, job_id: str) -> None:
        self.pool.submit(run_job, self.jobs, self.avatars, job_id)

    def close(self) -> None:
        self.pool.shutdown(wait=False, cancel_futures=True)


class RedisQueue:
    """Jobs go to RQ's queue at ``url``; `synctalk2d worker` processes run them."""

    def __init__(self, url: str, job_timeout: float):
        from rq import Queue

        self.queue = Queue(QUEUE_NAME, connection=connect(url))
        self.timeout = int(job_timeout) + TIMEOUT_MARGIN

    def submit(self, job_id: str) -> None:
        # each delivery its own RQ id: a job queued again after its worker died is a new RQ job
        self.queue.enqueue_call(perform, args=(job_id,), timeout=self.timeout, job_id=f"{job_id}-{uuid.uuid4().hex[:8]}", result_ttl=0)

    def close(self) -> None:
        self.queue.connection.close()


_worker_stores: tuple[Store, AvatarStore] | None = None  # set by `run_worker` in a worker process


def perform(job_id: str) -> None:
    """The function RQ calls in a worker: run one job with the worker's stores."""
    run_job(*_worker_stores, job_id)


def run_worker(url: str, avatars_dir: Path, jobs_dir: Path, max_loaded: int = 4) -> None:
    """Run jobs from the queue at ``url`` until stopped (SIGINT/SIGTERM end it after the current job)."""
    global _worker_stores
    from rq import SimpleWorker

    from synctalk2d.errors import UserError

    if not Path(avatars_dir).is_dir():
        raise UserError(f"{avatars_dir}: no such avatar directory")
    connection = connect(url)
    _worker_stores = (open_store(jobs_dir, url), AvatarStore(avatars_dir, max_loaded))
    SimpleWorker([QUEUE_NAME], connection=connection).work(logging_level="WARNING")
