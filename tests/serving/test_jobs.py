"""The durable job stores (SQLite, and Redis for `--queue`): one runner per job, dead
runners' jobs retried once, stuck jobs failed, and a server killed mid-queue that picks its
jobs up again after a restart."""

from __future__ import annotations

import json
import os
import signal
import time
import urllib.request
import uuid

import pytest
from fastapi.testclient import TestClient

from synctalk2d.serving.app import ServerSettings, create_app
from synctalk2d.serving.jobs import MAX_ATTEMPTS, JobStore, RedisJobStore
from tests.conftest import decode_rgb, write_speech
from tests.serving.fixtures import free_port, spawn, stop, wait_for_port
from tests.serving.test_app import wait_for_job


@pytest.fixture(params=["sqlite", "redis"])
def open_store(request):
    """Opens the job store of a jobs directory: SQLite, or Redis (keys of this test's own)."""
    if request.param == "sqlite":
        return JobStore
    url, prefix = request.getfixturevalue("redis_url"), f"test-{uuid.uuid4().hex}"
    return lambda root: RedisJobStore(root, url, prefix=prefix)


def queued_job(store, avatar: str = "a"):
    job = store.create("render", avatar)
    store.submit(job)
    return job


def test_a_job_is_claimed_once_and_only_its_runner_finishes_it(open_store, tmp_path):
    store = open_store(tmp_path)
    job = queued_job(store)
    assert store.claim(job.id, "w1").status == "running"
    assert store.claim(job.id, "w2") is None  # delivered twice: runs once
    assert not store.finish(job.id, "w2") and not store.beat(job.id, "w2", 0.5)
    assert store.beat(job.id, "w1", 0.5) and store.get(job.id).progress == 0.5
    assert store.finish(job.id, "w1")
    assert store.get(job.id).to_dict() | {"id": None} == {
        "id": None,
        "kind": "render",
        "avatar": "a",
        "status": "done",
        "progress": 1.0,
        "error": None,
        "attempts": 1,
    }


def test_a_dead_runner_s_job_is_retried_once_then_failed(open_store, tmp_path):
    store = open_store(tmp_path)
    job = queued_job(store)
    for attempt in range(1, MAX_ATTEMPTS + 1):
        store.claim(job.id, f"w{attempt}")
        assert store.recover(silent_for=60) == []  # still beating recently
        time.sleep(0.05)
        requeued = store.recover(silent_for=0.01)
        assert requeued == ([job.id] if attempt < MAX_ATTEMPTS else [])
    failed = store.get(job.id)
    assert failed.status == "failed" and failed.attempts == MAX_ATTEMPTS and "stopped while running it" in failed.error


def test_a_stuck_job_fails_with_the_reason_and_state_survives_reopening(open_store, tmp_path):
    store = open_store(tmp_path)
    stuck, waiting = queued_job(store), queued_job(store)
    store.claim(stuck.id, "w1")
    time.sleep(0.05)
    assert store.expire(timeout=0.01) == 1
    assert "--job-timeout" in store.get(stuck.id).error and not store.finish(stuck.id, "w1")
    store.close()
    reopened = open_store(tmp_path)
    assert reopened.queued() == [waiting.id] and reopened.get(stuck.id).status == "failed"
    assert reopened.clean(now=time.time() + reopened.retention + 1) == 1 and not stuck.directory.exists()


def post_audio(port: int, path, avatar: str) -> str:
    boundary = "synctalk2d-test"
    body = (f'--{boundary}\r\nContent-Disposition: form-data; name="audio"; filename="a.wav"\r\n\r\n').encode()
    body += path.read_bytes() + f"\r\n--{boundary}--\r\n".encode()
    request = urllib.request.Request(
        f"http://127.0.0.1:{port}/v1/avatars/{avatar}/videos", data=body, headers={"Content-Type": f"multipart/form-data; boundary={boundary}"}
    )
    return json.loads(urllib.request.urlopen(request).read())["id"]


@pytest.mark.slow
def test_jobs_survive_a_server_killed_mid_queue(mouth_avatar, tmp_path):
    """Two jobs queued, the server SIGKILLed while it renders the first: the restarted
    server renders the first again (attempt 2) and the second, and each MP4 exists once."""
    jobs_dir, avatar = tmp_path / "jobs", mouth_avatar.root
    audio = write_speech(tmp_path / "speech.wav", 6.0)
    port = free_port()
    server = spawn("serve", "--avatar", str(avatar), "--port", str(port), "--jobs-dir", str(jobs_dir))
    try:
        wait_for_port(port, server)
        first, second = (post_audio(port, audio, avatar.name) for _ in range(2))
        store = JobStore(jobs_dir)
        while store.get(first).status != "running" or store.get(first).progress == 0:
            time.sleep(0.05)
        os.kill(server.pid, signal.SIGKILL)
        server.wait()
        assert [store.get(first).status, store.get(second).status] == ["running", "queued"]
        port = free_port()
        server = spawn("serve", "--avatar", str(avatar), "--port", str(port), "--jobs-dir", str(jobs_dir))
        wait_for_port(port, server)
        deadline = time.time() + 60
        while {store.get(first).status, store.get(second).status} != {"done"} and time.time() < deadline:
            time.sleep(0.2)
    finally:
        stop(server)
    assert [store.get(first).attempts, store.get(second).attempts] == [2, 1]
    for job_id in (first, second):
        assert sorted(p.name for p in (jobs_dir / job_id).iterdir()) == ["output.mp4"]  # no half-written leftovers, input gone
        assert len(decode_rgb(jobs_dir / job_id / "output.mp4")) == 150


@pytest.mark.slow
def test_a_job_past_its_timeout_is_failed_as_stuck(mouth_avatar, lipsync, tmp_path):
    settings = ServerSettings(jobs_dir=tmp_path / "jobs", job_timeout=0.5, sweep_every=0.2)
    with TestClient(create_app(mouth_avatar.root, settings, lipsync)) as client:
        audio = write_speech(tmp_path / "speech.wav", 10.0).read_bytes()
        job_id = client.post("/v1/videos", files={"audio": ("speech.wav", audio)}).json()["id"]
        failed = wait_for_job(client, job_id, timeout=30)
    assert failed["status"] == "failed" and "longer than 0.5 s (--job-timeout)" in failed["error"]
