"""The live stream over WebRTC: the avatar's video and its voice, two tracks of one peer
connection, stamped from the live core's one 25 fps clock (`inference.player`).

`POST /v1/webrtc/offer` (`app.py`) hands the browser's offer to `open_session`, which
answers it. Each tick of the clock gives one video frame (RTP time ``tick * 3600`` at
90 kHz) and its 40 ms of audio as two 20 ms Opus frames (``tick * 640`` at 16 kHz), put
on the two tracks together: aiortc sends each as soon as it is encoded, and its RTCP
sender reports tie both RTP clocks to the same wall clock, which is what a browser's
lip sync works from. Speech reaches the session as the client's own audio track (cut into
utterances by `SpeechGate`) or pushed by session id (`push`, `end`, `interrupt`, for a
server-side TTS). A data channel the client opens carries the session's events as JSON
and takes ``{"type": "end"}`` and ``{"type": "interrupt"}``. A peer that hangs up, fails, or
stops sending receiver reports for `SILENT_PEER_SECONDS` frees its session.
"""

from __future__ import annotations

import asyncio
import fractions
import json
import time
import uuid
from concurrent.futures import Executor
from datetime import datetime, timezone

import av
import numpy as np
from aiortc import MediaStreamTrack, RTCConfiguration, RTCPeerConnection, RTCSessionDescription
from aiortc.mediastreams import MediaStreamError

from synctalk2d.avatar import SAMPLES_PER_FRAME
from synctalk2d.errors import UserError
from synctalk2d.inference.lipsync import LipSync
from synctalk2d.inference.player import play
from synctalk2d.inference.stream import LiveFrame, LiveSession, SpeechGate
from synctalk2d.media.audio import SAMPLE_RATE, SpeechResampler

VIDEO_CLOCK = fractions.Fraction(1, 90000)
AUDIO_CLOCK = fractions.Fraction(1, SAMPLE_RATE)
AUDIO_PIECES = 2  # Opus frames of 20 ms per 40 ms tick
QUEUED_FRAMES = 8  # per track: a sender this far behind loses its oldest frames
CONNECT_SECONDS = 30.0  # a peer that has not connected by then is closed
SILENT_PEER_SECONDS = 10.0  # a peer whose receiver reports stop this long has gone (ICE consent alone takes 30 s)


class TickTrack(MediaStreamTrack):
    """A track fed by the clock: `recv` hands aiortc's sender the next queued frame."""

    def __init__(self, kind: str):
        super().__init__()
        self.kind = kind
        self.queue: asyncio.Queue = asyncio.Queue()

    def put(self, frame: av.VideoFrame | av.AudioFrame) -> None:
        if self.queue.qsize() >= QUEUED_FRAMES:
            self.queue.get_nowait()
        self.queue.put_nowait(frame)

    async def recv(self) -> av.VideoFrame | av.AudioFrame:
        if self.readyState != "live":
            raise MediaStreamError
        return await self.queue.get()


def video_frame(frame: LiveFrame) -> av.VideoFrame:
    """The picture as the encoder wants it (YUV 4:2:0, converted in the frame pool, not on
    the event loop); the clock stamps it."""
    video = av.VideoFrame.from_ndarray(frame.image, format="rgb24").reformat(format="yuv420p")
    video.time_base = VIDEO_CLOCK
    return video


def audio_frames(samples: np.ndarray, tick: int) -> list[av.AudioFrame]:
    pcm = (np.clip(samples, -1.0, 1.0) * 32767.0).round().astype(np.int16)
    pieces = []
    for i, piece in enumerate(np.split(pcm, AUDIO_PIECES)):
        audio = av.AudioFrame.from_ndarray(piece[None], format="s16", layout="mono")
        audio.sample_rate, audio.pts, audio.time_base = SAMPLE_RATE, tick * SAMPLES_PER_FRAME + i * len(piece), AUDIO_CLOCK
        pieces.append(audio)
    return pieces


class WebRTCSession:
    """One peer connection showing one `LiveSession`."""

    def __init__(self, session: LiveSession, executor: Executor):
        self.id = uuid.uuid4().hex
        self.session = session
        self.executor = executor
        self.peer = RTCPeerConnection(RTCConfiguration(iceServers=[]))  # host candidates only: no STUN or TURN is reached out to
        self.video, self.audio = TickTrack("video"), TickTrack("audio")
        self.channel = None
        self.closed = asyncio.Event()
        self.tasks: list[asyncio.Task] = []

    async def answer(self, sdp: str, kind: str) -> RTCSessionDescription:
        @self.peer.on("track")
        def on_track(track):
            if track.kind == "audio":
                self.tasks.append(asyncio.create_task(self._listen(track)))

        @self.peer.on("datachannel")
        def on_datachannel(channel):
            self.channel = channel

            @channel.on("message")
            def on_message(message):
                try:
                    kind = json.loads(message).get("type")
                except (json.JSONDecodeError, AttributeError, TypeError):
                    kind = None
                if kind == "end":
                    self.session.end()
                elif kind == "interrupt":
                    self.session.interrupt()  # its events come with the next frame
                else:
                    self.send_events([{"type": "error", "message": 'messages must be {"type": "end"} or {"type": "interrupt"}'}])

        @self.peer.on("connectionstatechange")
        async def on_state():
            if self.peer.connectionState in ("failed", "closed"):
                await self.close()

        if kind != "offer" or "m=video" not in sdp:
            raise UserError("send an offer that receives video (and audio), as RTCPeerConnection.createOffer makes with a video transceiver")
        try:
            await self.peer.setRemoteDescription(RTCSessionDescription(sdp=sdp, type=kind))
            self.peer.addTrack(self.video)
            self.peer.addTrack(self.audio)
            await self.peer.setLocalDescription(await self.peer.createAnswer())
        except (ValueError, KeyError, AttributeError) as e:
            await self.peer.close()
            raise UserError(f"the offer is not a WebRTC session description this server can answer ({e})") from e
        self.tasks.append(asyncio.create_task(self._run()))
        self.tasks.append(asyncio.create_task(self._expire_unconnected()))
        self.tasks.append(asyncio.create_task(self._watch_reports()))
        return self.peer.localDescription

    async def _run(self) -> None:
        async for ticked in play(self.session, self.executor, video_frame):
            frame = ticked.frame
            if ticked.prepared is not None:
                ticked.prepared.pts = ticked.tick * 3600
                self.video.put(ticked.prepared)
            for piece in audio_frames(frame.audio, ticked.tick):
                self.audio.put(piece)
            self.send_events(frame.events)

    async def _listen(self, track: MediaStreamTrack) -> None:
        """The client's audio track, as 16 kHz mono speech, cut into utterances."""
        gate, resampler = SpeechGate(self.session), None
        while True:
            try:
                frame = await track.recv()
            except MediaStreamError:
                return
            channels = len(frame.layout.channels)
            if resampler is None or (resampler.sample_rate, resampler.channels) != (frame.sample_rate, channels):
                resampler = SpeechResampler(frame.sample_rate, channels)
            gate.feed(resampler(frame.to_ndarray().ravel()), time.perf_counter())

    async def _expire_unconnected(self) -> None:
        await asyncio.sleep(CONNECT_SECONDS)
        if self.peer.connectionState != "connected":
            await self.close()

    async def _watch_reports(self) -> None:
        """Close the session when the peer's RTCP receiver reports stop: a client that vanished
        (its process killed, its network gone) frees its place in seconds, not at the end
        of ICE consent. A peer that never sent a report is left to consent."""
        while not self.closed.is_set():
            await asyncio.sleep(SILENT_PEER_SECONDS / 4)
            reports = [r.timestamp for r in (await self.peer.getStats()).values() if r.type == "remote-inbound-rtp"]
            if reports and (datetime.now(timezone.utc) - max(reports)).total_seconds() > SILENT_PEER_SECONDS:
                await self.close()

    def send_events(self, events: list[dict]) -> None:
        if self.channel is not None and self.channel.readyState == "open":
            for event in events:
                self.channel.send(json.dumps(event))

    async def close(self) -> None:
        if self.closed.is_set():
            return
        self.closed.set()
        current = asyncio.current_task()
        for task in self.tasks:
            if task is not current:
                task.cancel()
        self.video.stop()
        self.audio.stop()
        await self.peer.close()


class WebRTCSessions:
    """The server's open peer connections, by session id."""

    def __init__(self):
        self.open: dict[str, WebRTCSession] = {}

    async def open_session(self, lipsync: LipSync, executor: Executor, sdp: str, kind: str, width: int | None) -> tuple[WebRTCSession, RTCSessionDescription]:
        live = await asyncio.get_running_loop().run_in_executor(executor, LiveSession, lipsync, width)
        session = WebRTCSession(live, executor)
        answer = await session.answer(sdp, kind)
        self.open[session.id] = session
        return session, answer

    async def closed(self, session: WebRTCSession) -> None:
        """Wait until ``session`` ends (the peer left, failed or was closed), then forget it."""
        try:
            await session.closed.wait()
        finally:
            self.open.pop(session.id, None)

    def get(self, session_id: str) -> WebRTCSession:
        if session_id not in self.open:
            raise UserError("no such WebRTC session (it ended, or never was)")
        return self.open[session_id]

    async def close_all(self) -> None:
        for session in list(self.open.values()):
            await session.close()
        self.open.clear()
