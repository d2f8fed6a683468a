"""A live WebRTC session for half an hour: do voice and lips stay together? JSON on stdout.

    python bench/soak.py [--avatar DIR] [--minutes 30] [--figures docs/figures/soak.json]

Starts `synctalk2d serve` in its own process (default avatar: the bundled sample, trained
with the defaults), then one aiortc peer on loopback plays speech and silence in turns
(the first 4 s of the bundled speech, the same every time, then 4 s of silence) into the
call as its audio track, at real-time pace, and records both tracks coming back. The same
words each time: their mouth opens at the same offset from their onset while voice and
lips stay together, so a change in offset is a change in sync, not in the words. Per utterance, at the receiver: the speech onset
in the received audio and the frame where the received mouth opens half way (dlib
landmarks on the received frames), both on the sender's clock (RTP time, each track
aligned on its fastest packet), and their offset in frames. The renderer opens lips up to
`LEAD_FRAMES` before the sound by design, so the offset is reported as measured; "stays
within ±1 frame" is checked against the session's own median offset. Also: video frames
lost (gaps in RTP time), the drift of each track's arrival against its RTP clock (last
minute against the first: a sender falling behind its timestamps), and the server's
resident memory, sampled every 10 s.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import platform
import sys
import tempfile
import time
from collections import deque
from pathlib import Path

import av
import numpy as np
from aiortc import RTCConfiguration, RTCPeerConnection, RTCSessionDescription
from aiortc.contrib.media import MediaPlayer
from aiortc.mediastreams import MediaStreamError

sys.path.insert(0, str(Path(__file__).resolve().parent))
from stream import build_avatar, publish, start_server  # noqa: E402

from synctalk2d.audio.vad import LEAD_FRAMES  # noqa: E402
from synctalk2d.demo import SAMPLE_SPEECH, sample_path  # noqa: E402
from synctalk2d.face.landmarks import landmark_detector  # noqa: E402
from synctalk2d.inference.stream import GATE_PREROLL_SECONDS  # noqa: E402
from synctalk2d.media.audio import load_audio  # noqa: E402

SPEAK, QUIET = 4.0, 4.0  # seconds of speech, then of silence, in turns
WINDOW = (
    0.04 - GATE_PREROLL_SECONDS,
    0.6,
)  # seconds around an onset where the mouth's opening is looked for: from the utterance's start (the gate opens that far ahead)


def speech_and_silence(path: Path, minutes: float) -> int:
    """Write the turns as a 16 kHz WAV; returns the number of utterances."""
    wav, _ = load_audio(sample_path(SAMPLE_SPEECH))
    turns = int(minutes * 60 / (SPEAK + QUIET))
    with av.open(str(path), "w") as container:
        stream = container.add_stream("pcm_s16le", rate=16000)
        stream.layout = "mono"
        for _ in range(turns):
            clip = np.concatenate([np.zeros(int(QUIET * 16000)), wav[: int(SPEAK * 16000)]])
            frame = av.AudioFrame.from_ndarray((np.clip(clip, -1, 1) * 32767).astype(np.int16)[None], format="s16", layout="mono")
            frame.sample_rate = 16000
            for packet in stream.encode(frame):
                container.mux(packet)
        for packet in stream.encode(None):
            container.mux(packet)
    return turns


def rss_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return float("nan")


class Receiver:
    """Both tracks as they arrive, analysed on the fly (nothing kept beyond a few seconds)."""

    def __init__(self):
        self.frames: deque = deque(maxlen=200)  # (arrival, rtp seconds, image)
        self.video_offset = np.inf  # min over frames of arrival - RTP time
        self.audio_offset = np.inf
        self.offsets_by_minute: dict[str, list] = {"video": [], "audio": []}
        self.video_pts: int | None = None
        self.lost_frames = 0
        self.video_count = 0
        self.loud_run = self.quiet_run = 0
        self.onsets: list[float] = []  # sender-clock seconds
        self.started = time.perf_counter()

    def _minute_offset(self, kind: str, offset: float) -> None:
        minute = int((time.perf_counter() - self.started) / 60)
        rows = self.offsets_by_minute[kind]
        while len(rows) <= minute:
            rows.append(np.inf)
        rows[minute] = min(rows[minute], offset)

    def video(self, frame) -> None:
        now, rtp = time.perf_counter(), frame.pts / 90000
        if self.video_pts is not None and frame.pts - self.video_pts > 3600:
            self.lost_frames += (frame.pts - self.video_pts) // 3600 - 1
        self.video_pts = frame.pts
        self.video_count += 1
        self.video_offset = min(self.video_offset, now - rtp)
        self._minute_offset("video", now - rtp)
        self.frames.append((rtp, frame.to_ndarray(format="rgb24")))

    def audio(self, frame) -> None:
        now, rtp = time.perf_counter(), frame.pts / frame.sample_rate
        self.audio_offset = min(self.audio_offset, now - rtp)
        self._minute_offset("audio", now - rtp)
        samples = frame.to_ndarray().astype(np.float32) / 32768.0
        loud = float(np.sqrt(np.mean(samples**2))) > 0.02
        if loud and self.quiet_run >= 50:  # a second of quiet, then sound: an utterance starts
            self.onsets.append(rtp)
        self.quiet_run = 0 if loud else self.quiet_run + 1


def opening_offset(receiver: Receiver, onset_rtp_audio: float, detect) -> float | None:
    """Frames from the speech onset to the frame where the mouth opens half way."""
    onset = onset_rtp_audio + receiver.audio_offset - receiver.video_offset  # onto the video's RTP clock
    window = [(rtp, image) for rtp, image in receiver.frames if onset + WINDOW[0] <= rtp <= onset + WINDOW[1]]
    if len(window) < 20:
        return None
    times = np.array([rtp for rtp, _ in window])
    opening = []
    for _, image in window:
        points = detect(image)
        opening.append(np.nan if points is None else np.mean([np.linalg.norm(points[a] - points[b]) for a, b in ((61, 67), (62, 66), (63, 65))]))
    opening = np.array(opening)
    before = times < onset - (LEAD_FRAMES + 1) / 25
    if not before.any() or np.all(np.isnan(opening)):
        return None
    rest, wide = np.nanmedian(opening[before]), np.nanpercentile(opening[~before], 90)
    crossed = np.flatnonzero(opening > rest + 0.5 * (wide - rest))
    return None if not len(crossed) else float((times[crossed[0]] - onset) * 25)


async def soak(port: int, wav_path: Path, seconds: float, server_pid: int) -> dict:
    peer = RTCPeerConnection(RTCConfiguration(iceServers=[]))
    peer.addTrack(MediaPlayer(str(wav_path)).audio)
    peer.addTransceiver("video", direction="recvonly")
    receiver, tasks, memory = Receiver(), [], []
    loop = asyncio.get_running_loop()

    async def record(track):
        while True:
            try:
                frame = await track.recv()
            except MediaStreamError:
                return
            (receiver.video if track.kind == "video" else receiver.audio)(frame)

    peer.on("track", lambda track: tasks.append(asyncio.ensure_future(record(track))))
    await peer.setLocalDescription(await peer.createOffer())
    import urllib.request

    request = urllib.request.Request(
        f"http://127.0.0.1:{port}/v1/webrtc/offer",
        json.dumps({"sdp": peer.localDescription.sdp, "type": "offer", "width": 320}).encode(),
        {"Content-Type": "application/json"},
    )
    answer = json.loads(await loop.run_in_executor(None, lambda: urllib.request.urlopen(request, timeout=60).read()))
    await peer.setRemoteDescription(RTCSessionDescription(sdp=answer["sdp"], type=answer["type"]))

    detect = landmark_detector("dlib")
    offsets, analysed = [], 0
    started = time.perf_counter()
    while time.perf_counter() - started < seconds:
        await asyncio.sleep(1.0)
        if int(time.perf_counter() - started) % 10 == 0:
            memory.append(round(rss_mb(server_pid), 1))
        while (
            analysed < len(receiver.onsets)
            and receiver.frames
            and receiver.frames[-1][0] > receiver.onsets[analysed] + receiver.audio_offset - receiver.video_offset + WINDOW[1]
        ):
            offsets.append(await loop.run_in_executor(None, opening_offset, receiver, receiver.onsets[analysed], detect))
            analysed += 1
    await peer.close()
    for task in tasks:
        task.cancel()
    measured = np.array([o for o in offsets if o is not None])
    median = float(np.median(measured)) if len(measured) else float("nan")
    drift = {kind: round(1000 * (rows[-1] - rows[0]), 1) if len(rows) > 1 else None for kind, rows in receiver.offsets_by_minute.items()}
    return {
        "utterances": len(receiver.onsets),
        "utterances_measured": int(len(measured)),
        "offset_frames": {"median": median, "min": float(measured.min()), "max": float(measured.max())} if len(measured) else None,
        "within_1_frame_of_median": float(np.mean(np.abs(measured - median) <= 1)) if len(measured) else None,
        "offsets_by_utterance": [None if o is None else round(o, 2) for o in offsets],
        "video_frames": receiver.video_count,
        "video_frames_lost": int(receiver.lost_frames),
        "arrival_drift_ms_last_vs_first_minute": drift,
        "server_rss_mb": {"first": memory[0] if memory else None, "last": memory[-1] if memory else None, "max": max(memory) if memory else None},
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--avatar", type=Path, help="a trained avatar (default: train the bundled sample)")
    parser.add_argument("--minutes", type=float, default=30.0)
    parser.add_argument("--figures", type=Path, help="also write the JSON here (docs/figures/soak.json)")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        avatar = args.avatar or build_avatar(Path(tmp))
        wav_path = Path(tmp) / "turns.wav"
        turns = speech_and_silence(wav_path, args.minutes)
        server, port = start_server(avatar, 2)
        try:
            result = asyncio.run(soak(port, wav_path, args.minutes * 60, server.pid))
        finally:
            server.terminate()
            server.wait(10)
    publish(
        {
            "date": time.strftime("%Y-%m-%d"),
            "machine": f"{platform.machine()}, {os.cpu_count()} CPUs",
            "command": "python bench/soak.py" + (f" --minutes {args.minutes:g}" if args.minutes != 30 else ""),
            "minutes": args.minutes,
            "turns_sent": turns,
            **result,
        },
        args.figures,
    )


if __name__ == "__main__":
    main()
