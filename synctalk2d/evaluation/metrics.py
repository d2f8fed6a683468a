"""Metric functions on frames, crops and 68-point landmarks.

All functions are pure (arrays in, numbers out) so they can be checked on known inputs and
reused by `evaluate` for the generated video and for each baseline alike.
"""

from __future__ import annotations

import cv2
import numpy as np
from skimage.metrics import structural_similarity

MOUTH = slice(48, 68)
INNER_LIP_PAIRS = ((61, 67), (62, 66), (63, 65))


def face_width(landmarks: np.ndarray) -> np.ndarray:
    """Jaw width (contour point 0 to 16): the scale that makes mouth measures comparable
    across resolutions and distances to the camera."""
    return np.linalg.norm(landmarks[..., 16, :] - landmarks[..., 0, :], axis=-1)


def mouth_aperture(landmarks: np.ndarray) -> np.ndarray:
    """Inner-lip opening per frame (mean of three upper/lower lip pairs) in face widths."""
    gaps = [np.linalg.norm(landmarks[..., a, :] - landmarks[..., b, :], axis=-1) for a, b in INNER_LIP_PAIRS]
    return np.mean(gaps, axis=0) / face_width(landmarks)


def robust_std(values: np.ndarray) -> float:
    """1.4826 x the median absolute deviation: the std of a normal signal, unmoved by the
    few frames where the landmark detector slips (they dominate a plain std of a still mouth)."""
    return float(1.4826 * np.median(np.abs(values - np.median(values))))


def sharpness(image: np.ndarray) -> float:
    """Variance of the Laplacian of a uint8 RGB region (grey levels squared): blur lowers it."""
    grey = cv2.cvtColor(np.ascontiguousarray(image), cv2.COLOR_RGB2GRAY)
    return float(cv2.Laplacian(grey, cv2.CV_64F).var())


def mean_sharpness(crops: np.ndarray, regions: list[tuple[slice, slice]]) -> float:
    """Mean `sharpness` of each crop's region."""
    return float(np.mean([sharpness(c[r]) for c, r in zip(crops, regions)]))


def mean_region_change(a: np.ndarray, b: np.ndarray, regions: list[tuple[slice, slice]]) -> float:
    """Mean absolute difference (grey levels) between two crop sequences inside each frame's region."""
    return float(np.mean([np.abs(x[r].astype(np.float32) - y[r].astype(np.float32)).mean() for x, y, r in zip(a, b, regions)]))


def landmark_distance(generated: np.ndarray, real: np.ndarray) -> float:
    """Mouth landmark distance (LMD): mean distance between the 20 mouth points of generated
    and real frames, in percent of the real face width (resolution independent)."""
    distance = np.linalg.norm(generated[:, MOUTH] - real[:, MOUTH], axis=-1).mean(axis=1)
    return float(np.mean(distance / face_width(real)) * 100)


def psnr(a: np.ndarray, b: np.ndarray, peak: float = 255.0) -> float:
    """Peak signal-to-noise ratio in dB (infinite when identical): uint8 images by default,
    ``peak=1.0`` for float images in [0, 1]."""
    mse = np.mean((a.astype(np.float64) - b.astype(np.float64)) ** 2)
    return float("inf") if mse == 0 else float(10 * np.log10(peak**2 / mse))


def ssim(a: np.ndarray, b: np.ndarray) -> float:
    """Structural similarity of two uint8 RGB images (scikit-image, Gaussian weights)."""
    return float(structural_similarity(a, b, channel_axis=-1, gaussian_weights=True, sigma=1.5, data_range=255))


def mouth_box(landmarks: np.ndarray, margin: float = 0.25) -> tuple[int, int, int, int]:
    """Integer box x1, y1, x2, y2 around the mouth points of one frame, widened by
    ``margin`` of the mouth width on every side."""
    points = landmarks[MOUTH]
    (x1, y1), (x2, y2) = points.min(axis=0), points.max(axis=0)
    pad = margin * (x2 - x1)
    return int(x1 - pad), int(y1 - pad), int(np.ceil(x2 + pad)), int(np.ceil(y2 + pad))


def mean_frame_change(regions: np.ndarray) -> float:
    """Mean absolute frame-to-frame change of a sequence of same-size uint8 regions (grey
    levels): how much the mouth moves when it should be still."""
    if len(regions) < 2:
        return 0.0
    return float(np.abs(np.diff(regions.astype(np.float32), axis=0)).mean())


def sync_offset(similarity: np.ndarray, offsets: np.ndarray) -> tuple[int, float]:
    """Best audio offset and its confidence from a SyncNet sliding search.

    ``similarity[k]`` is the mean face/audio similarity with the audio shifted by
    ``offsets[k]`` frames. As in SyncNet's evaluation, confidence is how far the best
    offset stands above the median over all offsets.
    """
    best = int(np.argmax(similarity))
    return int(offsets[best]), float(similarity[best] - np.median(similarity))
