import numpy as np

from synctalk2d.face.crop import (
    MODEL_SIZE,
    crop_boxes,
    crop_face,
    mask_lower_face,
    model_crop,
    raw_boxes,
)


def test_box_geometry(talk_b_avatar):
    """Square, contour point 1 to 15 wide, top at the middle of the nose bridge."""
    lm, boxes = talk_b_avatar.landmarks(), talk_b_avatar.boxes()
    side = boxes[:, 2] - boxes[:, 0]
    assert np.array_equal(side, boxes[:, 3] - boxes[:, 1])
    raw = raw_boxes(lm)
    assert np.abs(side - (raw[:, 2] - raw[:, 0])).max() < 0.05 * side.mean()
    assert np.abs(boxes[:, 0] - lm[:, 1, 0]).max() < 0.05 * side.mean()
    nose_mid = (lm[:, 28, 1] + lm[:, 29, 1]) / 2
    assert np.abs(boxes[:, 1] - nose_mid).max() < 0.05 * side.mean()
    assert (lm[:, 8, 1] < boxes[:, 3]).all(), "chin inside the crop"


def test_box_is_steady_but_follows_motion():
    t = np.arange(100, dtype=np.float32)
    lm = np.zeros((100, 68, 2), np.float32)
    shift = 3.0 * t  # the head moves right 3 px a frame
    rng = np.random.default_rng(1)
    lm[:, 1, 0], lm[:, 15, 0] = 100 + shift, 300 + shift
    lm[:, 28, 1] = lm[:, 29, 1] = 200
    lm += rng.normal(0, 1.5, lm.shape).astype(np.float32)
    boxes = crop_boxes(lm).astype(np.float32)
    raw = raw_boxes(lm)
    assert np.abs(np.diff(boxes[:, 2] - boxes[:, 0])).mean() < 0.5 * np.abs(np.diff(raw[:, 2] - raw[:, 0])).mean()
    centre = (boxes[:, 0] + boxes[:, 2]) / 2
    assert np.abs(centre - (200 + shift)).mean() < 1.5


def test_crop_sizes_and_mask(talk_b_avatar):
    crops = talk_b_avatar.crops()
    assert crops.shape == (talk_b_avatar.info.num_frames, 328, 328, 3) and crops.dtype == np.uint8
    assert isinstance(crops, np.memmap)
    inner = model_crop(crops[0])
    assert inner.shape == (MODEL_SIZE, MODEL_SIZE, 3)
    masked = mask_lower_face(inner)
    assert masked[5:310, 5:315].max() == 0
    assert np.array_equal(masked[:5], inner[:5]) and np.array_equal(masked[310:], inner[310:])
    assert np.array_equal(masked[:, 315:], inner[:, 315:]) and np.array_equal(masked[:, :5], inner[:, :5])
    assert model_crop(crops[:4]).shape == (4, 320, 320, 3)


def test_crop_matches_frame_and_handles_edges(talk_b_avatar):
    frame, box = talk_b_avatar.frame(10), talk_b_avatar.boxes()[10]
    crop = crop_face(frame, box)
    assert np.abs(crop.astype(int) - talk_b_avatar.crops()[10].astype(int)).mean() < 2
    h, w = frame.shape[:2]
    outside = np.array([w - 100, h - 100, w + 100, h + 100])
    edge = crop_face(frame, outside)
    assert edge.shape == (328, 328, 3)
    assert np.array_equal(edge[-1, -1], frame[-1, -1])
