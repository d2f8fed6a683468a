"""A Pipecat video service that renders in the pipeline's own process (``pip install 'synctalk2d[pipecat]'``).

    from synctalk2d.integrations.pipecat import SyncTalk2DVideoService

    pipeline = Pipeline([transport.input(), stt, context.user(), llm, tts,
                         SyncTalk2DVideoService(avatar="avatars/me"), transport.output(), context.assistant()])

Placed after the TTS: `TTSAudioRawFrame` (any rate) goes into the live core instead of
downstream; on its 25 fps clock the service pushes each frame as an `OutputImageRawFrame`
(RGB, ``sync_with_audio``) followed, while the avatar speaks, by that frame's 40 ms of
speech as a `TTSAudioRawFrame`, so the output transport plays picture and voice in step.
Between utterances the avatar idles on its own recorded frames. `TTSStoppedFrame` is held
until the utterance's last frame is out; `InterruptionFrame` drops what is still to be said
and is passed on; `EndFrame` lets the current utterance finish first.
"""

from __future__ import annotations

import asyncio
import time
from pathlib import Path

import numpy as np
from pipecat.frames.frames import (
    CancelFrame,
    EndFrame,
    Frame,
    InterruptionFrame,
    OutputImageRawFrame,
    StartFrame,
    TTSAudioRawFrame,
    TTSStoppedFrame,
)
from pipecat.processors.frame_processor import FrameDirection, FrameProcessor

from synctalk2d.inference.lipsync import LipSync
from synctalk2d.inference.player import play
from synctalk2d.inference.runtime import single_threaded_pool
from synctalk2d.inference.stream import LiveSession, warm_up
from synctalk2d.media.audio import SAMPLE_RATE, SpeechResampler

FRAME_THREADS = 2  # threads drawing frames (the paste and the mouth model are small calls)
END_TIMEOUT = 60.0  # seconds an EndFrame waits for the utterance being spoken


class SyncTalk2DVideoService(FrameProcessor):
    """A synctalk2d avatar as a Pipecat frame processor (see the module docstring)."""

    def __init__(self, avatar: str | Path, width: int | None = None, lipsync: LipSync | None = None, **kwargs):
        super().__init__(**kwargs)
        self.lipsync = lipsync or LipSync(avatar)
        warm_up(self.lipsync)  # first-call set-up now, not on the first frames the pipeline sends
        self.width = width
        self.session: LiveSession | None = None
        self.pool = None
        self.resampler: SpeechResampler | None = None
        self.held_stops: list[TTSStoppedFrame] = []
        self.render_task: asyncio.Task | None = None

    async def process_frame(self, frame: Frame, direction: FrameDirection) -> None:
        await super().process_frame(frame, direction)
        if isinstance(frame, StartFrame):
            await self.push_frame(frame, direction)
            await self._start()
        elif isinstance(frame, TTSAudioRawFrame) and self.session is not None:
            if self.resampler is None or (self.resampler.sample_rate, self.resampler.channels) != (frame.sample_rate, frame.num_channels):
                self.resampler = SpeechResampler(frame.sample_rate, frame.num_channels)
            self.session.push(self.resampler(frame.audio), time.perf_counter())
        elif isinstance(frame, TTSStoppedFrame) and self.session is not None:
            self.session.end()
            self.resampler = None
            self.held_stops.append(frame)
        elif isinstance(frame, InterruptionFrame):
            if self.session is not None:
                self.session.interrupt()
            self.resampler = None
            await self.push_frame(frame, direction)
            await self._release_stops()
        elif isinstance(frame, EndFrame):
            await self._finish_speaking()
            await self._stop()
            await self.push_frame(frame, direction)
        elif isinstance(frame, CancelFrame):
            await self._stop()
            await self.push_frame(frame, direction)
        else:
            await self.push_frame(frame, direction)

    async def _start(self) -> None:
        self.pool = single_threaded_pool(FRAME_THREADS, "synctalk2d-frame")
        self.session = await asyncio.get_running_loop().run_in_executor(self.pool, LiveSession, self.lipsync, self.width)
        self.render_task = self.create_task(self._render(), "synctalk2d-render")

    async def _render(self) -> None:
        width, height = self.session.size
        async for ticked in play(self.session, self.pool, lambda frame: np.ascontiguousarray(frame.image).tobytes()):
            frame = ticked.frame
            if ticked.prepared is not None:
                image = OutputImageRawFrame(image=ticked.prepared, size=(width, height), format="RGB")
                image.sync_with_audio = True  # shown once the speech before it has played
                await self.push_frame(image)
            if frame.utterance is not None:
                pcm = (np.clip(frame.audio, -1.0, 1.0) * 32767.0).round().astype(np.int16).tobytes()
                await self.push_frame(TTSAudioRawFrame(audio=pcm, sample_rate=SAMPLE_RATE, num_channels=1))
            if any(event["type"] == "utterance_ended" and not event["interrupted"] for event in frame.events):
                await self._release_stops(1)

    async def _release_stops(self, count: int | None = None) -> None:
        released, self.held_stops = (self.held_stops, []) if count is None else (self.held_stops[:count], self.held_stops[count:])
        for stop in released:
            await self.push_frame(stop)

    async def _finish_speaking(self) -> None:
        if self.session is None:
            return
        self.session.end()
        deadline = time.monotonic() + END_TIMEOUT
        while self.session.busy and time.monotonic() < deadline:
            await asyncio.sleep(0.02)
        await asyncio.sleep(0.05)  # the last frame's push

    async def _stop(self) -> None:
        if self.render_task is not None:
            await self.cancel_task(self.render_task)
            self.render_task = None
        await self._release_stops()
        if self.pool is not None:
            self.pool.shutdown(wait=False, cancel_futures=True)
            self.pool = None
        self.session = None
