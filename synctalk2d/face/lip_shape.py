"""Lip shape: the 20 mouth landmarks, posed out, the form the mouth model predicts.

A frame's lips (iBUG points 48-67) are mapped into its own 328x328 crop box and divided by
the crop side, so distance to the camera drops out; then the lips' centroid is moved to the
origin and the line between the corners turned level, so head position and roll drop out
too and what is left is what speech moves: opening, width, protrusion. Shapes of different
frames, clips and people are comparable. `aperture` is the inner-lip opening in the same
units (the crop spans the face contour, so it is in face widths).
"""

from __future__ import annotations

import numpy as np

from synctalk2d.avatar import CROP_SIZE

LIPS = slice(48, 68)
NUM_LIP_POINTS = 20
INNER_LIP_PAIRS = ((13, 19), (14, 18), (15, 17))  # 61-67, 62-66, 63-65 within LIPS
CORNERS = (0, 6)  # 48 and 54 within LIPS


def crop_coordinates(landmarks: np.ndarray, boxes: np.ndarray) -> np.ndarray:
    """(N, 68, 2) frame-pixel landmarks -> the same points in 328x328 crop pixels."""
    side = (boxes[:, 2] - boxes[:, 0]).astype(np.float32)
    return (landmarks - boxes[:, None, :2].astype(np.float32)) * (CROP_SIZE / side)[:, None, None]


def lip_shapes(landmarks: np.ndarray, boxes: np.ndarray) -> np.ndarray:
    """(N, 40) float32 lip shapes: points 48-67 in crop coordinates / crop side, centred on
    their centroid with the corners level; x then y per point."""
    points = crop_coordinates(landmarks, boxes)[:, LIPS] / CROP_SIZE
    return levelled(points - points.mean(axis=1, keepdims=True), *CORNERS).reshape(len(points), -1).astype(np.float32)


def levelled(points: np.ndarray, left: int, right: int) -> np.ndarray:
    """(N, P, 2) points turned about the origin so that point ``left`` -> ``right`` is level
    in each frame: head roll drops out."""
    across = points[:, right] - points[:, left]
    angle = -np.arctan2(across[:, 1], across[:, 0])
    cos, sin = np.cos(angle)[:, None], np.sin(angle)[:, None]
    return np.stack([cos * points[..., 0] - sin * points[..., 1], sin * points[..., 0] + cos * points[..., 1]], axis=-1)


def aperture(shapes: np.ndarray) -> np.ndarray:
    """Inner-lip opening (mean of three upper/lower gaps) of (..., 40) shapes."""
    points = shapes.reshape(*shapes.shape[:-1], NUM_LIP_POINTS, 2)
    gaps = [np.linalg.norm(points[..., a, :] - points[..., b, :], axis=-1) for a, b in INNER_LIP_PAIRS]
    return np.mean(gaps, axis=0)


def signed_aperture(shapes: np.ndarray) -> np.ndarray:
    """Inner-lip opening of (..., 40) shapes with its sign: negative where the lips of a
    scaled or blended shape cross. Linear in the shape, so it can be solved for."""
    points = shapes.reshape(*shapes.shape[:-1], NUM_LIP_POINTS, 2)
    return np.mean([points[..., b, 1] - points[..., a, 1] for a, b in INNER_LIP_PAIRS], axis=0)


def width(shapes: np.ndarray) -> np.ndarray:
    """Mouth width (corner to corner) of (..., 40) shapes."""
    points = shapes.reshape(*shapes.shape[:-1], NUM_LIP_POINTS, 2)
    return np.linalg.norm(points[..., CORNERS[0], :] - points[..., CORNERS[1], :], axis=-1)
