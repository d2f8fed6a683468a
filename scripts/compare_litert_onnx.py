"""Which runtime runs the MediaPipe face models faster here: LiteRT (shipped) or onnxruntime.

    # once, in a throw-away venv (tensorflow is needed only to convert):
    pip install tf2onnx tensorflow-cpu
    python -m tf2onnx.convert --tflite synctalk2d/face/models/face_landmark.tflite --output DIR/face_landmark.onnx --opset 17
    python -m tf2onnx.convert --tflite synctalk2d/face/models/face_detection_short_range.tflite --output DIR/face_detection_short_range.onnx --opset 17
    # then, in the project's venv (onnxruntime is already a dependency):
    python scripts/compare_litert_onnx.py DIR

Prints JSON: milliseconds per call of each model on each runtime (1 thread, as the tracker
runs them; median of 300 calls after 20 warm-up calls) and the largest difference between
the two runtimes' outputs on the same real face crop.
"""

from __future__ import annotations

import json
import sys
import time
from pathlib import Path

import cv2
import numpy as np
import onnxruntime

from synctalk2d.face.mesh import DETECTOR_PATH, MESH_PATH, _TfliteModel

SAMPLE = Path(__file__).resolve().parents[1] / "synctalk2d" / "sample_data"


def timed(call, tensor: np.ndarray, repeats: int = 300) -> float:
    for _ in range(20):
        call(tensor)
    times = []
    for _ in range(repeats):
        started = time.perf_counter()
        call(tensor)
        times.append(time.perf_counter() - started)
    return 1000 * float(np.median(times))


def main() -> None:
    onnx_dir = Path(sys.argv[1])
    options = onnxruntime.SessionOptions()
    options.intra_op_num_threads = options.inter_op_num_threads = 1
    video = next(SAMPLE.glob("*.mp4"))
    capture = cv2.VideoCapture(str(video))
    ok, frame = capture.read()
    rgb = cv2.cvtColor(frame, cv2.COLOR_BGR2RGB).astype(np.float32)
    result = {}
    for path, names, size, scale in (
        (DETECTOR_PATH, ("regressors", "classificators"), 128, lambda x: x / 127.5 - 1),
        (MESH_PATH, ("conv2d_21", "conv2d_31"), 192, lambda x: x / 255),
    ):
        tensor = scale(cv2.resize(rgb, (size, size)))
        litert = _TfliteModel(path, names, threads=1)
        session = onnxruntime.InferenceSession(str(onnx_dir / f"{path.stem}.onnx"), options, providers=["CPUExecutionProvider"])
        input_name = session.get_inputs()[0].name
        onnx_call = lambda t, s=session, n=names, i=input_name: s.run(list(n), {i: t[None]})  # noqa: E731
        difference = max(float(np.abs(a - b[0]).max()) for a, b in zip(litert(tensor), onnx_call(tensor)))
        result[path.stem] = {"litert_ms": timed(litert, tensor), "onnxruntime_ms": timed(onnx_call, tensor), "max_output_difference": difference}
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
