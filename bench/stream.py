"""Live streaming latency and throughput of `synctalk2d serve`, as JSON on stdout.

    python bench/stream.py [--avatar DIR] [--widths 480 full] [--seconds 6] [--max-sessions 4]

Starts `synctalk2d serve` in its own process (default avatar: the bundled sample clip,
preprocessed and trained with the default mouth conditioning into a temporary directory),
then, for each frame width, opens 1, 2, 3... concurrent WebSocket sessions. Each session
sends SECONDS of real speech (the bundled 12 s speech) as 16 kHz PCM in 20 ms chunks at
real-time pace, as a microphone or a streaming TTS does, then ``end``. Per run:

* ``first_frame_latency_ms``: from the arrival of the first audio chunk to the first frame
  that speaks it (server-side, reported in the stream's frame events), p50/p95 over
  sessions and ``repeats``; ``frame_latency_ms``: the same for every speaking frame;
* ``fps``: frames received per second of stream per session (25 is real time), min over
  sessions; ``held_frames``: frames drawn too late for their audio, shown with the
  previous mouth; ``realtime``: every session held >= 24 fps, dropped no frame and held
  at most 2 % of its speaking frames.

``sessions_sustained`` is the largest session count that stayed real time. A second
mode, ``burst``, sends the whole utterance at once (a TTS that renders faster than real
time): its first-frame latency is the processing delay alone, without waiting for audio.

``chunk_sizes``: one session at the first width, speech sent in chunks of each of
``--chunks-ms`` at real-time pace: first-frame latency and the share of speaking frames
held (shown again because their audio was late).

``breakdown`` (in this process, no server): the CPU milliseconds of one speaking frame at
the first width, split into choosing the mouth (the session's decision), decoding the
frames drawn on and from, pasting, and encoding (JPEG for the WebSocket, VP8 for WebRTC),
with the decoded-frame cache off and on.

``webrtc_sessions`` (in this process): N live sessions as the WebRTC transport runs them
(the live clock, the frame converted for the encoder, VP8 and Opus encoding as aiortc does
it), without the network: each session real time if it drew >= 24 frames/s, skipped no
tick and held at most 2 % of its speaking frames.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import platform
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import websockets

from synctalk2d.demo import SAMPLE_SPEECH, SAMPLE_VIDEO, sample_path
from synctalk2d.media.audio import load_audio

CHUNK = 320  # samples: 20 ms at 16 kHz (the default chunk)
HELD_SHARE = 0.02  # a session is real time while at most this share of its speaking frames came late


def publish(report: dict, figures: Path | None) -> None:
    """Print a bench's JSON, and write it to ``figures`` (a docs/figures file) if given."""
    text = json.dumps(report, indent=2)
    print(text)
    if figures:
        figures.write_text(text + "\n")


def build_avatar(workdir: Path) -> Path:
    from synctalk2d.preprocess import preprocess
    from synctalk2d.training.train import build_config, train

    root = workdir / "avatar"
    preprocess(sample_path(SAMPLE_VIDEO), root, show_progress=False)
    train(build_config(root, conditioning="mouth"), show_progress=False)
    return root


def start_server(avatar: Path, max_sessions: int) -> tuple[subprocess.Popen, int]:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    command = [sys.executable, "-m", "synctalk2d", "serve", "--avatar", str(avatar), "--port", str(port), "--max-sessions", str(max_sessions)]
    server = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    for _ in range(600):
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.1):
                return server, port
        except OSError:
            if server.poll() is not None:
                raise SystemExit(f"the server exited: {server.stderr.read().decode()}") from None
            time.sleep(0.1)
    raise SystemExit("the server did not start within a minute")


async def session(port: int, pcm: bytes, width: int | None, burst: bool, chunk: int = CHUNK) -> dict:
    url = f"ws://127.0.0.1:{port}/v1/stream" + (f"?width={width}" if width else "")
    for _ in range(50):  # the previous run's sessions may take a moment to close server-side
        async with websockets.connect(url, max_size=None, compression=None) as ws:
            ready = json.loads(await ws.recv())
            if ready["type"] != "error":
                return await speak(ws, ready, pcm, burst, chunk)
        await asyncio.sleep(0.1)
    raise RuntimeError(f"the server stayed busy: {ready['message']}")


async def speak(ws, ready: dict, pcm: bytes, burst: bool, chunk: int = CHUNK) -> dict:
    """One session, once the server accepted it: idle frames, then speech at real-time pace (or at once)."""
    for _ in range(5):  # a few idle frames first: a running stream, as a viewer has
        await ws.recv()

    async def send():
        started = time.perf_counter()
        for i in range(0, len(pcm), 2 * chunk):
            if not burst:  # a live source has a chunk once its last sample is recorded
                await asyncio.sleep(max(0.0, started + (i + 2 * chunk) / 2 / 16000 - time.perf_counter()))
            await ws.send(pcm[i : i + 2 * chunk])
        await ws.send(json.dumps({"type": "end"}))

    sender = asyncio.create_task(send())
    latencies, frame_times, dropped, held = [], [], 0, 0
    async for message in ws:
        if isinstance(message, bytes):
            frame_times.append(time.perf_counter())
            continue
        event = json.loads(message)
        if event["type"] == "frame":
            latencies.append(event["latency_ms"])
            dropped, held = event["dropped"], held + event["held"]
        elif event["type"] == "utterance_ended":
            break
        elif event["type"] == "error":
            raise RuntimeError(event["message"])
    await sender
    span = frame_times[-1] - frame_times[0] if len(frame_times) > 1 else float("nan")
    return {
        "size": [ready["width"], ready["height"]],
        "first": latencies[0],
        "latencies": latencies,
        "fps": (len(frame_times) - 1) / span,
        "dropped": dropped,
        "held": held,
    }


def percentiles(values: list[float]) -> dict:
    return {"p50": round(float(np.percentile(values, 50)), 1), "p95": round(float(np.percentile(values, 95)), 1)}


async def run(port: int, pcm: bytes, width: int | None, sessions: int, burst: bool, repeats: int, chunk: int = CHUNK) -> dict:
    results = []
    for _ in range(repeats):
        results += await asyncio.gather(*(session(port, pcm, width, burst, chunk) for _ in range(sessions)))
    fps = min(r["fps"] for r in results)
    held, spoken = sum(r["held"] for r in results), sum(len(r["latencies"]) for r in results)
    return {
        "sessions": sessions,
        "mode": "burst" if burst else "realtime",
        "size": results[0]["size"],
        "first_frame_latency_ms": percentiles([r["first"] for r in results]),
        "frame_latency_ms": percentiles([x for r in results for x in r["latencies"]]),
        "fps": round(fps, 2),
        "dropped_frames": sum(r["dropped"] for r in results),
        "held_frames": held,
        "held_share": round(held / max(spoken, 1), 4),
        "chunk_ms": chunk * 1000 // 16000,
        "realtime": fps >= 24 and not any(r["dropped"] for r in results) and held <= HELD_SHARE * spoken,
    }


def breakdown(avatar: Path, width: int, wav: np.ndarray) -> dict:
    """CPU ms per speaking frame, by part (see the module docstring)."""
    import torch
    from aiortc.codecs import get_encoder
    from aiortc.rtcrtpparameters import RTCRtpCodecParameters

    from synctalk2d.inference.lipsync import LipSync
    from synctalk2d.inference.stream import LiveSession, warm_up
    from synctalk2d.serving.live import encode_jpeg
    from synctalk2d.serving.webrtc import video_frame

    torch.set_num_threads(1)  # as in the server's frame pool
    lipsync = LipSync(avatar)
    warm_up(lipsync)  # first-call set-up is not a frame's cost
    generator = lipsync.generator_at(width)
    parts: dict[str, list[float]] = {"choose_mouth": [], "decode_uncached": [], "decode_cached": [], "paste": [], "jpeg": [], "vp8": []}
    encoder = get_encoder(RTCRtpCodecParameters(mimeType="video/VP8", clockRate=90000))
    session = LiveSession(lipsync, width)
    cpu = time.thread_time
    for tick in range(int(len(wav) / 640) - 1):
        t = cpu()  # as live: a frame's two 20 ms chunks arrive, then the frame is decided
        for start in (tick * 640, tick * 640 + 320):
            session.push(wav[start : start + 320], start / 16000)
        frame = session.next_frame(tick, now=tick / 25 + 0.3, draw=False)
        parts["choose_mouth"].append(cpu() - t)
        if frame.reference is None:
            continue
        indices = {frame.source, frame.reference}
        t = cpu()
        for i in indices:
            lipsync.avatar.frame(i, width)
        parts["decode_uncached"].append(cpu() - t)
        t = cpu()
        for i in indices:
            generator.frame(i)
        parts["decode_cached"].append(cpu() - t)
        t = cpu()
        image = generator.composite(frame.source, generator.draw(np.array([frame.source]), np.array([[frame.reference, frame.reference, 1.0]]))[0])
        parts["paste"].append(cpu() - t)
        t = cpu()
        encode_jpeg(image)
        parts["jpeg"].append(cpu() - t)
        t = cpu()
        video = video_frame(type(frame)(image, frame.source))
        video.pts = tick * 3600
        encoder.encode(video)
        parts["vp8"].append(cpu() - t)
    ms = {name: round(1000 * float(np.mean(values)), 2) for name, values in parts.items() if values}
    ms["websocket_frame"] = round(ms["choose_mouth"] + ms["decode_cached"] + ms["paste"] + ms["jpeg"], 2)
    ms["webrtc_frame"] = round(ms["choose_mouth"] + ms["decode_cached"] + ms["paste"] + ms["vp8"], 2)
    ms["before_cache_websocket_frame"] = round(ms["choose_mouth"] + ms["decode_uncached"] + ms["paste"] + ms["jpeg"], 2)
    return {"width": width, "speaking_frames": len(parts["paste"]), "cpu_ms_per_frame": ms}


async def webrtc_sessions(avatar: Path, width: int, wav: np.ndarray, count: int, threads: int) -> dict:
    """``count`` sessions run as `serving.webrtc` runs them, encoders included, no network."""
    from aiortc.codecs import get_encoder
    from aiortc.rtcrtpparameters import RTCRtpCodecParameters

    from synctalk2d.inference.lipsync import LipSync
    from synctalk2d.inference.player import play
    from synctalk2d.inference.runtime import single_threaded_pool
    from synctalk2d.inference.stream import LiveSession
    from synctalk2d.serving.webrtc import audio_frames, video_frame

    lipsync = LipSync(avatar)
    pool = single_threaded_pool(threads, "live-frame")  # as `serve` runs its frame pool
    loop = asyncio.get_running_loop()
    seconds = len(wav) / 16000 + 1.5

    async def one(index: int) -> dict:
        session = LiveSession(lipsync, width, start_frame=index * 7)
        video_encoder = get_encoder(RTCRtpCodecParameters(mimeType="video/VP8", clockRate=90000))
        audio_encoder = get_encoder(RTCRtpCodecParameters(mimeType="audio/opus", clockRate=48000, channels=2))
        stats = {"ticks": 0, "drawn": 0, "speaking": 0, "held": 0}

        async def feed():
            await asyncio.sleep(0.5)
            started = time.perf_counter()
            for i in range(0, len(wav), CHUNK):
                await asyncio.sleep(max(0.0, started + (i + CHUNK) / 16000 - time.perf_counter()))
                session.push(wav[i : i + CHUNK], time.perf_counter())
            session.end()

        feeder = asyncio.create_task(feed())
        started = time.perf_counter()
        async for ticked in play(session, pool, video_frame):
            stats["ticks"] += 1
            if ticked.prepared is not None:
                ticked.prepared.pts = ticked.tick * 3600
                await loop.run_in_executor(pool, video_encoder.encode, ticked.prepared)
                stats["drawn"] += 1
            for piece in audio_frames(ticked.frame.audio, ticked.tick):
                audio_encoder.encode(piece)
            if ticked.frame.utterance is not None:
                stats["speaking"] += 1
                stats["held"] += ticked.frame.held
            if time.perf_counter() - started > seconds:
                break
        await feeder
        elapsed = time.perf_counter() - started
        return {**stats, "fps": stats["drawn"] / elapsed}

    results = await asyncio.gather(*(one(i) for i in range(count)))
    pool.shutdown()
    held, spoken = sum(r["held"] for r in results), sum(r["speaking"] for r in results)
    skipped = sum(r["ticks"] - r["drawn"] for r in results)
    fps = min(r["fps"] for r in results)
    return {
        "sessions": count,
        "fps": round(fps, 2),
        "skipped_ticks": skipped,
        "held_share": round(held / max(spoken, 1), 4),
        "realtime": fps >= 24 and not skipped and held <= HELD_SHARE * spoken,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--avatar", type=Path, help="a trained avatar (default: train the bundled sample)")
    parser.add_argument("--widths", nargs="+", default=["480", "full"], help="frame widths in pixels, or full")
    parser.add_argument("--seconds", type=float, default=6.0, help="speech per session")
    parser.add_argument("--max-sessions", type=int, default=8)
    parser.add_argument("--repeats", type=int, default=3, help="utterances per single-session latency run")
    parser.add_argument("--chunks-ms", type=int, nargs="+", default=[10, 20, 50, 100, 200], help="chunk sizes for the chunk-size runs")
    parser.add_argument("--webrtc-sessions", type=int, default=8, help="most WebRTC sessions to try (0: skip)")
    parser.add_argument("--frame-threads", type=int, default=4, help="the server's frame pool (serve --frame-threads)")
    parser.add_argument("--figures", type=Path, help="also write the JSON here (docs/figures/stream.json)")
    args = parser.parse_args()

    with tempfile.TemporaryDirectory() as tmp:
        avatar = args.avatar or build_avatar(Path(tmp))
        wav, _ = load_audio(sample_path(SAMPLE_SPEECH))
        pcm = (np.clip(wav[: int(args.seconds * 16000)], -1, 1) * 32767).astype("<i2").tobytes()
        first_width = int(args.widths[0]) if args.widths[0] != "full" else None
        parts = breakdown(avatar, first_width, wav[: int(args.seconds * 16000)])
        capacity = []
        for count in range(1, args.webrtc_sessions + 1):
            capacity.append(asyncio.run(webrtc_sessions(avatar, first_width, wav[: int(args.seconds * 16000)], count, args.frame_threads)))
            if not capacity[-1]["realtime"]:
                break
        server, port = start_server(avatar, args.max_sessions)
        try:
            chunk_runs = [asyncio.run(run(port, pcm, first_width, 1, burst=False, repeats=args.repeats, chunk=ms * 16)) for ms in args.chunks_ms]
            runs = []
            for width in args.widths:
                w = None if width == "full" else int(width)
                runs.append(asyncio.run(run(port, pcm, w, 1, burst=True, repeats=args.repeats)))
                sustained = 0
                for count in range(1, args.max_sessions + 1):
                    result = asyncio.run(run(port, pcm, w, count, burst=False, repeats=args.repeats if count == 1 else 1))
                    runs.append(result)
                    if not result["realtime"]:
                        break
                    sustained = count
                runs.append({"size": result["size"], "sessions_sustained": sustained})
        finally:
            server.terminate()
            server.wait(10)
    publish(
        {
            "avatar": str(args.avatar or "bundled sample"),
            "cpu": platform.processor() or platform.machine(),
            "cores": os.cpu_count(),
            "speech_seconds": args.seconds,
            "breakdown": parts,
            "chunk_sizes": chunk_runs,
            "runs": runs,
            "webrtc_sessions": capacity,
            "webrtc_sessions_sustained": max([r["sessions"] for r in capacity if r["realtime"]], default=0),
        },
        args.figures,
    )


if __name__ == "__main__":
    main()
