"""Paste a generated face crop back into its frame without a visible seam.

The reference overwrites the whole crop box, so the box edge shows wherever the generated
crop's colour or sharpness differs from the frame. Here the crop is blended through an
alpha mask that is 1 over the face and ramps smoothly (raised cosine) to 0 at the box
edge, and, optionally, the generated crop's colour is first shifted so that its mean in
that ramp matches the frame's: low-frequency drift then cannot show either.
"""

from __future__ import annotations

from functools import lru_cache

import cv2
import numpy as np

from synctalk2d.face.crop import CROP_SIZE, MODEL_OFFSET, MODEL_SIZE

FEATHER = 0.12  # width of the alpha ramp, as a share of the box side


@lru_cache(maxsize=32)
def feather_mask(size: int, feather: float = FEATHER) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Cached (alpha, 1 - alpha, ring) for a ``size`` square: alpha is 0 at the border,
    a raised-cosine ramp, 1 inside (float32); ring marks the ramp (uint8), where colours
    are matched."""
    ramp = max(1, int(round(feather * size)))
    edge = np.minimum(np.arange(size), np.arange(size)[::-1]).astype(np.float32)
    profile = 0.5 - 0.5 * np.cos(np.pi * np.clip(edge / ramp, 0, 1))
    alpha = np.minimum(profile[:, None], profile[None, :])
    ring = ((alpha > 0.02) & (alpha < 0.98)).astype(np.uint8)
    return alpha, 1 - alpha, ring


def _model_area(box: np.ndarray) -> tuple[int, int, int, int]:
    """Frame pixels covered by the 320x320 model crop inside the 328x328 crop ``box``."""
    x1, y1, x2, y2 = (int(v) for v in box)
    inset = int(round(MODEL_OFFSET * (x2 - x1) / CROP_SIZE))
    return x1 + inset, y1 + inset, x2 - inset, y2 - inset


def paste_face(frame: np.ndarray, face: np.ndarray, box: np.ndarray, feather: float = FEATHER, color_match: bool = True) -> np.ndarray:
    """Blend the (320, 320, 3) uint8 ``face`` (the model crop of ``box``) into ``frame``
    (modified in place and returned). Parts of the box outside the frame are skipped."""
    x1, y1, x2, y2 = _model_area(box)
    side = x2 - x1
    h, w = frame.shape[:2]
    fx1, fy1, fx2, fy2 = max(x1, 0), max(y1, 0), min(x2, w), min(y2, h)
    if side <= 0 or fx1 >= fx2 or fy1 >= fy2:
        return frame
    interpolation = cv2.INTER_AREA if side < MODEL_SIZE else cv2.INTER_LINEAR
    patch = cv2.resize(face, (side, side), interpolation=interpolation)
    alpha, inverse, ring = feather_mask(side, feather)
    rows, cols = slice(fy1 - y1, fy2 - y1), slice(fx1 - x1, fx2 - x1)
    patch, alpha, inverse, ring = patch[rows, cols], alpha[rows, cols], inverse[rows, cols], ring[rows, cols]
    target = frame[fy1:fy2, fx1:fx2]
    if color_match and ring.any():
        shift = np.subtract(cv2.mean(target, ring), cv2.mean(patch, ring))
        patch = cv2.add(patch, tuple(shift), dtype=cv2.CV_8U)
    frame[fy1:fy2, fx1:fx2] = cv2.blendLinear(np.ascontiguousarray(patch), np.ascontiguousarray(target), np.ascontiguousarray(alpha), np.ascontiguousarray(inverse))
    return frame


def seam_energy(frame: np.ndarray, box: np.ndarray, band: int = 3) -> float:
    """Mean gradient magnitude in a ``band``-pixel strip along the edge of the pasted
    area: a hard paste makes it jump; a seamless one keeps it at the source's level."""
    grey = cv2.cvtColor(frame, cv2.COLOR_RGB2GRAY).astype(np.float32)
    magnitude = cv2.magnitude(cv2.Sobel(grey, cv2.CV_32F, 1, 0), cv2.Sobel(grey, cv2.CV_32F, 0, 1))
    x1, y1, x2, y2 = _model_area(box)
    h, w = grey.shape
    x1, y1, x2, y2 = max(x1, band), max(y1, band), min(x2, w - band), min(y2, h - band)
    strips = [
        magnitude[y1 - band : y1 + band, x1:x2],
        magnitude[y2 - band : y2 + band, x1:x2],
        magnitude[y1:y2, x1 - band : x1 + band],
        magnitude[y1:y2, x2 - band : x2 + band],
    ]
    return float(np.mean(np.concatenate([s.ravel() for s in strips])))
