"""U-Net inference speed per width, backend, precision and batch size, as JSON on stdout.

    python bench/infer_unet.py [--widths full mobile] [--batches 1 4 8] [--variants ...]
                               [--repeat N] [--avatar DIR]

Frames per second of `UNetRunner.__call__` (uint8 crops in, uint8 faces out: what the
frame generator calls), best of N calls after a warm-up, and for every reduced-precision
variant its PSNR against the eager fp32 model on real face crops (quality rule: >= 40 dB).
``eager-fp32`` is the starting point: the plain `UNet`, whole batch, unfolded BN, NCHW.

Weights are random unless ``--avatar`` names a trained avatar: then its U-Net and its own
crops are used, which is the PSNR that matters (random weights give low-contrast outputs).
Audio windows are random either way (the U-Net's speed does not depend on them).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import time
from pathlib import Path

import av
import cv2
import numpy as np
import torch

from synctalk2d.audio.windows import WINDOW_SHAPES
from synctalk2d.face.crop import mask_lower_face, model_crop
from synctalk2d.inference.runtime import UNetRunner, fidelity_psnr, tune_process
from synctalk2d.models.unet import UNet, UNetConfig

CORES = len(os.sched_getaffinity(0))
VIDEO = Path(__file__).resolve().parents[2] / "shared" / "fixtures" / "talk_b.mp4"
FACE_BOX = (240, 260, 580, 600)  # x1, y1, x2, y2 around the face in talk_b.mp4 (844x844)
VARIANTS = {
    "eager-fp32": None,
    "torch-fp32": dict(backend="torch", precision="fp32"),
    "torch-bf16": dict(backend="torch", precision="bf16"),
    "torch-bf16-eager": dict(backend="torch", precision="bf16", compile=False),
    "torch-bf16-intraop": dict(backend="torch", precision="bf16", frame_parallel=False),
    "onnx-fp32": dict(backend="onnx", precision="fp32"),
    "onnx-int8": dict(backend="onnx", precision="int8"),
    "onnx-int8-intraop": dict(backend="onnx", precision="int8", frame_parallel=False),
}


def face_crops(video: Path = VIDEO, count: int = 8, box: tuple[int, int, int, int] = FACE_BOX) -> np.ndarray:
    """(count, 320, 320, 6) uint8 model inputs (crop + masked crop) from frames spread over ``video``."""
    with av.open(str(video)) as container:
        frames = [f.to_ndarray(format="rgb24") for f in container.decode(video=0)]
    x1, y1, x2, y2 = box
    picks = np.linspace(0, len(frames) - 1, count).round().astype(int)
    faces = np.stack([cv2.resize(frames[i][y1:y2, x1:x2], (320, 320), interpolation=cv2.INTER_AREA) for i in picks])
    return np.concatenate([faces, mask_lower_face(faces)], axis=-1)


def avatar_crops(avatar_dir: Path, count: int = 8) -> np.ndarray:
    from synctalk2d.avatar import Avatar

    crops = Avatar.open(avatar_dir).crops()
    faces = model_crop(crops[np.linspace(0, len(crops) - 1, count).round().astype(int)])
    return np.concatenate([faces, mask_lower_face(faces)], axis=-1)


def to_float(images: np.ndarray) -> torch.Tensor:
    return torch.from_numpy(images).permute(0, 3, 1, 2).float() / 255


def timed(call, batch: int, repeat: int) -> tuple[float, float]:
    """(frames/s of the fastest of ``repeat`` calls after a warm-up, process CPU ms per frame
    of that call). CPU time counts every thread: on a shared machine, cores / CPU time per
    frame estimates the frame rate with the cores to ourselves (``idle_fps_estimate``;
    exact for one single-threaded frame per core, pessimistic for spinning intra-op threads)."""
    call()
    runs = []
    for _ in range(repeat):
        wall, cpu = time.perf_counter(), time.process_time()
        call()
        runs.append((time.perf_counter() - wall, time.process_time() - cpu))
    wall, cpu = min(runs)
    return batch / wall, 1000 * cpu / batch


def bench_width(unet: UNet, images: np.ndarray, audio: np.ndarray, variants: list[str], batches: list[int], repeat: int) -> list[dict]:
    """Time on the first half of ``images``; int8 calibrates on the second half, and PSNR
    is measured on the first (so not on the calibration crops)."""
    rows = []
    half = len(images) // 2
    test, calibration = (to_float(images[:half]), torch.from_numpy(audio[:half])), (to_float(images[half:]), torch.from_numpy(audio[half:]))
    for name in variants:
        options = VARIANTS[name]
        started = time.perf_counter()
        if options is None:
            runner, quality = None, None
        else:
            runner = UNetRunner.from_model(unet, **options, samples=calibration if options["precision"] == "int8" else None)
            quality = None if runner.precision == "fp32" else round(fidelity_psnr(unet, runner, *test), 1)
        setup = round(time.perf_counter() - started, 1)
        for batch in batches:
            x, a = images[:batch], audio[:batch]
            if runner is None:
                with torch.inference_mode():
                    fps, cpu_ms = timed(lambda x=x, a=a: unet(to_float(x), torch.from_numpy(a)), batch, repeat)
            else:
                fps, cpu_ms = timed(lambda x=x, a=a, runner=runner: runner(x, a), batch, repeat)
            row = dict(
                width=unet.config.width,
                variant=name,
                batch=batch,
                fps=round(fps, 2),
                cpu_ms_per_frame=round(cpu_ms, 1),
                idle_fps_estimate=round(CORES * 1000 / cpu_ms, 1),
                psnr_db=quality,
                setup_s=setup,
            )
            if runner is not None:
                row.update(backend=runner.backend, precision=runner.precision, workers=runner.workers)
            rows.append(row)
            print(json.dumps(row), flush=True, file=sys.stderr)
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--widths", nargs="+", default=["full", "mobile"])
    parser.add_argument("--batches", nargs="+", type=int, default=[1, 4, 8])
    parser.add_argument("--variants", nargs="+", default=list(VARIANTS), choices=list(VARIANTS))
    parser.add_argument("--repeat", type=int, default=5)
    parser.add_argument("--avatar", type=Path, help="use this avatar's trained U-Net and crops (its width only)")
    args = parser.parse_args()
    tune_process()  # as the CLI does: measure what users get
    count = 2 * max(8, max(args.batches))
    results = []
    if args.avatar:
        from synctalk2d.models.checkpoint import load_unet

        unets, images = [load_unet(args.avatar)], avatar_crops(args.avatar, count)
    else:
        torch.manual_seed(0)
        unets, images = [UNet(UNetConfig(width=w)).eval() for w in args.widths], face_crops(count=count)
    # the baselines first: runners tune glibc's malloc for the whole process
    plan = [[v for v in args.variants if VARIANTS[v] is None], [v for v in args.variants if VARIANTS[v] is not None]]
    for variants in plan:
        for unet in unets:
            shape = WINDOW_SHAPES[unet.config.feature_type]
            audio = np.random.default_rng(0).standard_normal((count, *shape)).astype(np.float32)
            results += bench_width(unet, images, audio, variants, args.batches, args.repeat)
    print(
        json.dumps(
            {
                "machine": platform.processor() or platform.machine(),
                "cores": CORES,
                "torch": torch.__version__,
                "weights": str(args.avatar) if args.avatar else "random",
                "results": results,
            },
            indent=1,
        )
    )


if __name__ == "__main__":
    main()
