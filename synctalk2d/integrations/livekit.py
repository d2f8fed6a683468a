"""A LiveKit Agents avatar that runs in the agent's own process (``pip install 'synctalk2d[livekit]'``).

    from synctalk2d.integrations.livekit import AvatarSession

    avatar = AvatarSession(avatar="avatars/me")
    await avatar.start(session, room=ctx.room)   # before session.start(...)

The shape of the framework's local avatar plugins: the agent's TTS audio goes to a
`QueueAudioOutput` (set as the session's audio output); `AvatarRunner` feeds it to
`SyncTalk2DVideoGenerator` and publishes what the generator yields through its
audio/video synchronizer. The generator is the live core on its 25 fps clock: each tick a
video frame (RGB24), followed, while the avatar speaks, by the 40 ms of speech that frame
says; `AudioSegmentEnd` after an utterance's last frame, so the runner reports playback
finished with its position. `clear_buffer` (the agent was interrupted) drops what is still
to be said: the next frame is idle.
"""

from __future__ import annotations

import time
from collections.abc import AsyncIterator
from pathlib import Path

import numpy as np
from livekit import rtc
from livekit.agents.voice.avatar import AudioSegmentEnd, AvatarOptions, AvatarRunner, QueueAudioOutput, VideoGenerator

from synctalk2d.avatar import FPS, SAMPLES_PER_FRAME
from synctalk2d.inference.lipsync import LipSync
from synctalk2d.inference.player import play
from synctalk2d.inference.runtime import single_threaded_pool
from synctalk2d.inference.stream import LiveSession, warm_up
from synctalk2d.media.audio import SAMPLE_RATE, SpeechResampler

FRAME_THREADS = 2  # threads drawing frames (the paste and the mouth model are small calls)


def pcm16(samples: np.ndarray) -> np.ndarray:
    return (np.clip(samples, -1.0, 1.0) * 32767.0).round().astype(np.int16)


class SyncTalk2DVideoGenerator(VideoGenerator):
    """`VideoGenerator` over one `LiveSession`."""

    def __init__(self, lipsync: LipSync, width: int | None = None, threads: int = FRAME_THREADS):
        self.session = LiveSession(lipsync, width)
        self.pool = single_threaded_pool(threads, "synctalk2d-frame")
        self.resampler: SpeechResampler | None = None
        self.width, self.height = self.session.size
        self.undrawn = 0  # ticks the machine was too busy to draw (their picture repeats the last)

    async def push_audio(self, frame: rtc.AudioFrame | AudioSegmentEnd) -> None:
        if isinstance(frame, AudioSegmentEnd):
            self.session.end()
            self.resampler = None
            return
        if self.resampler is None or (self.resampler.sample_rate, self.resampler.channels) != (frame.sample_rate, frame.num_channels):
            self.resampler = SpeechResampler(frame.sample_rate, frame.num_channels)
        self.session.push(self.resampler(bytes(frame.data)), time.perf_counter())

    def clear_buffer(self) -> None:
        self.session.interrupt()
        self.resampler = None

    def __aiter__(self) -> AsyncIterator[rtc.VideoFrame | rtc.AudioFrame | AudioSegmentEnd]:
        return self._frames()

    async def _frames(self) -> AsyncIterator[rtc.VideoFrame | rtc.AudioFrame | AudioSegmentEnd]:
        last = None
        async for ticked in play(self.session, self.pool, lambda frame: np.ascontiguousarray(frame.image).tobytes()):
            frame = ticked.frame
            self.undrawn += ticked.prepared is None
            last = ticked.prepared or last  # a tick the machine was too busy to draw shows the last picture again
            if last is not None:
                yield rtc.VideoFrame(self.width, self.height, rtc.VideoBufferType.RGB24, last)
            if frame.utterance is not None:
                yield rtc.AudioFrame(pcm16(frame.audio).tobytes(), SAMPLE_RATE, 1, SAMPLES_PER_FRAME)
            if any(event["type"] == "utterance_ended" and not event["interrupted"] for event in frame.events):
                yield AudioSegmentEnd()

    async def aclose(self) -> None:
        self.pool.shutdown(wait=False, cancel_futures=True)


class AvatarSession:
    """A synctalk2d avatar in a LiveKit room, rendered in this process."""

    def __init__(self, avatar: str | Path, width: int | None = None, lipsync: LipSync | None = None):
        self.lipsync = lipsync or LipSync(avatar)
        warm_up(self.lipsync)  # first-call set-up now, not on the first frames the room sees
        self.width = width
        self.runner: AvatarRunner | None = None
        self.generator: SyncTalk2DVideoGenerator | None = None

    async def start(self, agent_session, room: rtc.Room) -> None:
        """Publish the avatar's video and voice in ``room`` and make it the agent session's
        audio output (call before ``agent_session.start``)."""
        self.generator = SyncTalk2DVideoGenerator(self.lipsync, self.width)
        audio = QueueAudioOutput(sample_rate=SAMPLE_RATE)
        options = AvatarOptions(
            video_width=self.generator.width, video_height=self.generator.height, video_fps=FPS, audio_sample_rate=SAMPLE_RATE, audio_channels=1
        )
        self.runner = AvatarRunner(room, audio_recv=audio, video_gen=self.generator, options=options)
        await self.runner.start()
        agent_session.output.audio = audio

    async def aclose(self) -> None:
        if self.runner is not None:
            await self.runner.aclose()
        if self.generator is not None:
            await self.generator.aclose()
