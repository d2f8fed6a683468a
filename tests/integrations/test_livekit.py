"""The LiveKit Agents plugin without a LiveKit server: TTS audio through the generator the
framework's `AvatarRunner` drives, and what it yields."""

from __future__ import annotations

import asyncio

import numpy as np
import pytest

pytest.importorskip("livekit.agents")
from livekit import rtc  # noqa: E402
from livekit.agents.voice.avatar import AudioSegmentEnd, VideoGenerator  # noqa: E402

from synctalk2d.integrations.livekit import SyncTalk2DVideoGenerator  # noqa: E402
from tests.integrations.helpers import TTS_RATE, WIDTH, recorded, tts_speech  # noqa: E402

pytestmark = pytest.mark.slow
PIECE = TTS_RATE // 50  # the TTS sends 20 ms frames


async def collect(generator: SyncTalk2DVideoGenerator, until, limit: int = 400) -> list:
    items = []
    async for item in generator:
        items.append(item)
        if until(items) or len(items) >= limit:
            return items
    return items


def test_speech_comes_out_as_frames_each_followed_by_its_audio(lipsync):
    async def scenario():
        generator = SyncTalk2DVideoGenerator(lipsync, width=WIDTH)
        assert isinstance(generator, VideoGenerator)
        pcm = tts_speech(2.0)
        for start in range(0, len(pcm), PIECE):  # faster than real time, as a TTS renders
            await generator.push_audio(rtc.AudioFrame(pcm[start : start + PIECE].tobytes(), TTS_RATE, 1, len(pcm[start : start + PIECE])))
        await generator.push_audio(AudioSegmentEnd())
        items = await collect(generator, lambda items: any(isinstance(i, AudioSegmentEnd) for i in items[:-5]))
        await generator.aclose()
        return items

    items = asyncio.run(scenario())
    kinds = ["V" if isinstance(i, rtc.VideoFrame) else "A" if isinstance(i, rtc.AudioFrame) else "E" for i in items]
    first_audio, end = kinds.index("A"), kinds.index("E")
    speaking = kinds[first_audio - 1 : end]
    assert speaking == ["V", "A"] * 50, "".join(kinds)  # 2 s: 50 frames, each followed by its 40 ms
    audio = [i for i in items if isinstance(i, rtc.AudioFrame)]
    assert all(a.sample_rate == 16000 and a.samples_per_channel == 640 for a in audio)
    assert sum(a.duration for a in audio) == pytest.approx(2.0)
    assert all(k == "V" for k in kinds[end + 1 :]) and all(k == "V" for k in kinds[: first_audio - 1])  # idle: frames, no audio
    own = recorded(lipsync)
    pairs = [(item, n + 1 < len(kinds) and kinds[n + 1] == "A") for n, item in enumerate(items) if kinds[n] == "V"]
    idle = [bytes(frame.data) for frame, speaks in pairs if not speaks]
    drawn = [bytes(frame.data) for frame, speaks in pairs if speaks]
    assert len(idle) >= 5 and all(frame in own for frame in idle)  # idle frames are the recording, untouched
    assert np.mean([frame not in own for frame in drawn]) > 0.8  # while speech plays, the mouth is drawn


def test_clear_buffer_returns_to_idle_within_two_frames(lipsync):
    async def scenario():
        generator = SyncTalk2DVideoGenerator(lipsync, width=WIDTH)
        pcm = tts_speech(3.0)
        for start in range(0, len(pcm), PIECE):
            await generator.push_audio(rtc.AudioFrame(pcm[start : start + PIECE].tobytes(), TTS_RATE, 1, PIECE))
        frames = generator.__aiter__()
        before = []
        while sum(isinstance(i, rtc.AudioFrame) for i in before) < 15:  # mid-utterance
            before.append(await frames.__anext__())
        generator.clear_buffer()
        after = [await frames.__anext__() for _ in range(12)]
        await generator.aclose()
        return after

    after = asyncio.run(scenario())
    kinds = ["V" if isinstance(i, rtc.VideoFrame) else "A" if isinstance(i, rtc.AudioFrame) else "E" for i in after]
    assert "E" not in kinds  # an interruption is not a finished segment: the runner reports it
    last_audio = max((n for n, k in enumerate(kinds) if k == "A"), default=-1)
    assert kinds[: last_audio + 1].count("V") <= 2 and kinds[last_audio + 1 :] == ["V"] * (len(kinds) - last_audio - 1), "".join(kinds)
