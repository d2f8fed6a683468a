"""The live clock: one `LiveSession` paced at 25 frames a second, for any transport.

Every tick yields one `LiveFrame`, the picture and the 40 ms of audio that go out
together, so a transport that stamps both from the tick number (`TickedFrame.tick`) keeps
voice and lips in step for as long as the stream runs: there is one clock, not one per
track. Drawing (and whatever the transport needs done to a frame, `prepare`: a JPEG, a
video frame) runs in a thread pool, never on the event loop. A machine too busy to keep up
skips drawing, never audio: a tick more than `MAX_LAG_FRAMES` late is decided without being
drawn, so the audio stays whole and the video catches up.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Callable
from concurrent.futures import Executor
from dataclasses import dataclass
from typing import Any

from synctalk2d.avatar import FPS
from synctalk2d.inference.stream import LiveFrame, LiveSession

FRAME_SECONDS = 1 / FPS
MAX_LAG_FRAMES = 3  # a tick this late is not drawn (its audio still goes out)


@dataclass
class TickedFrame:
    tick: int  # frames since the stream started: the one timestamp of picture and audio
    frame: LiveFrame
    prepared: Any = None  # what `prepare` made of the frame (None when it was not drawn)
    late: float = 0.0  # seconds after its tick's time that it was ready


def _decide(session: LiveSession, tick: int, now: float, draw: bool, prepare: Callable[[LiveFrame], Any] | None) -> TickedFrame:
    frame = session.next_frame(tick, now, draw)
    prepared = prepare(frame) if prepare is not None and frame.image is not None else None
    return TickedFrame(tick, frame, prepared)


async def play(session: LiveSession, executor: Executor, prepare: Callable[[LiveFrame], Any] | None = None) -> AsyncIterator[TickedFrame]:
    """Yield one `TickedFrame` per tick of a 25 fps clock, forever (the caller stops
    iterating to end the stream)."""
    loop = asyncio.get_running_loop()
    start, tick = time.perf_counter(), 0
    while True:
        due = start + tick * FRAME_SECONDS
        now = time.perf_counter()
        if now < due:
            await asyncio.sleep(due - now)
            now = time.perf_counter()
        draw = now - due <= MAX_LAG_FRAMES * FRAME_SECONDS
        ticked = await loop.run_in_executor(executor, _decide, session, tick, now, draw, prepare)
        ticked.late = time.perf_counter() - due
        yield ticked
        tick += 1
