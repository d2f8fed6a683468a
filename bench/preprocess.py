"""Preprocessing speed on a real 1080x1920 HEVC clip, as JSON on stdout.

    python bench/preprocess.py [VIDEO] [--repeat N]

Reports source frames per second of the whole `preprocess` stage (decode, landmarks,
JPEG frames, crops, audio, mel), best of N runs after a warm-up run that pays one-off
costs (imports, numba compilation in librosa). Target: >= 25 frames/s on 2 cores.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import tempfile
import time
from pathlib import Path

import av

from synctalk2d.media.video import probe_video
from synctalk2d.preprocess import preprocess

DEFAULT = Path(__file__).resolve().parents[2] / "shared" / "fixtures" / "speaker_20s.mp4"


def source_frame_count(path: Path) -> int:
    with av.open(str(path)) as c:
        return sum(1 for _ in c.demux(video=0) if _.size)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("video", nargs="?", type=Path, default=DEFAULT)
    parser.add_argument("--repeat", type=int, default=2)
    args = parser.parse_args()
    info = probe_video(args.video)
    source_frames = source_frame_count(args.video)
    runs = []
    with tempfile.TemporaryDirectory() as tmp:
        warm = preprocess(args.video, Path(tmp) / "warmup", show_progress=False)
        for i in range(args.repeat):
            started = time.perf_counter()
            summary = preprocess(args.video, Path(tmp) / f"run{i}", show_progress=False)
            runs.append(time.perf_counter() - started)
    best = min(runs)
    print(
        json.dumps(
            {
                "benchmark": "preprocess",
                "video": args.video.name,
                "codec": info.codec,
                "size": [info.width, info.height],
                "source_frames": source_frames,
                "output_frames": summary.num_frames,
                "seconds": round(best, 3),
                "source_frames_per_second": round(source_frames / best, 2),
                "runs_seconds": [round(r, 3) for r in runs],
                "warmup_seconds": round(warm.seconds, 3),
                "target_frames_per_second": 25,
                "cpu_count": os.cpu_count(),
                "machine": platform.processor() or platform.machine(),
            },
            indent=2,
        )
    )


if __name__ == "__main__":
    main()
