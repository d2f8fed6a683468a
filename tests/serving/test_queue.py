"""Jobs on RQ workers (`serve --queue`, `synctalk2d worker`) against a real redis-server:
a worker killed mid-job loses nothing, and the job is done once, by another worker."""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import time

import pytest
from fastapi.testclient import TestClient

from synctalk2d.serving.app import ServerSettings, create_app
from synctalk2d.serving.avatars import AvatarStore
from synctalk2d.serving.jobs import JobStore
from tests.conftest import decode_rgb, write_speech
from tests.serving.fixtures import free_port, spawn, stop, wait_for_port
from tests.serving.test_app import wait_for_job

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def redis_url():
    """A redis-server of our own on a free loopback port, nothing saved to disk."""
    binary = shutil.which("redis-server")
    if binary is None:
        pytest.skip("redis-server is missing: run `make redis` (Debian's redis-server package)")
    port = free_port()
    server = subprocess.Popen(
        [binary, "--port", str(port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no"], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
    )
    try:
        wait_for_port(port, server, timeout=10)
        yield f"redis://127.0.0.1:{port}/0"
    finally:
        stop(server)


def test_a_worker_killed_mid_job_loses_nothing(redis_url, mouth_avatar, tmp_path):
    store_dir, jobs_dir = mouth_avatar.root.parent, tmp_path / "jobs"
    from redis import Redis
    from rq import Worker

    connection = Redis.from_url(redis_url)
    workers = [spawn("worker", "--queue", redis_url, "--avatars", str(store_dir), "--jobs-dir", str(jobs_dir)) for _ in range(2)]
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
            store = JobStore(jobs_dir)
            while store.get(job_id).progress == 0:  # running, with frames rendered
                time.sleep(0.05)
            first = store.get(job_id).worker
            victim = next(w for w in workers if first.endswith(f"/{w.pid}"))
            os.kill(victim.pid, signal.SIGKILL)
            victim.wait()
            assert client.get("/healthz").json()["queue"] == "redis"
            done = wait_for_job(client, job_id, timeout=60)
            job = store.get(job_id)
    finally:
        for worker in workers:
            stop(worker)
    survivor = next(w for w in workers if w is not victim)
    assert survivor.returncode == 0  # SIGTERM: a clean stop, not the kill `stop` falls back to
    assert done["status"] == "done" and job.attempts == 2 and job.worker != first
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
