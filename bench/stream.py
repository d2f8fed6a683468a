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

CHUNK = 320  # samples: 20 ms at 16 kHz
HELD_SHARE = 0.02  # a session is real time while at most this share of its speaking frames came late


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


async def session(port: int, pcm: bytes, width: int | None, burst: bool) -> dict:
    url = f"ws://127.0.0.1:{port}/v1/stream" + (f"?width={width}" if width else "")
    for _ in range(50):  # the previous run's sessions may take a moment to close server-side
        async with websockets.connect(url, max_size=None) as ws:
            ready = json.loads(await ws.recv())
            if ready["type"] != "error":
                return await speak(ws, ready, pcm, burst)
        await asyncio.sleep(0.1)
    raise RuntimeError(f"the server stayed busy: {ready['message']}")


async def speak(ws, ready: dict, pcm: bytes, burst: bool) -> dict:
    """One session, once the server accepted it: idle frames, then speech at real-time pace (or at once)."""
    for _ in range(5):  # a few idle frames first: a running stream, as a viewer has
        await ws.recv()

    async def send():
        started = time.perf_counter()
        for i in range(0, len(pcm), 2 * CHUNK):
            if not burst:  # a live source has a chunk once its last sample is recorded
                await asyncio.sleep(max(0.0, started + (i + 2 * CHUNK) / 2 / 16000 - time.perf_counter()))
            await ws.send(pcm[i : i + 2 * CHUNK])
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


async def run(port: int, pcm: bytes, width: int | None, sessions: int, burst: bool, repeats: int) -> dict:
    results = []
    for _ in range(repeats):
        results += await asyncio.gather(*(session(port, pcm, width, burst) for _ in range(sessions)))
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
        "realtime": fps >= 24 and not any(r["dropped"] for r in results) and held <= HELD_SHARE * spoken,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--avatar", type=Path, help="a trained avatar (default: train the bundled sample)")
    parser.add_argument("--widths", nargs="+", default=["480", "full"], help="frame widths in pixels, or full")
    parser.add_argument("--seconds", type=float, default=6.0, help="speech per session")
    parser.add_argument("--max-sessions", type=int, default=4)
    parser.add_argument("--repeats", type=int, default=3, help="utterances per single-session latency run")
    args = parser.parse_args()

    with tempfile.TemporaryDirectory() as tmp:
        avatar = args.avatar or build_avatar(Path(tmp))
        wav, _ = load_audio(sample_path(SAMPLE_SPEECH))
        pcm = (np.clip(wav[: int(args.seconds * 16000)], -1, 1) * 32767).astype("<i2").tobytes()
        server, port = start_server(avatar, args.max_sessions)
        try:
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
    print(
        json.dumps(
            {
                "avatar": str(args.avatar or "bundled sample"),
                "cpu": platform.processor() or platform.machine(),
                "cores": os.cpu_count(),
                "speech_seconds": args.seconds,
                "runs": runs,
            },
            indent=2,
        )
    )


if __name__ == "__main__":
    main()
