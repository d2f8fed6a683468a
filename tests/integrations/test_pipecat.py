"""The Pipecat service in the framework's own test harness (`pipecat.tests.utils.run_test`):
TTS frames in, the avatar's frames and speech out."""

from __future__ import annotations

import asyncio

import numpy as np
import pytest

pytest.importorskip("pipecat")
from pipecat.frames.frames import InterruptionFrame, OutputImageRawFrame, TTSAudioRawFrame, TTSStartedFrame, TTSStoppedFrame  # noqa: E402
from pipecat.tests.utils import SleepFrame, run_test  # noqa: E402

from synctalk2d.integrations.pipecat import SyncTalk2DVideoService  # noqa: E402
from tests.integrations.helpers import TTS_RATE, WIDTH, recorded, tts_speech  # noqa: E402

pytestmark = pytest.mark.slow
PIECE = TTS_RATE // 50  # 20 ms TTS frames


def tts_frames(seconds: float) -> list:
    pcm = tts_speech(seconds)
    return [TTSAudioRawFrame(audio=pcm[i : i + PIECE].tobytes(), sample_rate=TTS_RATE, num_channels=1) for i in range(0, len(pcm), PIECE)]


def kinds_of(frames) -> str:
    codes = {OutputImageRawFrame: "V", TTSAudioRawFrame: "A", TTSStoppedFrame: "S", TTSStartedFrame: "T", InterruptionFrame: "I"}
    return "".join(next((c for t, c in codes.items() if isinstance(f, t)), "?") for f in frames)


def test_tts_audio_comes_out_as_frames_each_followed_by_its_speech(lipsync):
    service = SyncTalk2DVideoService(avatar=None, width=WIDTH, lipsync=lipsync)
    down, _ = asyncio.run(run_test(service, frames_to_send=[SleepFrame(0.3), TTSStartedFrame(), *tts_frames(2.0), TTSStoppedFrame(), SleepFrame(2.6)]))
    kinds = kinds_of(down)
    spoken = kinds[kinds.index("A") - 1 : kinds.index("S")]
    assert "T" in kinds[: kinds.index("A")]
    assert spoken == "VA" * 50, kinds  # 2 s: 50 frames, each followed by its 40 ms, then the held TTSStoppedFrame
    assert set(kinds[kinds.index("S") + 1 :]) <= {"V"} and kinds[kinds.index("S") + 1 :].count("V") >= 5  # idle again
    audio = [f for f in down if isinstance(f, TTSAudioRawFrame)]
    assert all(f.sample_rate == 16000 and f.num_channels == 1 and len(f.audio) == 1280 for f in audio)
    images = [f for f in down if isinstance(f, OutputImageRawFrame)]
    assert all(f.sync_with_audio and f.format == "RGB" and f.size[0] == WIDTH for f in images)
    own = recorded(lipsync)
    speaks = [n + 1 < len(down) and isinstance(down[n + 1], TTSAudioRawFrame) for n, f in enumerate(down) if isinstance(f, OutputImageRawFrame)]
    idle = [f.image for f, s in zip(images, speaks) if not s]
    drawn = [f.image for f, s in zip(images, speaks) if s]
    assert len(idle) >= 5 and all(image in own for image in idle)  # idle: the recording, untouched
    assert np.mean([image not in own for image in drawn]) > 0.8  # speaking: a drawn mouth


def test_interruption_resets_and_is_passed_on(lipsync):
    service = SyncTalk2DVideoService(avatar=None, width=WIDTH, lipsync=lipsync)
    down, _ = asyncio.run(run_test(service, frames_to_send=[TTSStartedFrame(), *tts_frames(3.0), SleepFrame(0.8), InterruptionFrame(), SleepFrame(0.5)]))
    kinds = kinds_of(down)
    interrupted = kinds.index("I")
    assert "A" in kinds[:interrupted]
    after = kinds[interrupted + 1 :]
    last_audio = after.rfind("A")
    assert after[: last_audio + 1].count("V") <= 2, kinds  # idle within two frames
    assert after[last_audio + 1 :].count("V") >= 5 and "A" not in after[last_audio + 1 :]
