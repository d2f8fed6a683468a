"""Paste a generated face crop back into its frame without a visible seam.

The reference resizes the 320x320 prediction to the box and overwrites those pixels, so
the box edge shows wherever the prediction's colour or sharpness differs from the frame
(it always does a little: the model redraws almost the whole crop). Here the prediction is
blended through an alpha mask that is 0 at the edge of the pasted area, ramps up with a
raised cosine and is 1 over the face (mouth and jaw included), and, optionally, its
colour is first shifted so that its mean over that ramp matches the frame's, so neither
sharpness nor low-frequency colour drift can draw a line.

Only the box region is touched; the prediction is resampled straight onto the frame pixels
it covers (one affine warp with the exact inverse of the crop's geometry, so pasting a
frame's own crop gives the frame back), and masks are cached per size.
"""

from __future__ import annotations

from functools import lru_cache

import cv2
import numpy as np

from synctalk2d.face.crop import CROP_SIZE, MASK_RECT, MODEL_OFFSET, MODEL_SIZE

FEATHER = 0.12  # width of the alpha ramp, as a share of the pasted area's side
# The U-Net sees the model crop's outer 5-10 px unmasked (`MASK_RECT`) and can draw a faint
# line where what it saw meets what it drew; alpha stays 0 up to 2 px inside the mask so
# that line is never pasted (a share of the side, like FEATHER).
_x, _y, _w, _h = MASK_RECT
MASK_BORDER = (max(_x, _y, MODEL_SIZE - _x - _w, MODEL_SIZE - _y - _h) + 2) / MODEL_SIZE


@lru_cache(maxsize=32)
def feather_mask(side: int, feather: float = FEATHER) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(alpha, 1 - alpha, ramp) for a ``side`` x ``side`` paste, cached and read-only.

    alpha (float32) is 0 over the outer ``MASK_BORDER * side`` pixels, then rises as a
    raised cosine over ``feather * side`` pixels and is exactly 1 inside; ramp (uint8)
    marks where it is strictly between, the ring in which colours are matched.
    """
    width = max(1, round(feather * side))
    edge = np.minimum(np.arange(side), np.arange(side)[::-1]).astype(np.float32) - round(MASK_BORDER * side)
    profile = 0.5 - 0.5 * np.cos(np.pi * np.clip(edge / width, 0, 1))
    alpha = np.minimum(profile[:, None], profile[None, :])
    ramp = ((alpha > 0) & (alpha < 1)).astype(np.uint8)
    masks = alpha, 1 - alpha, ramp
    for m in masks:
        m.flags.writeable = False
    return masks


@lru_cache(maxsize=8)
def rect_alpha(rect: tuple[int, int, int, int], feather: int) -> np.ndarray:
    """(320, 320, 1) float32 alpha, read-only: 1 well inside ``rect`` (x, y, w, h of the model
    crop), falling to 0 at its edge over ``feather`` pixels (a raised cosine), 0 outside.
    It blends a redrawn rectangle into the crop it was cut from without an edge."""
    x, y, w, h = rect
    axes = []
    for start, length in ((y, h), (x, w)):
        inside = np.minimum(np.arange(MODEL_SIZE) - start, start + length - 1 - np.arange(MODEL_SIZE)).astype(np.float32)
        axes.append(0.5 - 0.5 * np.cos(np.pi * np.clip(inside / max(feather, 1), 0, 1)))
    alpha = np.minimum(axes[0][:, None], axes[1][None, :])[..., None].astype(np.float32)
    alpha.flags.writeable = False
    return alpha


def paste_area(box: np.ndarray) -> tuple[int, int, int, int]:
    """Frame pixels (x1, y1, x2, y2) that the 320x320 model crop covers inside the
    328x328 crop ``box``: the box less its 4/328 margin, rounded to whole pixels."""
    x1, y1, x2, y2 = (int(v) for v in box)
    inset = round(MODEL_OFFSET * (x2 - x1) / CROP_SIZE)
    return x1 + inset, y1 + inset, x2 - inset, y2 - inset


def _warp_face(face: np.ndarray, box: np.ndarray, left: int, top: int, width: int, height: int) -> np.ndarray:
    """The (height, width) frame pixels from (left, top) on, sampled from the 320 ``face``.

    Inverts crop_face + model_crop exactly: frame pixel x shows model-crop pixel
    (x - box_x1 + 0.5) * 328 / box_side - 4.5 (cv2.resize maps pixel centres that way).
    Shrinking by more than 1.25x averages first (INTER_AREA) so the warp cannot alias.
    """
    x1, y1, x2, _ = (int(v) for v in box)
    scale = CROP_SIZE / (x2 - x1)  # crop pixels per frame pixel
    r = 1.0  # size of the face we warp from, relative to MODEL_SIZE
    if scale > 1.25:
        n = max(1, round(MODEL_SIZE / scale))
        face, r = cv2.resize(face, (n, n), interpolation=cv2.INTER_AREA), n / MODEL_SIZE
    a = scale * r
    matrix = np.float32([[a, 0, (left - x1 + 0.5) * a - MODEL_OFFSET * r - 0.5], [0, a, (top - y1 + 0.5) * a - MODEL_OFFSET * r - 0.5]])
    return cv2.warpAffine(face, matrix, (width, height), flags=cv2.INTER_LINEAR | cv2.WARP_INVERSE_MAP, borderMode=cv2.BORDER_REPLICATE)


def paste_face(frame: np.ndarray, face: np.ndarray, box: np.ndarray, *, feather: float = FEATHER, color_match: bool = True) -> np.ndarray:
    """Blend the (320, 320, 3) uint8 model output ``face`` for crop ``box`` into ``frame``.

    ``frame`` is modified in place (only the box region) and returned. Parts of the box
    outside the frame are skipped. ``color_match`` shifts the face's mean colour to the
    frame's over the alpha ramp before blending.
    """
    if face.shape != (MODEL_SIZE, MODEL_SIZE, 3) or face.dtype != np.uint8:
        raise ValueError(f"face must be a ({MODEL_SIZE}, {MODEL_SIZE}, 3) uint8 image, got {face.shape} {face.dtype}")
    x1, y1, x2, y2 = paste_area(box)
    h, w = frame.shape[:2]
    fx1, fy1, fx2, fy2 = max(x1, 0), max(y1, 0), min(x2, w), min(y2, h)
    if x2 - x1 <= 0 or fx1 >= fx2 or fy1 >= fy2:
        return frame
    patch = _warp_face(face, box, fx1, fy1, fx2 - fx1, fy2 - fy1)
    rows, cols = slice(fy1 - y1, fy2 - y1), slice(fx1 - x1, fx2 - x1)
    alpha, inverse, ramp = (np.ascontiguousarray(m[rows, cols]) for m in feather_mask(x2 - x1, feather))
    target = frame[fy1:fy2, fx1:fx2]
    if color_match and ramp.any():
        shift = np.subtract(cv2.mean(target, ramp), cv2.mean(patch, ramp))
        patch = cv2.add(patch, tuple(shift), dtype=cv2.CV_8U)
    frame[fy1:fy2, fx1:fx2] = cv2.blendLinear(patch, np.ascontiguousarray(target), alpha, inverse)
    return frame


def seam_energy(frame: np.ndarray, box: np.ndarray, band: int = 3) -> float:
    """Mean Sobel gradient magnitude (grey levels) within ``band`` pixels of the edge of
    the pasted area of ``box``, over the part inside the frame (nan if none is).

    A hard paste puts a step there and the value jumps; a seamless paste keeps it at the
    source frame's level. Only the box region is filtered, so this is cheap per frame.
    """
    x1, y1, x2, y2 = paste_area(box)
    h, w = frame.shape[:2]
    # the band, plus one pixel so the 3x3 Sobel sees real neighbours, clipped to the frame
    rx1, ry1 = max(x1 - band - 1, 0), max(y1 - band - 1, 0)
    rx2, ry2 = min(x2 + band + 1, w), min(y2 + band + 1, h)
    if rx1 >= rx2 or ry1 >= ry2:
        return float("nan")
    grey = cv2.cvtColor(np.ascontiguousarray(frame[ry1:ry2, rx1:rx2]), cv2.COLOR_RGB2GRAY)
    magnitude = cv2.magnitude(cv2.Sobel(grey, cv2.CV_32F, 1, 0), cv2.Sobel(grey, cv2.CV_32F, 0, 1))
    ys, xs = np.arange(ry1, ry2)[:, None], np.arange(rx1, rx2)[None, :]
    outer = (xs >= x1 - band) & (xs < x2 + band) & (ys >= y1 - band) & (ys < y2 + band)
    inner = (xs >= x1 + band) & (xs < x2 - band) & (ys >= y1 + band) & (ys < y2 - band)
    ring = outer & ~inner
    return float(magnitude[ring].mean()) if ring.any() else float("nan")
