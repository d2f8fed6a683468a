"""Many avatars on one server: the store and its cache, avatar ids, render jobs and live
streams that name their avatar, avatars created through the API, and the limits on all of it."""

from __future__ import annotations

import json
import threading

import numpy as np
import pytest
from fastapi.testclient import TestClient
from websockets.exceptions import ConnectionClosed
from websockets.sync.client import connect

from synctalk2d.serving.app import ServerSettings, create_app
from synctalk2d.serving.avatars import AvatarStore, UnknownAvatar
from tests.conftest import encode_clip, fixture_path, write_speech
from tests.serving.fixtures import Server
from tests.serving.test_app import pcm, receive_utterance, send_live, wait_for_job

pytestmark = pytest.mark.slow
BAD_IDS = ["..", "..%2F..%2Fetc", "a%2Fb", ".hidden", "%2E%2E", "x" * 65, "nobody"]


@pytest.fixture(scope="module")
def many(store_dir, tmp_path_factory):
    settings = ServerSettings(jobs_dir=tmp_path_factory.mktemp("jobs"), max_sessions=2)
    with TestClient(create_app(AvatarStore(store_dir, max_loaded=2), settings)) as client:
        yield client


def test_avatars_are_listed_with_what_a_client_needs(many, mouth_avatar):
    avatars = many.get("/v1/avatars").json()["avatars"]
    assert [a["id"] for a in avatars] == ["alice", "bob"]  # not `notes`, which holds no avatar
    alice = avatars[0]
    info = mouth_avatar.info
    assert alice | {"loaded": None} == {
        "id": "alice",
        "name": "alice",
        "frames": info.num_frames,
        "size": [info.width, info.height],
        "conditioning": "mouth",
        "ready": True,
        "loaded": None,
    }


@pytest.mark.parametrize("avatar_id", BAD_IDS)
def test_bad_or_unknown_avatar_ids_find_nothing(many, avatar_id, tmp_path):
    assert many.get(f"/v1/avatars/{avatar_id}").status_code == 404
    audio = write_speech(tmp_path / "a.wav", 0.5).read_bytes()
    assert many.post(f"/v1/avatars/{avatar_id}/videos", files={"audio": ("a.wav", audio)}).status_code in (400, 404)  # `..` may be resolved by the client
    with pytest.raises(UnknownAvatar):
        AvatarStore(tmp_path).path(avatar_id)


def test_a_render_job_names_its_avatar_and_the_old_route_asks_for_one(many, tmp_path):
    audio = write_speech(tmp_path / "hi.wav", 1.0).read_bytes()
    created = many.post("/v1/avatars/bob/videos", files={"audio": ("hi.wav", audio)})
    assert created.status_code == 202 and created.json()["avatar"] == "bob"
    assert wait_for_job(many, created.json()["id"])["status"] == "done"
    assert many.get(f"/v1/videos/{created.json()['id']}/file").status_code == 200
    unnamed = many.post("/v1/videos", files={"audio": ("hi.wav", audio)})
    assert unnamed.status_code == 400 and "several avatars" in unnamed.json()["error"]
    health = many.get("/healthz").json()
    assert "bob" in health["avatars_loaded"] and health["jobs"] == {"queued": 0, "running": 0}


def test_two_avatars_stream_at_once_and_a_stream_must_name_one(store_dir):
    app = create_app(AvatarStore(store_dir, max_loaded=2), ServerSettings(max_sessions=3))
    got = {}

    def run(avatar: str) -> None:
        with connect(server.url(f"/v1/stream?avatar={avatar}&width=160", "ws")) as ws:
            got[avatar] = {"ready": json.loads(ws.recv())}
            sender = threading.Thread(target=send_live, args=(ws, pcm(1.0)))
            sender.start()
            got[avatar] |= receive_utterance(ws)
            sender.join()

    with Server(app) as server:
        threads = [threading.Thread(target=run, args=(name,)) for name in ("alice", "bob")]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        for query in ("", "?avatar=..%2Fbob", "?avatar=nobody"):
            with connect(server.url(f"/v1/stream{query}", "ws")) as ws:
                assert json.loads(ws.recv())["type"] == "error"
                with pytest.raises(ConnectionClosed) as closed:
                    ws.recv()
                assert closed.value.rcvd.code == 1008
    for avatar in ("alice", "bob"):
        assert got[avatar]["ready"]["width"] == 160
        assert [e["index"] for e in got[avatar]["frame_events"]][-1] == 24


def test_the_cache_unloads_the_least_recently_used_avatar_but_never_one_in_use(store_dir):
    store = AvatarStore(store_dir, max_loaded=1)
    store.get("alice")
    with store.lease("alice"):
        store.get("bob")
        assert list(store.loaded) == ["alice", "bob"]  # alice has a live session: kept past the bound
    assert list(store.loaded) == ["bob"]  # the session ended: the least recently used goes
    store.get("alice")
    assert list(store.loaded) == ["alice"]


def test_an_avatar_is_created_through_the_api(many, store_dir):
    with fixture_path("talk_b.mp4").open("rb") as video:
        created = many.post("/v1/avatars", files={"video": ("talk.mp4", video)}, data={"name": "Talk B"})
    assert created.status_code == 202
    job = created.json()
    assert not (store_dir / job["avatar"]).exists()  # built out of sight
    assert wait_for_job(many, job["id"], timeout=300)["status"] == "done"
    made = many.get(f"/v1/avatars/{job['avatar']}").json()
    assert made["name"] == "Talk B" and made["ready"] and made["conditioning"] == "mouth"
    assert [p.name for p in store_dir.iterdir() if p.name.startswith(".")] == []


def test_a_video_the_pipeline_refuses_fails_its_job_in_the_cli_words(many, tmp_path):
    frames = [np.full((64, 64, 3), 128, np.uint8)] * 25
    short = encode_clip(frames, tmp_path / "short.mp4", audio=np.zeros(16000, np.float32))
    created = many.post("/v1/avatars", files={"video": ("short.mp4", short.read_bytes())})
    assert created.status_code == 202
    failed = wait_for_job(many, created.json()["id"])
    assert failed["status"] == "failed" and failed["error"].startswith("the video is 1.00 s long; at least 3 s of video are needed")
    assert "\n" not in failed["error"] and str(tmp_path) not in failed["error"]


def test_video_uploads_are_limited_and_checked(store_dir, tmp_path):
    many = TestClient(create_app(AvatarStore(store_dir), ServerSettings(jobs_dir=tmp_path, max_video_mb=2.0, max_video_seconds=4.0)))
    too_big = many.post("/v1/avatars", files={"video": ("big.mp4", b"\0" * 2_200_000)})
    assert too_big.status_code == 413 and "2 MB" in too_big.json()["error"]
    not_video = many.post("/v1/avatars", files={"video": ("clip.mp4", b"not a video at all" * 100)})
    assert not_video.status_code == 415 and "not a readable video file" in not_video.json()["error"]
    long = fixture_path("talk_b.mp4").read_bytes()  # 5 s, over this server's 4
    too_long = many.post("/v1/avatars", files={"video": ("talk.mp4", long)})
    assert too_long.status_code == 413 and "at most 4 s" in too_long.json()["error"]
    no_field = many.post("/v1/avatars", files={"clip": ("talk.mp4", long)})
    assert no_field.status_code == 400
    assert many.get("/healthz").json()["jobs"]["queued"] == 0


def test_every_route_but_the_page_needs_the_api_key(store_dir, tmp_path):
    app = create_app(AvatarStore(store_dir), ServerSettings(api_key="s3cret", jobs_dir=tmp_path))
    with TestClient(app) as client:
        assert client.get("/").status_code == 200 and client.get("/static/app.js").status_code == 200
        routes = [("get", "/healthz"), ("get", "/v1/avatars"), ("get", "/v1/avatars/alice"), ("post", "/v1/avatars"), ("post", "/v1/avatars/alice/videos")]
        routes += [("post", "/v1/videos"), ("get", f"/v1/jobs/{'0' * 32}"), ("get", f"/v1/videos/{'0' * 32}/file"), ("get", "/v1/samples")]
        for method, path in routes:
            assert getattr(client, method)(path).status_code == 401, path
        assert client.get("/v1/avatars", headers={"X-API-Key": "s3cret"}).status_code == 200


@pytest.mark.parametrize("given", [[], ["--avatar", "a", "--avatars", "b"]])
def test_serve_wants_exactly_one_of_avatar_and_avatars(given):
    import subprocess
    import sys

    result = subprocess.run([sys.executable, "-m", "synctalk2d", "serve", *given], capture_output=True, text=True, timeout=120)
    assert result.returncode == 1 and result.stderr.count("\n") == 1 and "--avatar DIR" in result.stderr


def test_an_avatar_that_cannot_be_read_is_listed_with_the_reason(tmp_path):
    (tmp_path / "old").mkdir()
    (tmp_path / "old" / "avatar.json").write_text('{"format_version": 0}')
    with TestClient(create_app(AvatarStore(tmp_path), ServerSettings(jobs_dir=tmp_path / "jobs"))) as client:
        [old] = client.get("/v1/avatars").json()["avatars"]
        refused = client.post("/v1/avatars/old/videos", files={"audio": ("a.wav", b"x")})
    assert old["ready"] is False and "preprocess the video again" in old["error"] and str(tmp_path) not in old["error"]
    assert refused.status_code == 409 and "format 0" in refused.json()["error"]
