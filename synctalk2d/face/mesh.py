"""MediaPipe's face detector and face mesh (Apache-2.0), mapped to the 68-point iBUG scheme.

The default landmark model. Two TensorFlow Lite models from MediaPipe (`face/models/`, with
their licence; `scripts/extract_mediapipe_models.py` reproduces them from MediaPipe's wheel)
run on LiteRT, Google's own runtime for them:

- BlazeFace short range (128x128, 896 SSD anchors, 6 keypoints per face) finds the face when
  there is no track yet: on the whole frame, then on overlapping tiles, so a small face in a
  large frame is found too.
- The face mesh (192x192 crop, 468 points) runs on a square region around the face, turned
  so the eyes are level; the region comes from the detection the first time and from the
  previous frame's mesh after that, as in MediaPipe's own face-mesh graph. The mesh's face
  score tells when the track is lost.

Pre- and post-processing follow MediaPipe's published graphs (`face_detection_short_range`,
`face_landmark_front_cpu`): anchors, box decoding, weighted non-maximum suppression, the
region 1.5x the face's longest side, rotation from the eyes, and projection of the points
back into the frame. The mesh's vertices are then picked into the 68-point iBUG layout the
rest of the pipeline uses (`IBUG_FROM_MESH`, documented point by point below).

MediaPipe's attention variant (`face_landmark_with_attention.tflite`, refined lips) needs
three MediaPipe-only TFLite operators (Landmarks2TransformMatrix, TransformTensorBilinear,
TransformLandmarks) that neither LiteRT nor onnxruntime provides, so the plain mesh is used.
"""

from __future__ import annotations

import os
import sys
from contextlib import contextmanager
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

import cv2
import numpy as np

from synctalk2d.errors import UserError

MODELS_DIR = Path(__file__).resolve().parent / "models"
DETECTOR_PATH = MODELS_DIR / "face_detection_short_range.tflite"
MESH_PATH = MODELS_DIR / "face_landmark.tflite"
MESH_MODEL = "MediaPipe face mesh 468 (face_landmark.tflite) + BlazeFace short range, Apache-2.0; iBUG map 1"

# iBUG 68-point index -> face-mesh vertex. "Left"/"right" are the image's. Jaw 0-16: the mesh's
# face oval from the image-left ear down to the chin (8 = 152) and up to the right ear, every
# other oval vertex near the chin so 9 points span each side as iBUG's do. Brows 17-26: the
# upper brow edge, outer to inner on the left, inner to outer on the right. Nose 27-30: bridge
# between the eyes (168) down to the tip (4); 31-35: the base of the nose, left to right with
# 33 under the tip (2). Eyes 36-47: outer corner, two upper-lid points, inner corner, two
# lower-lid points (right eye: inner corner first), as iBUG orders them. Lips 48-59: outer
# contour from the left corner (61) over the upper lip (0 = top centre) to the right corner
# (291) and back along the lower lip (17 = bottom centre); 60-67: inner contour from the left
# inner corner (78) over the upper lip (13) to the right (308) and back (14). Where iBUG has one
# point between two anchors and the mesh several, the one nearest the middle of the arc is
# taken, and mirror vertices on both sides, so a symmetric mouth stays symmetric. (The vertices
# nearest to where dlib puts those points, 39/269, 405/181, 82/312, 317/87, lie closer to dlib's
# points but gave the mouth prior a lower held-out r: docs/quality-history.md.)
IBUG_FROM_MESH = np.array(
    [127, 234, 93, 132, 58, 136, 150, 176, 152, 400, 379, 365, 288, 361, 323, 454, 356]  # jaw
    + [70, 63, 105, 66, 107, 336, 296, 334, 293, 300]  # brows
    + [168, 197, 5, 4, 75, 97, 2, 326, 305]  # nose
    + [33, 160, 158, 133, 153, 144, 362, 385, 387, 263, 373, 380]  # eyes
    + [61, 40, 37, 0, 267, 270, 291, 321, 314, 17, 84, 91]  # outer lips
    + [78, 81, 13, 311, 308, 402, 14, 178]  # inner lips
)
# The mesh's whole lip contours (MediaPipe's FACEMESH_LIPS), corner to corner: denser than iBUG's 20.
OUTER_LIP = np.array([61, 185, 40, 39, 37, 0, 267, 269, 270, 409, 291, 375, 321, 405, 314, 17, 84, 181, 91, 146])
INNER_LIP = np.array([78, 191, 80, 81, 82, 13, 312, 311, 310, 415, 308, 324, 318, 402, 317, 14, 87, 178, 88, 95])

_DETECTOR_SIZE = 128
_MESH_SIZE = 192
_MIN_DETECTION_SCORE = 0.5
_NMS_IOU = 0.3
_MIN_FACE_SCORE = 0.5  # the mesh's face-presence probability below which the track is lost
_ROI_SCALE = 1.5
_EYES_DETECTION = (0, 1)  # BlazeFace keypoints: right eye, left eye (the subject's)
_EYES_MESH = (33, 263)  # outer eye corners


def _interpreter(path: Path, threads: int):
    """A LiteRT interpreter for ``path``, tensors allocated. The runtime's native code prints
    an INFO line on stderr when it sets up its CPU delegate; a user's terminal (and our
    one-line error messages) should not carry it, so stderr is closed meanwhile."""
    from ai_edge_litert.interpreter import Interpreter

    if not path.is_file():
        raise UserError(f"the landmark model {path} is missing; reinstall synctalk2d (or run scripts/extract_mediapipe_models.py)")
    with _native_stderr_silenced():
        interpreter = Interpreter(model_path=str(path), num_threads=threads)
        interpreter.allocate_tensors()
    return interpreter


@contextmanager
def _native_stderr_silenced():
    """File descriptor 2 pointed at /dev/null for the duration (what native libraries write to)."""
    sys.stderr.flush()
    saved = os.dup(2)
    try:
        with open(os.devnull, "w") as null:
            os.dup2(null.fileno(), 2)
        yield
    finally:
        os.dup2(saved, 2)
        os.close(saved)


class _TfliteModel:
    """One input, outputs in the order of ``output_names``."""

    def __init__(self, path: Path, output_names: tuple[str, ...], threads: int) -> None:
        self.interpreter = _interpreter(path, threads)
        self.input = self.interpreter.get_input_details()[0]["index"]
        by_name = {d["name"]: d["index"] for d in self.interpreter.get_output_details()}
        self.outputs = [by_name[n] for n in output_names]

    def __call__(self, tensor: np.ndarray) -> list[np.ndarray]:
        self.interpreter.set_tensor(self.input, tensor[None].astype(np.float32))
        self.interpreter.invoke()
        return [self.interpreter.get_tensor(i)[0] for i in self.outputs]


@lru_cache(maxsize=1)
def ssd_anchors() -> np.ndarray:
    """(896, 2) anchor centres in [0, 1] of BlazeFace short range: SSD anchors for strides
    8, 16, 16, 16 on a 128 input, two per cell of the 16x16 grid and six per cell of the 8x8
    (the three stride-16 layers share a grid), fixed size 1."""
    centres = []
    for grid, per_cell in ((16, 2), (8, 6)):
        y, x = np.mgrid[0:grid, 0:grid]
        cells = np.stack([(x.ravel() + 0.5) / grid, (y.ravel() + 0.5) / grid], axis=1)
        centres.append(np.repeat(cells, per_cell, axis=0))
    return np.concatenate(centres).astype(np.float32)


@dataclass
class Detection:
    score: float
    box: np.ndarray  # x1, y1, x2, y2 in frame pixels
    keypoints: np.ndarray  # (6, 2) in frame pixels: eyes, nose tip, mouth, ears


@dataclass
class Region:
    """A square region of the frame, turned by ``angle`` (radians, clockwise on screen)."""

    centre: np.ndarray  # (2,) frame pixels
    side: float
    angle: float

    def to_frame(self, size: int) -> np.ndarray:
        """The 2x3 affine matrix from a ``size`` x ``size`` crop of this region to the frame."""
        cos, sin = np.cos(self.angle), np.sin(self.angle)
        scale = self.side / size
        rotation = np.array([[cos, -sin], [sin, cos]]) * scale
        offset = self.centre - rotation @ np.array([size / 2, size / 2])
        return np.hstack([rotation, offset[:, None]]).astype(np.float64)

    @classmethod
    def around(cls, points: np.ndarray, eyes: tuple[np.ndarray, np.ndarray]) -> Region:
        """MediaPipe's region for the mesh: centred on the points' bounding box, 1.5x its
        longer side, turned so the eye line is level."""
        low, high = points.min(axis=0), points.max(axis=0)
        (x0, y0), (x1, y1) = eyes
        return cls((low + high) / 2, float(max(high - low)) * _ROI_SCALE, float(np.arctan2(y1 - y0, x1 - x0)))


def _weighted_nms(scores: np.ndarray, boxes: np.ndarray, keypoints: np.ndarray) -> list[Detection]:
    """MediaPipe's weighted non-maximum suppression: each cluster of boxes overlapping the
    best remaining one by IoU > 0.3 becomes one detection, its coordinates the score-weighted
    mean of the cluster's."""
    order = np.argsort(-scores)
    detections = []
    while len(order):
        best = boxes[order[0]]
        others = boxes[order]
        inter = np.prod(np.clip(np.minimum(best[2:], others[:, 2:]) - np.maximum(best[:2], others[:, :2]), 0, None), axis=1)
        union = np.prod(best[2:] - best[:2]) + np.prod(others[:, 2:] - others[:, :2], axis=1) - inter
        cluster = order[inter / np.maximum(union, 1e-9) > _NMS_IOU]
        weights = scores[cluster] / scores[cluster].sum()
        detections.append(Detection(float(scores[order[0]]), np.tensordot(weights, boxes[cluster], 1), np.tensordot(weights, keypoints[cluster], 1)))
        order = order[~np.isin(order, cluster)]
    return detections


class FaceDetector:
    """BlazeFace short range on a square view of the frame (letterboxed), faces in frame pixels."""

    def __init__(self, threads: int = 1) -> None:
        self.model = _TfliteModel(DETECTOR_PATH, ("regressors", "classificators"), threads)

    def __call__(self, rgb: np.ndarray, view: tuple[float, float, float] | None = None) -> list[Detection]:
        """Faces in the square ``view`` (x, y, side in frame pixels; default: the whole frame,
        letterboxed), best first."""
        h, w = rgb.shape[:2]
        x, y, side = view or ((w - max(h, w)) / 2, (h - max(h, w)) / 2, float(max(h, w)))
        scale = _DETECTOR_SIZE / side
        to_input = np.array([[scale, 0, -x * scale], [0, scale, -y * scale]])
        tensor = cv2.warpAffine(rgb, to_input, (_DETECTOR_SIZE, _DETECTOR_SIZE), flags=cv2.INTER_AREA if scale < 1 else cv2.INTER_LINEAR)
        regressors, logits = self.model(tensor.astype(np.float32) / 127.5 - 1.0)
        scores = 1.0 / (1.0 + np.exp(-np.clip(logits[:, 0].astype(np.float64), -100, 100)))
        keep = scores >= _MIN_DETECTION_SCORE
        if not keep.any():
            return []
        raw, anchors = regressors[keep] / _DETECTOR_SIZE, ssd_anchors()[keep]
        centre, size = raw[:, :2] + anchors, raw[:, 2:4]
        boxes = np.concatenate([centre - size / 2, centre + size / 2], axis=1)
        keypoints = raw[:, 4:16].reshape(-1, 6, 2) + anchors[:, None]
        # input [0, 1] -> frame pixels
        boxes = boxes * side + np.array([x, y, x, y])
        keypoints = keypoints * side + np.array([x, y])
        return _weighted_nms(scores[keep], boxes, keypoints)

    def find(self, rgb: np.ndarray) -> Detection | None:
        """The largest face: in the whole frame, else in overlapping square tiles of the
        frame's shorter side and of half of it (a small face in a large frame)."""
        for view in [None, *_tiles(rgb.shape[:2])]:
            faces = self(rgb, view)
            if faces:
                return max(faces, key=lambda d: np.prod(d.box[2:] - d.box[:2]))
        return None


def _tiles(shape: tuple[int, int]) -> list[tuple[float, float, float]]:
    h, w = shape
    views = []
    for side in (min(h, w), min(h, w) / 2):
        if side < 64:
            continue
        xs = np.linspace(0, w - side, max(1, int(np.ceil(2 * w / side)) - 1))
        ys = np.linspace(0, h - side, max(1, int(np.ceil(2 * h / side)) - 1))
        views += [(float(x), float(y), float(side)) for y in ys for x in xs]
    return views


class MeshTracker:
    """Per-frame 68-point landmarks from MediaPipe's face mesh, tracking the face from frame
    to frame (`LandmarkDetector`). ``mesh`` holds the last frame's 468 points (x, y, z)."""

    name = MESH_MODEL

    def __init__(self, threads: int = 1) -> None:
        self.detector = FaceDetector(threads)
        self.model = _TfliteModel(MESH_PATH, ("conv2d_21", "conv2d_31"), threads)
        self.region: Region | None = None
        self.mesh: np.ndarray | None = None

    def __call__(self, frame: np.ndarray) -> np.ndarray | None:
        """(68, 2) float32 iBUG points in ``frame``'s pixels (a BGR image), or None."""
        rgb = cv2.cvtColor(frame, cv2.COLOR_BGR2RGB) if frame.ndim == 3 else cv2.cvtColor(frame, cv2.COLOR_GRAY2RGB)
        mesh = self._mesh(rgb, self.region) if self.region else None
        if mesh is None:
            face = self.detector.find(rgb)
            mesh = self._mesh(rgb, Region.around(face.box.reshape(2, 2), face.keypoints[list(_EYES_DETECTION)])) if face else None
        self.mesh = mesh
        if mesh is None:
            self.region = None
            return None
        self.region = Region.around(mesh[:, :2], mesh[list(_EYES_MESH), :2])
        return mesh[IBUG_FROM_MESH, :2].astype(np.float32)

    def _mesh(self, rgb: np.ndarray, region: Region) -> np.ndarray | None:
        """(468, 3) mesh points in frame pixels, or None when the model sees no face there."""
        to_frame = region.to_frame(_MESH_SIZE)
        crop = cv2.warpAffine(rgb, to_frame, (_MESH_SIZE, _MESH_SIZE), flags=cv2.WARP_INVERSE_MAP | cv2.INTER_LINEAR, borderMode=cv2.BORDER_REPLICATE)
        points, face_logit = self.model(crop.astype(np.float32) / 255.0)
        if 1.0 / (1.0 + np.exp(-float(face_logit.ravel()[0]))) < _MIN_FACE_SCORE:
            return None
        points = points.reshape(-1, 3)
        xy = points[:, :2] @ to_frame[:, :2].T + to_frame[:, 2]
        return np.hstack([xy, points[:, 2:] * (region.side / _MESH_SIZE)]).astype(np.float32)
