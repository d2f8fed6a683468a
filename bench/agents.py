"""How many avatars one agent process renders in real time with the framework plugins, as JSON.

    python bench/agents.py [--avatar DIR] [--width 480] [--max-sessions 8] [--seconds 6]

N LiveKit `SyncTalk2DVideoGenerator`s (the Pipecat service runs the same live core and
clock) in one process, as N agents' avatars would run: each is fed TTS audio (24 kHz,
20 ms frames) at real-time pace and its frames are taken as the framework's runner takes
them, converted to `rtc.VideoFrame`/`rtc.AudioFrame`. Per N: the slowest session's
frames/s, ticks the process was too busy to draw (their picture repeats the last), and its
CPU milliseconds per drawn frame; real time means 24 frames/s and every tick drawn. The
framework's own video encoding is not in these figures: LiveKit encodes in its native
process only once a room has subscribers, and Pipecat's SmallWebRTCTransport encodes VP8
with aiortc, whose cost per frame `bench/stream.py` measures (its breakdown's ``vp8``).
"""

from __future__ import annotations

import argparse
import asyncio
import os
import platform
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
from livekit import rtc

sys.path.insert(0, str(Path(__file__).resolve().parent))
from stream import build_avatar, publish  # noqa: E402

from synctalk2d.demo import SAMPLE_SPEECH, sample_path  # noqa: E402
from synctalk2d.inference.lipsync import LipSync  # noqa: E402
from synctalk2d.inference.stream import warm_up  # noqa: E402
from synctalk2d.integrations.livekit import SyncTalk2DVideoGenerator  # noqa: E402
from synctalk2d.media.audio import load_audio  # noqa: E402

TTS_RATE = 24000
PIECE = TTS_RATE // 50


async def sessions(lipsync: LipSync, width: int, pcm: np.ndarray, count: int) -> dict:
    seconds = len(pcm) / TTS_RATE + 1.0

    async def one() -> dict:
        generator = SyncTalk2DVideoGenerator(lipsync, width, threads=1)

        async def feed():
            started = time.perf_counter()
            for i in range(0, len(pcm), PIECE):
                await asyncio.sleep(max(0.0, started + i / TTS_RATE - time.perf_counter()))
                await generator.push_audio(rtc.AudioFrame(pcm[i : i + PIECE].tobytes(), TTS_RATE, 1, PIECE))

        feeder = asyncio.create_task(feed())
        video, started = 0, time.perf_counter()
        async for item in generator:
            video += isinstance(item, rtc.VideoFrame)
            if time.perf_counter() - started > seconds:
                break
        await feeder
        await generator.aclose()
        return {"fps": video / (time.perf_counter() - started), "undrawn": generator.undrawn, "frames": video}

    cpu = time.process_time()
    results = await asyncio.gather(*(one() for _ in range(count)))
    cpu = time.process_time() - cpu
    fps = min(r["fps"] for r in results)
    undrawn = sum(r["undrawn"] for r in results)
    drawn = sum(r["frames"] for r in results) - undrawn
    return {
        "sessions": count,
        "slowest_fps": round(fps, 2),
        "ticks_not_drawn": undrawn,
        "cpu_ms_per_drawn_frame": round(1000 * cpu / max(drawn, 1), 2),
        "realtime": fps >= 24 and not undrawn,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--avatar", type=Path, help="a trained avatar (default: train the bundled sample)")
    parser.add_argument("--width", type=int, default=480)
    parser.add_argument("--max-sessions", type=int, default=8)
    parser.add_argument("--seconds", type=float, default=6.0)
    parser.add_argument("--figures", type=Path, help="also write the JSON here (docs/figures/agents.json)")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        lipsync = LipSync(args.avatar or build_avatar(Path(tmp)))
        warm_up(lipsync)  # as the plugins do when they load an avatar
        wav, _ = load_audio(sample_path(SAMPLE_SPEECH), sample_rate=TTS_RATE)
        pcm = (np.clip(wav[: int(args.seconds * TTS_RATE)], -1, 1) * 32767).astype(np.int16)
        runs = []
        for count in range(1, args.max_sessions + 1):
            runs.append(asyncio.run(sessions(lipsync, args.width, pcm, count)))
            if not runs[-1]["realtime"]:
                break
    sustained = max([r["sessions"] for r in runs if r["realtime"]], default=0)
    publish(
        {
            "date": time.strftime("%Y-%m-%d"),
            "machine": f"{platform.machine()}, {os.cpu_count()} CPUs",
            "command": f"python bench/agents.py --width {args.width}",
            "width": args.width,
            "runs": runs,
            "summary": [{"measure": "speaking avatars one agent process renders in real time", "value": sustained}],
        },
        args.figures,
    )


if __name__ == "__main__":
    main()
