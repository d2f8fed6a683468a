"""Crop geometry: where the face crop sits in a frame, and the masked model input.

The reference (SyncTalk_2D, 110-point PFLD landmarks) spans the box from point 1 to point
31 horizontally (left to right face contour at about eye level) and puts its top at
point 52 (the middle of the nose bridge); the box is square. With the iBUG 68-point scheme
the equivalent points are contour points 1 and 15 (0-based; just below the eye corners)
and the middle of the nose bridge, halfway between points 28 and 29.

The crop is resized to 328x328 and its centre 320x320 goes to the model. The model input
masks the current crop with a black rectangle (x 5..315, y 5..310 of the 320 crop, as in
the reference) so the network must draw the lower face from audio and the reference frame.
"""

from __future__ import annotations

import cv2
import numpy as np

from synctalk2d.avatar import CROP_SIZE
from synctalk2d.face.landmarks import smooth
from synctalk2d.face.lip_shape import crop_coordinates

MODEL_SIZE = 320
MODEL_OFFSET = (CROP_SIZE - MODEL_SIZE) // 2  # 4
MASK_RECT = (5, 5, 310, 305)  # x, y, w, h inside the 320 crop
# The compositor's mask (`training.compositor`): the lips and chin wherever they go in the
# pool's crops (nose tip near y 65, lips at y 85-190, chin at y 190-295), not the cheeks or
# the sides of the jaw, which stay the target's. Fixed, so its outline says nothing of the
# target's own mouth.
MOUTH_MASK_RECT = (56, 72, 208, 238)
ALIGN_POINTS = [1, 2, 3, 13, 14, 15, 27, 28, 29, 30, 31, 32, 33, 34, 35]  # move little when the jaw does: faces are aligned on them
LEFT_CONTOUR, RIGHT_CONTOUR = 1, 15
NOSE_BRIDGE = (28, 29)
_CENTRE_WINDOW = 9  # frames of box-centre smoothing (~0.36 s)
_SIZE_WINDOW = 25  # frames of box-size smoothing (~1 s): the size should barely move


def raw_boxes(landmarks: np.ndarray) -> np.ndarray:
    """(N, 4) float boxes x1, y1, x2, y2 from (N, 68, 2) landmarks, before smoothing."""
    x1 = landmarks[:, LEFT_CONTOUR, 0]
    x2 = landmarks[:, RIGHT_CONTOUR, 0]
    y1 = landmarks[:, NOSE_BRIDGE, 1].mean(axis=1)
    size = x2 - x1
    return np.stack([x1, y1, x2, y1 + size], axis=1)


def crop_boxes(landmarks: np.ndarray) -> np.ndarray:
    """(N, 4) int32 square crop boxes, smoothed over time.

    Centre and size are smoothed separately: the centre follows head motion (short
    window), the size is held steadier (long window), because a box that breathes makes
    the pasted mouth wobble. Both filters are zero-phase, so neither lags.
    """
    boxes = raw_boxes(landmarks)
    centre = smooth(np.stack([(boxes[:, 0] + boxes[:, 2]) / 2, (boxes[:, 1] + boxes[:, 3]) / 2], 1), _CENTRE_WINDOW)
    size = smooth(boxes[:, 2] - boxes[:, 0], _SIZE_WINDOW)
    half = np.maximum(size, 8.0) / 2
    x1 = np.round(centre[:, 0] - half)
    y1 = np.round(centre[:, 1] - half)
    side = np.round(2 * half)
    return np.stack([x1, y1, x1 + side, y1 + side], axis=1).astype(np.int32)


def crop_face(frame: np.ndarray, box: np.ndarray, size: int = CROP_SIZE) -> np.ndarray:
    """The ``size`` x ``size`` crop of ``box`` from ``frame``; parts outside the frame are
    filled by replicating the edge pixels."""
    x1, y1, x2, y2 = (int(v) for v in box)
    h, w = frame.shape[:2]
    pad = max(0, -x1, -y1, x2 - w, y2 - h)
    if pad:
        frame = cv2.copyMakeBorder(frame, pad, pad, pad, pad, cv2.BORDER_REPLICATE)
        x1, y1, x2, y2 = x1 + pad, y1 + pad, x2 + pad, y2 + pad
    region = frame[y1:y2, x1:x2]
    interpolation = cv2.INTER_AREA if region.shape[0] > size else cv2.INTER_LINEAR
    return cv2.resize(region, (size, size), interpolation=interpolation)


def model_crop(crop: np.ndarray) -> np.ndarray:
    """The centre 320x320 of a 328x328 crop (works on (..., 328, 328, C) arrays)."""
    o = MODEL_OFFSET
    return crop[..., o : o + MODEL_SIZE, o : o + MODEL_SIZE, :]


def model_inputs(crops: np.ndarray) -> np.ndarray:
    """(B, 320, 320, 6) uint8 U-Net inputs from (B, 328, 328, 3) crops: each frame's own crop
    as the reference (as the reference implementation does at inference) next to the same
    crop with the lower face masked."""
    faces = model_crop(crops)
    return np.concatenate([faces, mask_lower_face(faces)], axis=-1)


def mask_lower_face(image: np.ndarray, rect: tuple[int, int, int, int] = MASK_RECT) -> np.ndarray:
    """A copy of a 320x320 crop (or a batch of them) with the mask rectangle ``rect`` blacked out."""
    x, y, w, h = rect
    masked = np.array(image, copy=True)
    masked[..., y : y + h, x : x + w, :] = 0
    return masked


def model_points(landmarks: np.ndarray, boxes: np.ndarray) -> np.ndarray:
    """(N, 68, 2) frame-pixel landmarks -> the same points in 320x320 model-crop pixels."""
    return crop_coordinates(landmarks, boxes) - MODEL_OFFSET


def alignment(points: np.ndarray, onto: np.ndarray) -> np.ndarray | None:
    """The (2, 3) similarity (rotation, scale, shift) that lays one face's 68 ``points`` on
    another's (``onto``) at their `ALIGN_POINTS`: the nose and upper face contour, which the
    jaw does not move. None when the fit fails."""
    return cv2.estimateAffinePartial2D(points[ALIGN_POINTS], onto[ALIGN_POINTS], method=cv2.LMEDS)[0]


def align_face(image: np.ndarray, points: np.ndarray, onto: np.ndarray) -> np.ndarray:
    """A 320x320 model crop (``points``: its 68 model-crop landmarks) warped by `alignment`
    onto the face whose model-crop landmarks are ``onto``."""
    matrix = alignment(points, onto)
    if matrix is None:
        return np.ascontiguousarray(image)
    return cv2.warpAffine(np.ascontiguousarray(image), matrix, (MODEL_SIZE, MODEL_SIZE), flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_REPLICATE)
