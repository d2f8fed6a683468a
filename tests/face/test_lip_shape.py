"""Lip shapes: head position and roll drop out, opening and width do not."""

from __future__ import annotations

import numpy as np

from synctalk2d.face.lip_shape import aperture, lip_shapes, width


def _face(open_by: float = 0.0) -> np.ndarray:
    """68 points of a frontal face whose inner lips are ``open_by`` pixels apart."""
    points = np.zeros((68, 2), np.float32)
    points[0], points[16] = (100, 150), (300, 150)
    angles = np.linspace(0, 2 * np.pi, 12, endpoint=False)
    points[48:60] = np.stack([200 - 40 * np.cos(angles), 250 + 15 * np.sin(angles)], 1)
    inner = np.linspace(0, 2 * np.pi, 8, endpoint=False)
    points[60:68] = np.stack([200 - 25 * np.cos(inner), 250 + (3 + open_by / 2) * np.sin(inner)], 1)
    return points


def _rotate(points: np.ndarray, degrees: float, shift=(0.0, 0.0)) -> np.ndarray:
    t = np.deg2rad(degrees)
    rotation = np.array([[np.cos(t), -np.sin(t)], [np.sin(t), np.cos(t)]], np.float32)
    return (points - 200) @ rotation.T + 200 + np.float32(shift)


def test_head_position_and_roll_drop_out():
    box = np.array([[50, 100, 378, 428]], np.int32)
    still = lip_shapes(_face()[None], box)
    moved = lip_shapes(_rotate(_face(), 12, shift=(7, -5))[None], box)
    np.testing.assert_allclose(still, moved, atol=1e-5)


def test_opening_and_width_are_in_crop_units():
    box = np.array([[50, 100, 378, 428]] * 2, np.int32)
    shapes = lip_shapes(np.stack([_face(0), _face(20)]), box)
    gaps = aperture(shapes)
    assert gaps[1] - gaps[0] > 0.9 * 20 / 328 * np.sin(np.pi / 4)  # the pairs sit off the midline
    np.testing.assert_allclose(width(shapes), [80 / 328] * 2, rtol=1e-4)  # corners 48 and 54 are 80 px apart
    # twice the crop box (the camera twice as far): the same shape
    far = lip_shapes(np.stack([_face(20)]) * 0.5, np.array([[25, 50, 189, 214]], np.int32))
    np.testing.assert_allclose(far, shapes[1:], atol=1e-4)
