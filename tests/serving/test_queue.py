"""Jobs on RQ workers (`serve --queue`, `synctalk2d worker`) against a real redis-server:
a worker killed mid-job loses nothing, and the job is done once, by another worker. The job
records are in Redis, so server and workers share only Redis and the jobs directory."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time

import pytest
from fastapi.testclient import TestClient

from synctalk2d.serving.app import ServerSettings, create_app
from synctalk2d.serving.avatars import AvatarStore
from synctalk2d.serving.jobs import DATABASE, RedisJobStore
from synctalk2d.serving.queue import QUEUE_NAME, perform
from tests.conftest import decode_rgb, write_speech
from tests.serving.fixtures import free_port, spawn, stop
from tests.serving.test_app import wait_for_job

pytestmark = pytest.mark.slow


def test_a_worker_killed_mid_job_loses_nothing(redis_url, mouth_avatar, tmp_path):
    store_dir, jobs_dir = mouth_avatar.root.parent, tmp_path / "jobs"
    from redis import Redis
    from rq import Queue, Worker

    connection = Redis.from_url(redis_url)
    jobs_dir.mkdir()
    mount = tmp_path / "mnt-jobs"  # the workers' path to the shared jobs directory differs from the server's, as on other machines
    mount.symlink_to(jobs_dir, target_is_directory=True)
    workers = [spawn("worker", "--queue", redis_url, "--avatars", str(store_dir), "--jobs-dir", str(mount)) for _ in range(2)]
    settings = ServerSettings(queue=redis_url, jobs_dir=jobs_dir, stale_after=3.0, sweep_every=0.5)
    try:
        deadline = time.time() + 60
        while len(Worker.all(connection=connection)) < 2:
            assert time.time() < deadline and all(w.poll() is None for w in workers), "the workers did not start"
            time.sleep(0.2)
        with TestClient(create_app(AvatarStore(store_dir), settings)) as client:
            audio = write_speech(tmp_path / "speech.wav", 6.0)
            created = client.post(f"/v1/avatars/{mouth_avatar.root.name}/videos", files={"audio": ("speech.wav", audio.read_bytes())})
            job_id = created.json()["id"]
            store = RedisJobStore(jobs_dir, redis_url)
            while store.get(job_id).progress == 0:  # running, with frames rendered
                time.sleep(0.05)
            first = store.get(job_id).worker
            victim = next(w for w in workers if first.endswith(f"/{w.pid}"))
            os.kill(victim.pid, signal.SIGKILL)
            victim.wait()
            assert client.get("/healthz").json()["queue"] == "redis"
            done = wait_for_job(client, job_id, timeout=60)
            job = store.get(job_id)
            # delivered again after it is done (as `RedisQueue.submit` does): a worker runs the delivery, not the job
            delivery = Queue(QUEUE_NAME, connection=connection).enqueue_call(perform, args=(job_id,), job_id=f"{job_id}-again", result_ttl=60)
            deadline = time.time() + 30
            while delivery.get_status(refresh=True) != "finished":
                assert time.time() < deadline, delivery.get_status()
                time.sleep(0.1)
            again = store.get(job_id)
    finally:
        for worker in workers:
            stop(worker)
    survivor = next(w for w in workers if w is not victim)
    assert survivor.returncode == 0  # SIGTERM: a clean stop, not the kill `stop` falls back to
    assert done["status"] == "done" and job.attempts == 2 and job.worker != first
    assert (again.attempts, again.worker, again.finished) == (job.attempts, job.worker, job.finished)
    assert not list(jobs_dir.glob(DATABASE + "*"))  # no SQLite in queue mode: the records are in Redis
    assert sorted(p.name for p in (jobs_dir / job_id).iterdir()) == ["output.mp4"]  # once: no half-written copy left
    assert len(decode_rgb(jobs_dir / job_id / "output.mp4")) == 150


def test_a_queue_that_cannot_be_reached_is_one_line(tmp_path):
    port = free_port()  # nothing listens there
    result = subprocess.run(
        [sys.executable, "-m", "synctalk2d", "worker", "--queue", f"redis://127.0.0.1:{port}/0", "--avatars", str(tmp_path), "--jobs-dir", str(tmp_path)],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 1 and result.stderr.count("\n") == 1 and "cannot reach the queue" in result.stderr


def test_a_queue_needs_a_shared_jobs_dir(tmp_path):
    result = subprocess.run(
        [sys.executable, "-m", "synctalk2d", "serve", "--avatars", str(tmp_path), "--queue", "redis://127.0.0.1:1/0"],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 1 and result.stderr.count("\n") == 1 and "--queue needs --jobs-dir" in result.stderr
