"""68-point (iBUG) face landmarks for a video: detect, track, fill gaps, smooth.

Two landmark models sit behind `LandmarkDetector`; `landmark_detector` makes one by name:

- ``mediapipe`` (default): MediaPipe's face detector and face mesh, Apache-2.0, the mesh's
  points picked into the iBUG layout (`synctalk2d.face.mesh`);
- ``dlib``: dlib's 68-point predictor (`FaceTracker`, below), trained on iBUG 300-W, whose
  terms exclude commercial use.

dlib's HOG detector finds the face once in a downscaled frame; after that each frame is
searched only in a region around the previous face, scaled so the face is ~100 px wide,
which keeps a 1080p frame at a few milliseconds. When the face is lost the whole frame is
searched again. The 68-point shape predictor then runs on the full-resolution frame.

Smoothing is offline and zero-phase (Savitzky-Golay), so it removes detector jitter
without the lag a causal filter would add to real head motion.
"""

from __future__ import annotations

from pathlib import Path
from typing import Protocol

import cv2
import dlib
import numpy as np
import scipy.signal

from synctalk2d.errors import UserError
from synctalk2d.face.mesh import MESH_MODEL, MeshTracker
from synctalk2d.packaged import installed_file

LANDMARK_MODEL = "dlib shape_predictor_68_face_landmarks (iBUG 300-W, face-recognition-models)"
# the names `landmark_detector` takes -> the description an avatar records; the first is the default
LANDMARK_MODELS = {"mediapipe": MESH_MODEL, "dlib": LANDMARK_MODEL}
DEFAULT_LANDMARKS = next(iter(LANDMARK_MODELS))
_TRACK_FACE_PX = 100  # face width in the search region after scaling
_FULL_SEARCH_SIDES = (480, 960)  # longest side of the downscaled frame, tried in order
_SMOOTH_WINDOW = 5  # frames; Savitzky-Golay, polynomial order 2


def shape_predictor_path() -> Path:
    """dlib's 68-point model inside face-recognition-models."""
    return installed_file("face_recognition_models", "models/shape_predictor_68_face_landmarks.dat", "the 68-point landmark model", "face-recognition-models")


class LandmarkDetector(Protocol):
    """What the pipeline needs from a landmark model, frame after frame of one video."""

    name: str  # recorded in avatar.json

    def __call__(self, frame: np.ndarray) -> np.ndarray | None:
        """(68, 2) float32 iBUG-scheme points in ``frame``'s pixels (BGR, as decoded), or None
        when no face is found."""
        ...


def landmark_model(name: str) -> str:
    """The description an avatar records for the landmark model ``name`` (`LANDMARK_MODELS`)."""
    if name not in LANDMARK_MODELS:
        raise UserError(f"unknown landmark model {name!r}; choose one of: {', '.join(LANDMARK_MODELS)}")
    return LANDMARK_MODELS[name]


def landmark_detector(model: str = DEFAULT_LANDMARKS) -> LandmarkDetector:
    """A fresh detector (it tracks one video) of ``model``: a name in `LANDMARK_MODELS`, or
    the description an avatar recorded (``AvatarInfo.landmark_model``), so an avatar is
    measured with the model it was made with (avatars made before MediaPipe: dlib)."""
    if model == "dlib" or model.startswith("dlib"):
        return FaceTracker()
    if model == "mediapipe" or model.startswith("MediaPipe"):
        return MeshTracker()
    raise UserError(f"unknown landmark model {model!r}; choose one of: {', '.join(LANDMARK_MODELS)}")


class FaceTracker:
    """Per-frame 68-point landmarks, searching near the previous face first."""

    name = LANDMARK_MODEL

    def __init__(self) -> None:
        self.detector = dlib.get_frontal_face_detector()
        self.predictor = dlib.shape_predictor(str(shape_predictor_path()))
        self.previous: tuple[float, float, float, float] | None = None  # x1, y1, x2, y2

    def __call__(self, frame: np.ndarray) -> np.ndarray | None:
        """Landmarks (68, 2) float32 in ``frame``'s pixels (BGR or grey), or None when no face is found."""
        gray = cv2.cvtColor(frame, cv2.COLOR_BGR2GRAY) if frame.ndim == 3 else frame
        box = self._search_near_previous(gray) if self.previous else None
        if box is None:
            box = self._search_whole_frame(gray)
        if box is None:
            self.previous = None
            return None
        rect = dlib.rectangle(*(int(round(v)) for v in box))
        shape = self.predictor(gray, rect)
        points = np.array([(p.x, p.y) for p in shape.parts()], dtype=np.float32)
        self.previous = box
        return points

    def _detect(self, image: np.ndarray, scale: float, offset=(0.0, 0.0), upsample: int = 0):
        """Largest face in ``image`` mapped back to frame pixels, or None."""
        faces = self.detector(image, upsample)
        if len(faces) == 0:
            return None
        face = max(faces, key=lambda r: r.width() * r.height())
        ox, oy = offset
        return (
            ox + face.left() / scale,
            oy + face.top() / scale,
            ox + face.right() / scale,
            oy + face.bottom() / scale,
        )

    def _search_near_previous(self, gray: np.ndarray):
        x1, y1, x2, y2 = self.previous
        size = x2 - x1
        h, w = gray.shape
        rx1, ry1 = int(max(0, x1 - 0.6 * size)), int(max(0, y1 - 0.6 * size))
        rx2, ry2 = int(min(w, x2 + 0.6 * size)), int(min(h, y2 + 0.6 * size))
        if rx2 - rx1 < 8 or ry2 - ry1 < 8:
            return None
        scale = min(1.0, _TRACK_FACE_PX / max(size, 1.0))
        region = cv2.resize(gray[ry1:ry2, rx1:rx2], None, fx=scale, fy=scale, interpolation=cv2.INTER_AREA)
        return self._detect(region, scale, (rx1, ry1))

    def _search_whole_frame(self, gray: np.ndarray):
        for side in _FULL_SEARCH_SIDES:
            scale = min(1.0, side / max(gray.shape))
            small = cv2.resize(gray, None, fx=scale, fy=scale, interpolation=cv2.INTER_AREA)
            box = self._detect(small, scale)
            if box is not None:
                return box
        return self._detect(gray, 1.0, upsample=1) if max(gray.shape) <= 1280 else None


def fill_missing(landmarks: np.ndarray, found: np.ndarray) -> np.ndarray:
    """Fill frames without a face by linear interpolation between their found neighbours
    (and the nearest found frame at either end)."""
    if not found.any():
        raise UserError("no face was found in any frame")
    frames = np.arange(len(landmarks))
    flat = landmarks.reshape(len(landmarks), -1).copy()
    for column in range(flat.shape[1]):
        flat[~found, column] = np.interp(frames[~found], frames[found], flat[found, column])
    return flat.reshape(landmarks.shape)


def smooth(track: np.ndarray, window: int = _SMOOTH_WINDOW, order: int = 2) -> np.ndarray:
    """Zero-phase Savitzky-Golay smoothing along time (axis 0); short tracks pass through."""
    window = min(window, len(track) - (1 - len(track) % 2))
    if window <= order:
        return track.astype(np.float32)
    return scipy.signal.savgol_filter(track, window, order, axis=0, mode="interp").astype(np.float32)
