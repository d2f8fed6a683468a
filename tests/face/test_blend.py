import av
import cv2
import numpy as np
import pytest

from conftest import fixture_path
from synctalk2d.face.blend import feather_mask, paste_area, paste_face, seam_energy
from synctalk2d.face.crop import MASK_RECT, crop_face, model_crop

# talk_b.mp4 frames with their crop boxes (x1, y1, x2, y2) and a rectangle around the lips,
# found by eye on saved PNGs (the boxes agree with what preprocess computes for them).
SCENES = {
    0: ((243, 396, 548, 701), (315, 480, 465, 560)),
    60: ((245, 377, 554, 686), (320, 460, 470, 540)),
}


@pytest.fixture(scope="module")
def frames():
    with av.open(str(fixture_path("talk_b.mp4"))) as c:
        decoded = [f.to_ndarray(format="rgb24") for _, f in zip(range(max(SCENES) + 1), c.decode(video=0))]
    return {i: decoded[i] for i in SCENES}


def own_face(frame, box):
    return np.ascontiguousarray(model_crop(crop_face(frame, np.array(box))))


def generated_like(face):
    """What a generator gets wrong at low frequency: softer, and brighter and redder."""
    out = cv2.GaussianBlur(face, (0, 0), 1.5).astype(np.float32) + (24, 14, 8)
    return np.clip(out, 0, 255).astype(np.uint8)


def hard_paste(frame, face, box):
    """The reference: resize to the pasted area and overwrite it."""
    x1, y1, x2, y2 = paste_area(box)
    out = frame.copy()
    out[y1:y2, x1:x2] = cv2.resize(face, (x2 - x1, y2 - y1))
    return out


@pytest.mark.parametrize("index", SCENES)
def test_feathered_paste_hides_the_box_edge(frames, index):
    """At the edge (band 3) and over the first third of the ramp (band 10) the pasted
    frame's gradient energy stays at the source's; a hard paste raises it a lot."""
    frame, (box, _) = frames[index], SCENES[index]
    generated = generated_like(own_face(frame, box))
    hard, soft = hard_paste(frame, generated, box), paste_face(frame.copy(), generated, box)
    for band, jump in ((3, 2.0), (10, 1.3)):
        source = seam_energy(frame, box, band)
        assert seam_energy(hard, box, band) > jump * source
        assert abs(seam_energy(soft, box, band) - source) < 0.1 * source


@pytest.mark.parametrize("index", SCENES)
def test_colour_match_removes_the_colour_drift_at_the_edge(frames, index):
    frame, (box, _) = frames[index], SCENES[index]
    generated = generated_like(own_face(frame, box))
    x1, y1, x2, y2 = paste_area(box)
    ramp = feather_mask(x2 - x1)[2].astype(bool)

    def drift(out):  # mean colour difference to the source over the ramp, per channel
        return np.abs((out[y1:y2, x1:x2][ramp].astype(float) - frame[y1:y2, x1:x2][ramp]).mean(axis=0)).max()

    assert drift(paste_face(frame.copy(), generated, box, color_match=False)) > 5
    assert drift(paste_face(frame.copy(), generated, box)) < 1


@pytest.mark.parametrize("color_match", [False, True])
def test_mouth_region_is_the_generated_face(frames, color_match):
    frame, (box, (mx1, my1, mx2, my2)) = frames[0], SCENES[0]
    generated = generated_like(own_face(frames[60], SCENES[60][0]))  # another mouth shape
    x1, y1, x2, y2 = paste_area(box)
    assert (feather_mask(x2 - x1)[0][my1 - y1 : my2 - y1, mx1 - x1 : mx2 - x1] == 1).all()
    out = paste_face(frame.copy(), generated, box, color_match=color_match)
    mouth = (slice(my1, my2), slice(mx1, mx2))
    resized = cv2.resize(generated, (x2 - x1, y2 - y1))[my1 - y1 : my2 - y1, mx1 - x1 : mx2 - x1]
    diff = out[mouth].astype(float) - resized  # the colour shift (0 without matching), per pixel
    assert np.abs(diff - diff.mean(axis=(0, 1))).mean() < 0.4
    assert np.abs(diff.mean(axis=(0, 1))).max() < (0.5 if not color_match else 255)
    assert np.abs(out[mouth].astype(int) - frame[mouth]).mean() > 3  # not the source mouth


def test_pasting_the_frames_own_face_changes_nothing(frames):
    for index, (box, _) in SCENES.items():
        frame = frames[index]
        out = paste_face(frame.copy(), own_face(frame, box), box)
        assert np.abs(out.astype(int) - frame).mean() < 0.05  # whole frame
        x1, y1, x2, y2 = paste_area(box)
        assert np.abs(out[y1:y2, x1:x2].astype(int) - frame[y1:y2, x1:x2]).mean() < 0.5


@pytest.mark.parametrize("corner", ["top-left", "bottom-right"])
def test_box_partly_outside_the_frame(frames, corner):
    frame = frames[0]
    h, w = frame.shape[:2]
    box = np.array([-150, -150, 150, 150]) if corner == "top-left" else np.array([w - 150, h - 150, w + 150, h + 150])
    face = np.full((320, 320, 3), 200, np.uint8)
    out = paste_face(frame.copy(), face, box, color_match=False)
    inside = (slice(0, 10), slice(0, 10)) if corner == "top-left" else (slice(h - 10, h), slice(w - 10, w))
    assert np.abs(out[inside].astype(int) - 200).max() <= 1
    untouched = (slice(160, h), slice(None)) if corner == "top-left" else (slice(0, h - 160), slice(None))
    assert np.array_equal(out[untouched], frame[untouched])
    paste_face(frame.copy(), face, box)  # colour matching over the visible part of the ramp
    assert np.isfinite(seam_energy(out, box))
    assert np.isnan(seam_energy(frame, np.array([w + 10, 0, w + 310, 300])))  # nothing visible


def test_masks_are_cached_and_read_only():
    alpha, inverse, ramp = feather_mask(300)
    assert feather_mask(300)[0] is alpha
    assert alpha[0].max() == 0 and alpha[150, 150] == 1 and np.allclose(alpha + inverse, 1)
    assert ramp[0].sum() == 0 and ramp[20, 150] == 1
    with pytest.raises(ValueError):
        alpha[0, 0] = 1


def test_the_unmasked_border_the_unet_saw_is_never_pasted(frames):
    """The U-Net's input shows it the model crop outside `MASK_RECT`; a line it draws
    where that border meets the masked part (seen on a 20-minute CPU avatar) stays out."""
    frame, (box, _) = frames[0], SCENES[0]
    clean = own_face(frame, box)
    lined = clean.copy()
    x, y, w, h = MASK_RECT
    lined[y + h - 2 : y + h + 2] = 255  # a white line along the mask's bottom edge
    lined[:, x + w - 2 : x + w + 2] = 255  # and its right edge
    out, expected = (paste_face(frame.copy(), face, box, color_match=False) for face in (lined, clean))
    assert np.abs(out.astype(int) - expected).max() <= 1
