"""The HTTP API and live stream of `synctalk2d serve`, against a real trained avatar."""

from __future__ import annotations

import asyncio
import json
import threading
import time
import urllib.request

import cv2
import numpy as np
import pytest
from fastapi.testclient import TestClient
from websockets.exceptions import ConnectionClosed
from websockets.sync.client import connect

from synctalk2d.media.audio import load_audio
from synctalk2d.serving.app import ServerSettings, create_app
from synctalk2d.serving.live import OUTBOX_FRAMES, Outbox
from tests.conftest import decode_rgb, fixture_path, write_speech
from tests.serving.fixtures import Server

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def client(mouth_avatar, lipsync, tmp_path_factory):
    settings = ServerSettings(jobs_dir=tmp_path_factory.mktemp("jobs"), max_upload_mb=1.0, max_audio_seconds=20, max_sessions=2)
    with TestClient(create_app(mouth_avatar.root, settings, lipsync)) as client:
        yield client


def pcm(seconds: float) -> bytes:
    wav, _ = load_audio(fixture_path("speech_44k.wav"))
    return (np.clip(wav[: int(seconds * 16000)], -1, 1) * 32767).astype("<i2").tobytes()


def wait_for_job(client, job_id: str, timeout: float = 120) -> dict:
    deadline = time.time() + timeout
    while time.time() < deadline:
        status = client.get(f"/v1/videos/{job_id}").json()
        assert 0 <= status["progress"] <= 1
        if status["status"] in ("done", "failed"):
            return status
        time.sleep(0.2)
    raise AssertionError("the job did not finish")


def test_health(client, mouth_avatar):
    health = client.get("/healthz").json()
    assert health["status"] == "ok" and health["conditioning"] == "mouth" and health["frames"] == len(mouth_avatar)


def test_job_life_cycle(client, tmp_path):
    audio = write_speech(tmp_path / "hello.mp3", 2.0)
    created = client.post("/v1/videos", files={"audio": ("whatever.bin", audio.read_bytes(), "application/octet-stream")})
    assert created.status_code == 202
    job_id = created.json()["id"]
    assert wait_for_job(client, job_id)["status"] == "done"
    video = client.get(f"/v1/videos/{job_id}/file")
    assert video.status_code == 200 and video.headers["content-type"] == "video/mp4"
    (tmp_path / "out.mp4").write_bytes(video.content)
    wav, _ = load_audio(audio)
    assert len(decode_rgb(tmp_path / "out.mp4")) == int(np.ceil(len(wav) / 640))
    # past the retention time the job and its files are gone
    jobs = client.app.state.jobs
    directory = jobs.get(job_id).directory
    assert jobs.clean(now=time.time() + jobs.retention + 1) >= 1
    assert not directory.exists() and client.get(f"/v1/videos/{job_id}").status_code == 404


def test_bad_uploads_are_refused_with_a_json_reason(client, tmp_path):
    not_audio = client.post("/v1/videos", files={"audio": ("speech.wav", b"RIFF" + b"\0" * 5000, "audio/wav")})
    assert not_audio.status_code == 415 and "decode" in not_audio.json()["error"]
    no_field = client.post("/v1/videos", files={"file": ("speech.wav", b"x", "audio/wav")})
    assert no_field.status_code == 400 and "audio" in no_field.json()["error"]
    too_big = client.post("/v1/videos", files={"audio": ("big.wav", b"\0" * 1_200_000, "audio/wav")})
    assert too_big.status_code == 413 and "1 MB" in too_big.json()["error"]
    long_audio = tmp_path / "long.flac"
    write_speech(long_audio, 4.0, silence_after=20.0)  # 24 s, under 1 MB as FLAC
    too_long = client.post("/v1/videos", files={"audio": ("long.flac", long_audio.read_bytes(), "audio/flac")})
    assert too_long.status_code == 413 and "at most 20 s" in too_long.json()["error"]
    assert client.app.state.jobs.counts()["queued"] == 0


@pytest.mark.parametrize("job_id", ["..%2F..%2Fetc%2Fpasswd", "%2E%2E", "0" * 32, "A" * 32, "abc"])
def test_unknown_or_crafted_job_ids_find_nothing(client, job_id):
    for suffix in ("", "/file"):
        response = client.get(f"/v1/videos/{job_id}{suffix}")
        assert response.status_code == 404


def test_api_key_is_required_when_set(mouth_avatar, lipsync):
    app = create_app(mouth_avatar.root, ServerSettings(api_key="s3cret"), lipsync)
    with TestClient(app) as client:
        assert client.get("/").status_code == 200  # the page itself is public
        assert client.get("/healthz").status_code == 401
        assert client.get("/healthz", headers={"X-API-Key": "s3cret"}).status_code == 200
        assert client.get("/healthz", headers={"Authorization": "Bearer s3cret"}).status_code == 200
    with Server(app) as server:
        with connect(server.url("/v1/stream?key=wrong", "ws")) as ws:
            assert json.loads(ws.recv())["type"] == "error"
            with pytest.raises(ConnectionClosed) as closed:
                ws.recv()
            assert closed.value.rcvd.code == 4401
        with connect(server.url("/v1/stream?key=s3cret", "ws")) as ws:
            assert json.loads(ws.recv())["type"] == "ready"


def receive_utterance(ws, limit: float = 30.0) -> dict:
    """Messages until the utterance ends: frames (arrival times), frame events, other events."""
    out = {"frames": [], "frame_events": [], "events": []}
    deadline = time.time() + limit
    while time.time() < deadline:
        message = ws.recv()
        if isinstance(message, bytes):
            out["frames"].append((time.perf_counter(), message))
            continue
        event = json.loads(message)
        (out["frame_events"] if event["type"] == "frame" else out["events"]).append(event)
        if event["type"] == "utterance_ended":
            return out
    raise AssertionError("the utterance did not end")


def send_live(ws, audio: bytes, seconds_per_chunk: float = 0.02) -> None:
    size = int(seconds_per_chunk * 16000) * 2
    started = time.perf_counter()
    for i in range(0, len(audio), size):
        time.sleep(max(0.0, started + (i + size) / 32000 - time.perf_counter()))
        ws.send(audio[i : i + size])
    ws.send(json.dumps({"type": "end"}))


def test_live_stream_speaks_at_25_fps(live_server):
    audio = pcm(3.0)
    with connect(live_server.url("/v1/stream?width=320", "ws")) as ws:
        ready = json.loads(ws.recv())
        assert ready["type"] == "ready" and ready["width"] == 320 and ready["fps"] == 25
        sender = threading.Thread(target=send_live, args=(ws, audio))
        sender.start()
        got = receive_utterance(ws)
        sender.join()
    assert [e["type"] for e in got["events"]] == ["utterance_started", "utterance_ended"]
    indices = [e["index"] for e in got["frame_events"]]
    assert indices[0] == 0 and indices[-1] == 74 and len(indices) >= 70
    assert all(0 < e["latency_ms"] < 1000 for e in got["frame_events"])
    times = [t for t, _ in got["frames"]]
    speaking_span = times[-1] - times[-len(indices)]
    assert 22 <= (len(indices) - 1) / speaking_span <= 28  # frames per second
    image = cv2.imdecode(np.frombuffer(got["frames"][-1][1], np.uint8), cv2.IMREAD_COLOR)
    assert image.shape[1] == 320


def test_interrupt_stops_speaking_and_the_stream_goes_on_idle(live_server):
    with connect(live_server.url("/v1/stream", "ws")) as ws:
        ws.recv()
        ws.send(pcm(4.0))
        ws.send(json.dumps({"type": "end"}))
        spoken = 0
        while spoken < 5:
            message = ws.recv()
            spoken += isinstance(message, str) and json.loads(message)["type"] == "frame"
        ws.send(json.dumps({"type": "interrupt"}))
        got = receive_utterance(ws, limit=5)
        assert got["events"][-1] == {"type": "utterance_ended", "utterance": 0, "interrupted": True}
        assert len(got["frame_events"]) <= 5  # stopped within a few frames, not after 4 s
        idle = [ws.recv() for _ in range(10)]
        assert all(isinstance(m, bytes) for m in idle)  # frames keep coming, none speaks


def test_two_sessions_are_isolated_and_a_third_waits(live_server):
    results = {}

    def run(name: str, seconds: float):
        with connect(live_server.url("/v1/stream?width=240", "ws")) as ws:
            ws.recv()
            sender = threading.Thread(target=send_live, args=(ws, pcm(seconds)))
            sender.start()
            results[name] = receive_utterance(ws)
            sender.join()

    threads = [threading.Thread(target=run, args=(name, s)) for name, s in (("a", 1.0), ("b", 2.0))]
    for thread in threads:
        thread.start()
    time.sleep(0.5)
    with connect(live_server.url("/v1/stream", "ws")) as third:
        assert "try again later" in json.loads(third.recv())["message"]
        with pytest.raises(ConnectionClosed) as closed:
            third.recv()
        assert closed.value.rcvd.code == 1013
    for thread in threads:
        thread.join()
    assert [e["index"] for e in results["a"]["frame_events"]][-1] == 24
    assert [e["index"] for e in results["b"]["frame_events"]][-1] == 49
    assert all(e["utterance"] == 0 for r in results.values() for e in r["frame_events"])
    time.sleep(0.3)
    health = json.loads(urllib.request.urlopen(live_server.url("/healthz")).read())
    assert health["live_sessions"] == 0  # both released


def test_a_slow_client_loses_old_frames_not_events():
    async def fill():
        outbox = Outbox()
        for i in range(20):
            outbox.put(("frame", b"jpeg", i))
            if i % 5 == 0:
                outbox.put(("event", {"n": i}))
        return outbox, [await outbox.get() for _ in range(len(outbox.items))]

    outbox, items = asyncio.run(fill())
    frames = [item[2] for item in items if item[0] == "frame"]
    assert frames == list(range(20 - OUTBOX_FRAMES, 20)) and outbox.dropped == 20 - OUTBOX_FRAMES
    assert [item[1]["n"] for item in items if item[0] == "event"] == [0, 5, 10, 15]


def test_serve_refuses_a_missing_avatar_in_one_line(tmp_path):
    import subprocess
    import sys

    result = subprocess.run([sys.executable, "-m", "synctalk2d", "serve", "--avatar", str(tmp_path / "nowhere")], capture_output=True, text=True, timeout=120)
    assert result.returncode == 1
    assert result.stderr.count("\n") == 1 and result.stderr.startswith("synctalk2d: error:") and "nowhere" in result.stderr


def test_a_client_that_stops_reading_is_disconnected_and_freed(live_server, monkeypatch):
    """A client that stays connected but reads nothing: once the socket buffers are full the
    server's sends block, and after `SEND_TIMEOUT` it gives the session up."""
    from synctalk2d.serving import live

    monkeypatch.setattr(live, "SEND_TIMEOUT", 1.0)
    health = lambda: json.loads(urllib.request.urlopen(live_server.url("/healthz")).read())  # noqa: E731
    with connect(live_server.url("/v1/stream", "ws"), max_queue=1) as ws:  # full-size frames fill the buffers fast
        json.loads(ws.recv())
        assert health()["live_sessions"] == 1
        deadline = time.time() + 30
        while health()["live_sessions"] and time.time() < deadline:
            time.sleep(0.5)
        assert health()["live_sessions"] == 0
