import cv2
import numpy as np

from synctalk2d.face.blend import _model_area, paste_face, seam_energy
from synctalk2d.face.crop import crop_face, model_crop


def _generated_like(face):
    """What a generator gets wrong at low frequency: softer and brighter than the frame."""
    return np.clip(cv2.GaussianBlur(face, (0, 0), 1.5).astype(np.float32) * 0.85 + 25, 0, 255).astype(np.uint8)


def _hard_paste(frame, face, box):
    x1, y1, x2, y2 = _model_area(box)
    out = frame.copy()
    out[y1:y2, x1:x2] = cv2.resize(face, (x2 - x1, y2 - y1))
    return out


def test_feathered_paste_hides_the_box_edge(talk_b_avatar):
    for index in (0, 60, 120):
        frame, box = talk_b_avatar.frame(index), talk_b_avatar.boxes()[index]
        generated = _generated_like(model_crop(crop_face(frame, box)))
        source = seam_energy(frame, box)
        assert seam_energy(_hard_paste(frame, generated, box), box) > 1.3 * source
        assert abs(seam_energy(paste_face(frame.copy(), generated, box), box) - source) < 0.15 * source


def test_mouth_region_is_the_generated_face(talk_b_avatar):
    frame, box = talk_b_avatar.frame(10), talk_b_avatar.boxes()[10]
    generated = _generated_like(model_crop(crop_face(frame, box)))
    out = paste_face(frame.copy(), generated, box, color_match=False)
    x1, y1, x2, y2 = _model_area(box)
    side = x2 - x1
    centre = (slice(y1 + side // 3, y2 - side // 3), slice(x1 + side // 3, x2 - side // 3))
    expected = cv2.resize(generated, (side, side), interpolation=cv2.INTER_AREA)[side // 3 : side - side // 3, side // 3 : side - side // 3]
    assert np.abs(out[centre].astype(int) - expected.astype(int)).max() <= 1


def test_pasting_the_frames_own_face_changes_nothing(talk_b_avatar):
    frame, box = talk_b_avatar.frame(5), talk_b_avatar.boxes()[5]
    out = paste_face(frame.copy(), model_crop(crop_face(frame, box)), box)
    assert np.abs(out.astype(int) - frame.astype(int)).mean() < 0.5


def test_box_partly_outside_the_frame(talk_b_avatar):
    frame = talk_b_avatar.frame(0)
    h, w = frame.shape[:2]
    box = np.array([w - 150, h - 150, w + 150, h + 150])
    face = np.full((320, 320, 3), 200, np.uint8)
    out = paste_face(frame.copy(), face, box, color_match=False)
    assert out.shape == frame.shape
    assert np.abs(out[h - 10, w - 10].astype(int) - 200).max() <= 1
    assert np.array_equal(out[: h - 160], frame[: h - 160])
