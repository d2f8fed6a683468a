"""The live WebSocket stream: 16 kHz PCM in, JPEG frames (and their audio) out at 25 fps.

A thin transport over the live core (`inference.player`); WebRTC (`serving.webrtc`) is the
other one. Protocol (`WS /v1/stream[?width=W][&audio=1]`):

* client → server: binary messages of 16-bit little-endian mono PCM at 16 kHz, any size;
  text messages ``{"type": "end"}`` (the utterance is complete) and
  ``{"type": "interrupt"}`` (stop speaking now);
* server → client: first ``{"type": "ready", ...}`` (frame size, fps, look-ahead), then one
  binary message per frame, each a JPEG, in presentation order at 25 fps; with ``audio=1``
  each JPEG is followed by a binary message with the 40 ms of audio that frame speaks
  (16-bit little-endian mono PCM at 16 kHz, 1280 bytes; silence while idle); before a frame
  that speaks, ``{"type": "frame", "utterance", "index", "latency_ms"}`` (latency: from the
  arrival of the chunk holding that frame's audio to sending the frame), and
  ``utterance_started`` / ``utterance_ended`` / ``error`` events.

Three tasks per connection: the receiver feeds audio to the `LiveSession`, the ticker
takes one frame per 1/25 s from the live clock, the sender writes to the socket. Frames wait
for the sender in a small outbox; a client that reads too slowly loses the oldest frames,
never the server's memory, and one that stops reading for `SEND_TIMEOUT` seconds is
disconnected. Everything of a session is released when any task ends.
"""

from __future__ import annotations

import asyncio
import json
import time
from collections import deque
from concurrent.futures import Executor

import cv2
import numpy as np
from fastapi import WebSocket, WebSocketDisconnect

from synctalk2d.avatar import FPS
from synctalk2d.errors import UserError
from synctalk2d.inference.lipsync import LipSync
from synctalk2d.inference.player import play
from synctalk2d.inference.stream import LiveSession, lookahead_seconds
from synctalk2d.media.audio import SAMPLE_RATE

JPEG_QUALITY = 80
OUTBOX_FRAMES = 4  # frames waiting for a slow client before the oldest is dropped
SEND_TIMEOUT = 10.0  # seconds a client may stop reading before it is disconnected


class Outbox:
    """Messages waiting to be sent: events are kept, frames beyond `OUTBOX_FRAMES` drop the oldest."""

    def __init__(self):
        self.items: deque = deque()
        self.frames = 0
        self.dropped = 0
        self.wakeup = asyncio.Event()

    def put(self, item: tuple) -> None:
        if item[0] == "frame":
            if self.frames >= OUTBOX_FRAMES:
                oldest = next(i for i, queued in enumerate(self.items) if queued[0] == "frame")
                del self.items[oldest]
                self.frames -= 1
                self.dropped += 1
            self.frames += 1
        self.items.append(item)
        self.wakeup.set()

    async def get(self) -> tuple:
        while not self.items:
            self.wakeup.clear()
            await self.wakeup.wait()
        item = self.items.popleft()
        if item[0] == "frame":
            self.frames -= 1
        return item


def encode_jpeg(image: np.ndarray) -> bytes:
    ok, data = cv2.imencode(".jpg", cv2.cvtColor(image, cv2.COLOR_RGB2BGR), [cv2.IMWRITE_JPEG_QUALITY, JPEG_QUALITY])
    if not ok:
        raise RuntimeError("JPEG encoding failed")
    return data.tobytes()


def pcm16(samples: np.ndarray) -> bytes:
    """16 kHz float audio as 16-bit little-endian PCM."""
    return (np.clip(samples, -1.0, 1.0) * 32767.0).round().astype("<i2").tobytes()


def from_pcm16(data: bytes) -> np.ndarray:
    return np.frombuffer(data, "<i2").astype(np.float32) / 32768.0


async def stream(websocket: WebSocket, lipsync: LipSync, executor: Executor, width: int | None, with_audio: bool = False) -> None:
    """Serve one accepted connection until the client leaves or fails."""
    session = await asyncio.get_running_loop().run_in_executor(executor, LiveSession, lipsync, width)
    frame_width, frame_height = session.size
    await websocket.send_text(
        json.dumps(
            {
                "type": "ready",
                "fps": FPS,
                "width": frame_width,
                "height": frame_height,
                "sample_rate": SAMPLE_RATE,
                "conditioning": lipsync.conditioning,
                "lookahead_ms": round(1000 * lookahead_seconds(lipsync)),
                "audio": with_audio,
            }
        )
    )
    outbox = Outbox()
    tasks = [
        asyncio.create_task(coroutine)
        for coroutine in (_receive(websocket, session, outbox), _tick(session, outbox, executor), _send(websocket, outbox, with_audio))
    ]
    try:
        done, _ = await asyncio.wait(tasks, return_when=asyncio.FIRST_COMPLETED)
    finally:
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
    for task in done:  # a client that left or stopped reading ends its session quietly; a bug is raised
        failure = None if task.cancelled() else task.exception()
        if failure is not None and not isinstance(failure, (WebSocketDisconnect, asyncio.TimeoutError, ConnectionError, RuntimeError)):
            raise failure


async def _receive(websocket: WebSocket, session: LiveSession, outbox: Outbox) -> None:
    leftover = b""  # half a sample split across messages
    while True:
        message = await websocket.receive()
        if message["type"] == "websocket.disconnect":
            return
        if message.get("bytes") is not None:
            data = leftover + message["bytes"]
            whole = len(data) // 2 * 2
            leftover = data[whole:]
            try:
                session.push(from_pcm16(data[:whole]), time.perf_counter())
            except UserError as e:
                outbox.put(("event", {"type": "error", "message": str(e)}))
                await asyncio.sleep(0.2)  # let the sender deliver it
                return
            continue
        try:
            kind = json.loads(message.get("text") or "").get("type")
        except (json.JSONDecodeError, AttributeError):
            kind = None
        if kind == "end":
            session.end()
        elif kind == "interrupt":
            session.interrupt()  # its events come with the next frame, after any frame still being drawn
        else:
            outbox.put(("event", {"type": "error", "message": 'text messages must be {"type": "end"} or {"type": "interrupt"}'}))


async def _tick(session: LiveSession, outbox: Outbox, executor: Executor) -> None:
    async for ticked in play(session, executor, lambda frame: encode_jpeg(frame.image)):
        frame = ticked.frame
        for event in frame.events:  # an utterance starts before its first frame and ends after its last
            if event["type"] != "utterance_ended":
                outbox.put(("event", event))
        if ticked.prepared is not None:
            outbox.put(("frame", ticked.prepared, frame))
        for event in frame.events:
            if event["type"] == "utterance_ended":
                outbox.put(("event", event))


async def _send(websocket: WebSocket, outbox: Outbox, with_audio: bool) -> None:
    while True:
        item = await outbox.get()
        if item[0] == "event":
            await asyncio.wait_for(websocket.send_text(json.dumps(item[1])), SEND_TIMEOUT)
            continue
        _, jpeg, frame = item
        if frame.utterance is not None:
            latency = 1000 * (time.perf_counter() - frame.arrival)
            event = {
                "type": "frame",
                "utterance": frame.utterance,
                "index": frame.index,
                "latency_ms": round(latency, 1),
                "held": frame.held,
                "dropped": outbox.dropped,
            }
            await asyncio.wait_for(websocket.send_text(json.dumps(event)), SEND_TIMEOUT)
        await asyncio.wait_for(websocket.send_bytes(jpeg), SEND_TIMEOUT)
        if with_audio:
            await asyncio.wait_for(websocket.send_bytes(pcm16(frame.audio)), SEND_TIMEOUT)
