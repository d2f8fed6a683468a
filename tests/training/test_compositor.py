"""Stage ``compositor`` (``train --renderer unet``) on the real talk_b avatar: references
that match the target's lips without being its neighbours, a short run that learns, and
rendering with it."""

from __future__ import annotations

import json
import shutil

import numpy as np
import pytest

from synctalk2d.avatar import Avatar
from synctalk2d.errors import UserError
from synctalk2d.face.crop import MOUTH_MASK_RECT, model_crop
from synctalk2d.face.lip_shape import lip_shapes
from synctalk2d.inference.lipsync import LipSync
from synctalk2d.training.compositor import MIN_GAP, NEIGHBOURS, matched_references
from synctalk2d.training.train import build_config, train


def test_references_have_the_nearest_lips_and_are_never_the_same_moment(talk_b_avatar):
    shapes = lip_shapes(talk_b_avatar.landmarks(), talk_b_avatar.boxes())
    frames = np.arange(len(shapes))
    chosen = matched_references(shapes, shapes, frames, frames)
    assert chosen.shape == (len(frames), NEIGHBOURS)
    assert (np.abs(chosen - frames[:, None]) >= MIN_GAP).all()
    for target in (0, len(frames) // 2, len(frames) - 1):
        allowed = frames[np.abs(frames - target) >= MIN_GAP]
        distances = ((shapes[allowed] - shapes[target]) ** 2).sum(axis=1)
        farthest_chosen = ((shapes[chosen[target]] - shapes[target]) ** 2).sum(axis=1).max()
        assert np.sort(distances)[NEIGHBOURS - 1] == pytest.approx(farthest_chosen, rel=1e-4)


@pytest.fixture(scope="module")
def compositor_avatar(mouth_avatar, tmp_path_factory) -> Avatar:
    root = tmp_path_factory.mktemp("compositor") / "talk_b"
    shutil.copytree(mouth_avatar.root, root)
    train(build_config(root, renderer="unet", width="mobile", max_steps=4, batch_size=2, holdout_seconds=1.0), show_progress=False)
    return Avatar.open(root)


@pytest.mark.slow
def test_a_short_run_learns_and_is_recorded(compositor_avatar):
    record = json.loads((compositor_avatar.root / "train.json").read_text())
    assert record["renderer"] == "unet" and list(record["stages"]) == ["mouth", "compositor"]
    result = record["stages"]["compositor"]
    assert result["learned"] and result["best_val"]["loss"] < result["start_val"]["loss"]
    # a re-run without --renderer keeps the avatar's, so `infer` keeps using the compositor
    assert build_config(compositor_avatar.root, holdout_seconds=1.0).renderer == "unet"


@pytest.mark.slow
def test_rendering_redraws_only_the_mouth_and_keeps_the_jaw_sides(compositor_avatar):
    lipsync = LipSync(compositor_avatar.root, renderer="unet")
    assert lipsync.renderer == "unet"
    generator = lipsync.generator
    frames = np.array([3, 4, 5, 6])
    references = np.array([[3, 3, 1.0], [40, 40, 1.0], [60, 40, 0.5], [70, 70, 1.0]])
    faces = generator.draw(frames, references)
    assert faces[0] is None  # its own mouth: the frame is left as recorded
    np.testing.assert_array_equal(generator.composite(3, faces[0]), compositor_avatar.frame(3))
    x, y, w, h = MOUTH_MASK_RECT
    for frame, face in zip(frames[1:], faces[1:]):
        real = model_crop(compositor_avatar.crops()[frame]).astype(int)
        outside = np.ones(real.shape[:2], bool)
        outside[y : y + h, x : x + w] = False
        assert np.abs(face.astype(int) - real)[outside].max() <= 1  # cheeks, jaw sides, nose: the target's own
        assert np.abs(face.astype(int) - real)[y + 40 : y + h - 40, x + 40 : x + w - 40].mean() > 1  # the mouth is redrawn


@pytest.mark.slow
def test_the_paste_stays_available_and_a_missing_compositor_is_explained(compositor_avatar, mouth_avatar):
    assert LipSync(compositor_avatar.root, renderer="paste").renderer == "paste"
    with pytest.raises(UserError, match="--renderer unet"):
        LipSync(mouth_avatar.root, renderer="unet")
    with pytest.raises(UserError, match="unknown renderer 'gan'"):
        LipSync(mouth_avatar.root, renderer="gan")
