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


# -- motion: does the mouth move like a person's, or jump and show seams? ---------------------

LIP_REGION_MARGIN = 0.4  # of the mouth's width, on every side of its 20 points
LIP_REGION_SIZE = (96, 64)  # the lip region resized to this (width, height) grey: head motion and face size cancel
SEAM_BAND = 3  # pixels either side of an outline where `seam_strength` looks


def lip_regions(crops: np.ndarray, landmarks: np.ndarray) -> np.ndarray:
    """(N, 64, 96) float32 grey lip region of each crop: the box around its own mouth points
    widened by `LIP_REGION_MARGIN`, resized to `LIP_REGION_SIZE`."""
    out = np.empty((len(crops), LIP_REGION_SIZE[1], LIP_REGION_SIZE[0]), np.float32)
    for k, (crop, points) in enumerate(zip(crops, landmarks)):
        h, w = crop.shape[:2]
        x1, y1, x2, y2 = mouth_box(points, margin=LIP_REGION_MARGIN)
        x1, y1, x2, y2 = max(x1, 0), max(y1, 0), min(max(x2, x1 + 2), w), min(max(y2, y1 + 2), h)
        grey = cv2.cvtColor(np.ascontiguousarray(crop[y1:y2, x1:x2]), cv2.COLOR_RGB2GRAY)
        out[k] = cv2.resize(grey, LIP_REGION_SIZE, interpolation=cv2.INTER_AREA)
    return out


def lip_changes(regions: np.ndarray) -> np.ndarray:
    """(N - 1,) mean absolute change (grey levels) of the lip region from each frame to the next."""
    return np.abs(np.diff(regions, axis=0)).mean(axis=(1, 2)) if len(regions) > 1 else np.zeros(0, np.float32)


def jumps(changes: np.ndarray, real_changes: np.ndarray) -> dict[str, float]:
    """How a video's frame-to-frame lip changes compare with a real recording's of the same
    person: the share of changes larger than the real video's 99th percentile (a real video
    has 1 % by construction; a renderer cutting between recorded mouths, many more), and
    the ratio of the two 95th percentiles."""
    if not len(changes) or not len(real_changes):
        return {"jump_rate": float("nan"), "change_p95_over_real": float("nan")}
    return {
        "jump_rate": float(np.mean(changes > np.percentile(real_changes, 99))),
        "change_p95_over_real": float(np.percentile(changes, 95) / max(np.percentile(real_changes, 95), 1e-6)),
    }


def seam_strength(crops: np.ndarray, outlines: list[np.ndarray]) -> float:
    """Mean grey-level gradient magnitude in a band of `SEAM_BAND` pixels either side of each
    crop's ``outline`` (a polygon in crop pixels): a pasted region whose edge shows adds
    gradient there that the same outline on a real frame does not have."""
    values = []
    for crop, outline in zip(crops, outlines):
        grey = cv2.cvtColor(np.ascontiguousarray(crop), cv2.COLOR_RGB2GRAY).astype(np.float32)
        magnitude = cv2.magnitude(cv2.Sobel(grey, cv2.CV_32F, 1, 0), cv2.Sobel(grey, cv2.CV_32F, 0, 1))
        band = np.zeros(grey.shape, np.uint8)
        cv2.polylines(band, [np.round(outline).astype(np.int32)], True, 1, 2 * SEAM_BAND + 1)
        if band.any():
            values.append(float(magnitude[band > 0].mean()))
    return float(np.mean(values)) if values else float("nan")
