"""A WebRTC client for the tests and benches: an aiortc peer that offers to a running
`synctalk2d serve`, sends a speech file as its audio track (or nothing) and records both
tracks it gets back, with their arrival times."""

from __future__ import annotations

import asyncio
import json
import time
import urllib.request
from dataclasses import dataclass, field

import numpy as np
from aiortc import RTCConfiguration, RTCPeerConnection, RTCSessionDescription
from aiortc.contrib.media import MediaPlayer
from aiortc.mediastreams import MediaStreamError


@dataclass
class Received:
    video: list = field(default_factory=list)  # (arrival, pts, (H, W, 3) uint8 RGB)
    audio: list = field(default_factory=list)  # (arrival, pts, sample rate, mono float32 samples)
    events: list = field(default_factory=list)
    session: str = ""

    def audio_samples(self) -> tuple[np.ndarray, int]:
        return np.concatenate([a[3] for a in self.audio]), self.audio[0][2]

    def sender_times(self, kind: str) -> np.ndarray:
        """Each frame's time on the sender's clock, relative to a common origin: RTP time,
        shifted by the track's smallest arrival-minus-RTP offset (the tracks left the
        sender together; each is aligned on its fastest frame)."""
        items = self.video if kind == "video" else self.audio
        rate = 90000 if kind == "video" else items[0][2]
        rtp = np.array([pts for _, pts, *_ in items], np.float64) / rate
        arrival = np.array([a for a, *_ in items])
        return rtp + np.min(arrival - rtp)


def post_json(url: str, body: dict) -> dict:
    request = urllib.request.Request(url, json.dumps(body).encode(), {"Content-Type": "application/json"})
    with urllib.request.urlopen(request, timeout=60) as response:
        return json.loads(response.read())


async def call(base_url: str, seconds: float, speech: str | None = None, width: int | None = 320, keep_frames: bool = True, on_session=None) -> Received:
    """Connect, play ``speech`` (a file) into the call if given, record ``seconds`` of what
    comes back, hang up. ``on_session`` is called with the session id once answered."""
    peer = RTCPeerConnection(RTCConfiguration(iceServers=[]))
    received = Received()
    if speech:
        peer.addTrack(MediaPlayer(speech).audio)
    else:
        peer.addTransceiver("audio", direction="recvonly")
    peer.addTransceiver("video", direction="recvonly")
    channel = peer.createDataChannel("events")
    channel.on("message", lambda message: received.events.append((time.perf_counter(), json.loads(message))))
    tasks = []

    async def record(track):
        while True:
            try:
                frame = await track.recv()
            except MediaStreamError:
                return
            now = time.perf_counter()
            if track.kind == "video":
                received.video.append((now, frame.pts, frame.to_ndarray(format="rgb24") if keep_frames else None))
            else:
                samples = frame.to_ndarray().astype(np.float32) / 32768.0
                samples = samples.reshape(-1, len(frame.layout.channels)).mean(axis=1) if frame.format.is_packed else samples[0]
                received.audio.append((now, frame.pts, frame.sample_rate, samples))

    peer.on("track", lambda track: tasks.append(asyncio.ensure_future(record(track))))
    await peer.setLocalDescription(await peer.createOffer())
    loop = asyncio.get_running_loop()
    offer = {"sdp": peer.localDescription.sdp, "type": peer.localDescription.type, "width": width}
    answer = await loop.run_in_executor(None, post_json, base_url + "/v1/webrtc/offer", offer)
    received.session = answer["session"]
    if on_session is not None:
        on_session(answer["session"])
    await peer.setRemoteDescription(RTCSessionDescription(sdp=answer["sdp"], type=answer["type"]))
    await asyncio.sleep(seconds)
    await peer.close()
    for task in tasks:
        task.cancel()
    return received
