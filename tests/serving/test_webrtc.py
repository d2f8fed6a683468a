"""The live stream over WebRTC, against a real aiortc peer in the test process (loopback
host candidates only, no STUN or TURN): it plays speech into the call as its own audio
track and records the avatar's video and voice."""

from __future__ import annotations

import asyncio
import json
import time
import urllib.error
import urllib.request

import av
import numpy as np
import pytest

from synctalk2d.audio.vad import LEAD_FRAMES
from synctalk2d.face.landmarks import landmark_detector
from synctalk2d.inference.stream import GATE_PREROLL_SECONDS
from synctalk2d.media.audio import load_audio
from synctalk2d.serving.app import ServerSettings, create_app
from tests.conftest import fixture_path
from tests.serving.fixtures import Server

pytest.importorskip("aiortc")
from tests.serving.webrtc_client import call, post_json  # noqa: E402

pytestmark = pytest.mark.slow
SILENCE_BEFORE, SPEECH, SILENCE_AFTER = 0.6, 2.5, 1.2


@pytest.fixture(scope="module")
def rtc_server(mouth_avatar, lipsync):
    with Server(create_app(mouth_avatar.root, ServerSettings(max_sessions=2), lipsync)) as server:
        yield server


@pytest.fixture(scope="module")
def speech_file(tmp_path_factory):
    """Silence, speech, silence: a 16 kHz WAV for the client to play into the call."""
    wav, _ = load_audio(fixture_path("speech_44k.wav"))
    clip = np.concatenate([np.zeros(int(SILENCE_BEFORE * 16000)), wav[: int(SPEECH * 16000)], np.zeros(int(SILENCE_AFTER * 16000))])
    path = tmp_path_factory.mktemp("rtc") / "speech.wav"
    with av.open(str(path), "w") as container:
        stream = container.add_stream("pcm_s16le", rate=16000)
        stream.layout = "mono"
        frame = av.AudioFrame.from_ndarray((clip * 32767).astype(np.int16)[None], format="s16", layout="mono")
        frame.sample_rate = 16000
        for packet in [*stream.encode(frame), *stream.encode(None)]:
            container.mux(packet)
    return path


def lip_opening(frames: list[np.ndarray]) -> np.ndarray:
    detect = landmark_detector("dlib")
    opening = []
    for frame in frames:
        points = detect(frame)
        opening.append(np.nan if points is None else np.mean([np.linalg.norm(points[a] - points[b]) for a, b in ((61, 67), (62, 66), (63, 65))]))
    return np.array(opening)


def test_a_peer_speaking_into_the_call_gets_video_and_voice_in_sync(rtc_server, speech_file):
    received = asyncio.run(call(rtc_server.url(""), SILENCE_BEFORE + SPEECH + SILENCE_AFTER + 1.5, str(speech_file)))

    # video on a 25 fps clock (RTP steps of 3600 at 90 kHz); a loaded machine may leave a
    # tick undrawn (its audio still goes out), never more than a few
    steps = np.diff([pts for _, pts, _ in received.video])
    assert len(received.video) >= 100 and np.all(steps % 3600 == 0) and np.all(steps > 0), np.unique(steps)
    assert np.mean(steps == 3600) >= 0.95, np.unique(steps, return_counts=True)
    arrival_rate = (len(received.video) - 1) / (received.video[-1][0] - received.video[0][0])
    assert 23.5 <= arrival_rate <= 26.0

    # the voice comes back: the speech is loud, the silence before it is silent
    samples, rate = received.audio_samples()
    piece = rate // 50
    loudness = np.sqrt(np.mean(samples[: len(samples) // piece * piece].reshape(-1, piece) ** 2, axis=1))
    onset = int(np.argmax(loudness > 0.02))
    assert onset > 10 and loudness[:onset].max() < 0.01 and np.median(loudness[onset : onset + int(SPEECH * 50)]) > 0.02

    # lips and voice line up: the mouth opens where the speech starts, on the one clock (it
    # leads by up to `LEAD_FRAMES` by design: lips move before the sound they make)
    onset_time = received.sender_times("audio")[0] + onset / 50
    video_times = received.sender_times("video")
    events = [event["type"] for _, event in received.events]
    assert events[:2] == ["utterance_started", "utterance_ended"]
    # the utterance starts `GATE_PREROLL_SECONDS` before the onset, resting: from there on, the first open mouth
    near = np.flatnonzero((video_times > onset_time - GATE_PREROLL_SECONDS + 0.04) & (video_times < onset_time + 1.0))
    opening = lip_opening([received.video[i][2] for i in near])
    before = video_times[near] < onset_time - (LEAD_FRAMES + 1) / 25
    rest, wide = np.nanmedian(opening[before]), np.nanpercentile(opening[~before], 90)
    print("opening around the onset", np.round((video_times[near] - onset_time) * 25, 1).tolist(), np.round(opening, 1).tolist())
    opened = near[np.argmax(opening > rest + 0.5 * (wide - rest))]
    lag_frames = (video_times[opened] - onset_time) * 25
    assert -LEAD_FRAMES - 1 <= lag_frames <= 1, lag_frames


def test_speech_pushed_by_session_id_and_interrupt(rtc_server):
    """A server-side TTS pushes PCM over HTTP to the session the offer opened; interrupt
    stops it; a closed session is gone."""

    wav, _ = load_audio(fixture_path("speech_44k.wav"))
    pcm = (wav[: 3 * 16000] * 32767).astype("<i2").tobytes()

    async def push_when_open(received_session: list):
        loop = asyncio.get_running_loop()
        while not received_session:
            await asyncio.sleep(0.05)
        url = rtc_server.url(f"/v1/webrtc/{received_session[0]}")
        await loop.run_in_executor(None, lambda: urllib.request.urlopen(urllib.request.Request(url + "/audio", pcm, method="POST")).status)
        await asyncio.sleep(1.0)
        with urllib.request.urlopen(urllib.request.Request(url + "/interrupt", b"", method="POST")) as response:
            return json.loads(response.read())

    async def both():
        opened: list = []
        received_task = asyncio.ensure_future(call(rtc_server.url(""), 3.0, on_session=opened.append))
        interrupted = await push_when_open(opened)
        return await received_task, interrupted

    received, interrupted = asyncio.run(both())
    assert interrupted["events"] == [{"type": "utterance_ended", "utterance": 0, "interrupted": True}]
    samples, rate = received.audio_samples()
    loud = np.sqrt(np.mean(samples[: len(samples) // (rate // 50) * (rate // 50)].reshape(-1, rate // 50) ** 2, axis=1)) > 0.02
    assert 0.3 < loud.sum() / 50 < 1.6  # about the second spoken before the interrupt
    deadline = time.monotonic() + 10  # the hang-up reaches the server's peer connection
    while time.monotonic() < deadline:
        try:
            urllib.request.urlopen(urllib.request.Request(rtc_server.url(f"/v1/webrtc/{received.session}/end"), b"", method="POST"))
        except urllib.error.HTTPError as gone:
            assert gone.code == 404
            break
        time.sleep(0.2)
    else:
        raise AssertionError("the session outlived its peer")
    assert asyncio.run(health(rtc_server))["live_sessions"] == 0


async def health(server) -> dict:
    with urllib.request.urlopen(server.url("/healthz")) as response:
        return json.loads(response.read())


def test_a_bad_offer_gets_a_reason(rtc_server):
    with pytest.raises(urllib.error.HTTPError) as refused:
        post_json(rtc_server.url("/v1/webrtc/offer"), {"sdp": "not sdp", "type": "offer"})
    assert refused.value.code == 400 and "offer" in json.loads(refused.value.read())["error"]
