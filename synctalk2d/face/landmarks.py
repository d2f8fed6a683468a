"""68-point (iBUG) face landmarks for a video: detect, track, fill gaps, smooth.

dlib's HOG detector finds the face once in a downscaled frame; after that each frame is
searched only in a region around the previous face, scaled so the face is ~100 px wide,
which keeps a 1080p frame at a few milliseconds. When the face is lost the whole frame is
searched again. The 68-point shape predictor then runs on the full-resolution frame.

Smoothing is offline and zero-phase (Savitzky-Golay), so it removes detector jitter
without the lag a causal filter would add to real head motion.

Everything else in the package sees the detector only through `LandmarkDetector`, so
another model can be plugged in (`preprocess(..., detector=...)`): dlib's 68-point
predictor was trained on iBUG 300-W, whose terms exclude commercial use.
"""

from __future__ import annotations

import importlib.util
from pathlib import Path
from typing import Protocol

import cv2
import dlib
import numpy as np
import scipy.signal

from synctalk2d.errors import UserError

LANDMARK_MODEL = "dlib shape_predictor_68_face_landmarks (iBUG 300-W, face-recognition-models)"
_TRACK_FACE_PX = 100  # face width in the search region after scaling
_FULL_SEARCH_SIDES = (480, 960)  # longest side of the downscaled frame, tried in order
_SMOOTH_WINDOW = 5  # frames; Savitzky-Golay, polynomial order 2


def shape_predictor_path() -> Path:
    """Locate the 68-point model inside face-recognition-models without importing it
    (its ``__init__`` imports ``pkg_resources``, which recent setuptools no longer ship)."""
    spec = importlib.util.find_spec("face_recognition_models")
    if spec is None or not spec.submodule_search_locations:
        raise UserError("the package face-recognition-models is not installed (pip install face-recognition-models)")
    path = Path(next(iter(spec.submodule_search_locations))) / "models" / "shape_predictor_68_face_landmarks.dat"
    if not path.is_file():
        raise UserError(f"the 68-point landmark model is missing: {path}")
    return path


class LandmarkDetector(Protocol):
    """What the pipeline needs from a landmark model, frame after frame of one video."""

    name: str  # recorded in avatar.json

    def __call__(self, gray: np.ndarray) -> np.ndarray | None:
        """(68, 2) float32 iBUG-scheme points in ``gray``'s pixels, or None when no face is found."""
        ...


class FaceTracker:
    """Per-frame 68-point landmarks, searching near the previous face first."""

    name = LANDMARK_MODEL

    def __init__(self) -> None:
        self.detector = dlib.get_frontal_face_detector()
        self.predictor = dlib.shape_predictor(str(shape_predictor_path()))
        self.previous: tuple[float, float, float, float] | None = None  # x1, y1, x2, y2

    def __call__(self, gray: np.ndarray) -> np.ndarray | None:
        """Landmarks (68, 2) float32 in ``gray``'s pixels, or None when no face is found."""
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
