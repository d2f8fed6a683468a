"""The README's picture: consecutive frames of a render above the real ones, from the
bundled sample, made by the project's own commands.

    python scripts/readme_strip.py [--workdir synctalk2d-demo] [--frames 6] [-o docs/images/render_strip.jpg]

Runs `synctalk2d demo`'s steps (reused when already done), then `synctalk2d evaluate
--preview`, which renders the avatar's held-out speech onto its training frames beside the
real held-out frames, and tiles ``--frames`` consecutive frames of that preview around the
face: the render on top, the real frames below.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import av
import cv2
import numpy as np

from synctalk2d.avatar import Avatar
from synctalk2d.demo import run_demo
from synctalk2d.evaluation.evaluate import evaluate


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--workdir", type=Path, default=Path("synctalk2d-demo"))
    parser.add_argument("--frames", type=int, default=6)
    parser.add_argument("--start", type=int, default=8, help="first frame of the held-out second to show")
    parser.add_argument("-o", "--output", type=Path, default=Path("docs/images/render_strip.jpg"))
    args = parser.parse_args()
    avatar = run_demo(args.workdir, show_progress=False).avatar
    preview = args.workdir / "preview.mp4"
    evaluate(avatar, preview=preview, show_progress=False)
    with av.open(str(preview)) as video:
        frames = [frame.to_ndarray(format="rgb24") for frame in video.decode(video=0)][args.start : args.start + args.frames]
    info, boxes = Avatar.open(avatar).info, Avatar.open(avatar).boxes()
    tail = np.arange(*json.loads((avatar / "train.json").read_text())["holdout_frames"])
    scale, half = frames[0].shape[0] / info.height, frames[0].shape[1] // 2
    rows = []
    for offset, drawn_on in ((0, np.arange(len(tail))), (half, tail)):  # the render is drawn on frames 0, 1, ... (evaluate's schedule)
        tiles = []
        for k, frame in enumerate(frames):
            x1, y1, x2, y2 = (boxes[drawn_on[args.start + k]] * scale).round().astype(int)
            tiles.append(cv2.resize(frame[max(y1, 0) : y2, offset + max(x1, 0) : offset + x2], (256, 256), interpolation=cv2.INTER_AREA))
        rows.append(np.concatenate(tiles, axis=1))
    args.output.parent.mkdir(parents=True, exist_ok=True)
    cv2.imwrite(str(args.output), cv2.cvtColor(np.concatenate(rows, axis=0), cv2.COLOR_RGB2BGR))
    print(args.output)


if __name__ == "__main__":
    main()
