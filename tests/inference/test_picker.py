"""Choosing recorded mouths as a sequence: the picker keeps going along the recording where
it can, keeps the wanted shape, and a cut between unrelated mouths is spread over frames."""

from __future__ import annotations

import numpy as np
import pytest

from synctalk2d.evaluation.metrics import lip_changes, lip_regions
from synctalk2d.face.crop import crop_face
from synctalk2d.face.lip_shape import aperture, crop_coordinates, lip_shapes
from synctalk2d.inference.generator import MouthGenerator
from synctalk2d.inference.lipsync import LipSync
from synctalk2d.inference.picker import CROSSING_SHARES, Crossings, ReferencePicker

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def lipsync(mouth_avatar):
    return LipSync(mouth_avatar.root)


def test_when_costs_tie_the_picker_goes_on_along_the_recording(lipsync, mouth_avatar):
    """Two stretches of the bank with the very same lips and pose: every frame of the wanted
    sequence ties between them, and the path must not hop between the copies."""
    mouth = lipsync.mouth
    shapes = lip_shapes(mouth_avatar.landmarks(), mouth_avatar.boxes())[:120]
    poses = mouth.poses[:120].copy()
    shapes[60:], poses[60:] = shapes[:60], poses[:60]
    picker = ReferencePicker(mouth.model, mouth.mean_shape, mouth.rest_shape, np.arange(120), shapes, poses)
    path = picker.path(shapes[:60], poses[:60])
    assert (np.diff(path) == 1).all(), path
    assert np.array_equal(path % 60, np.arange(60))


def test_the_sequence_keeps_the_wanted_shape_with_fewer_cuts_than_frame_by_frame(lipsync):
    """Against picking each frame's nearest mouth alone (no cut cost): far fewer cuts, and
    the picked opening still follows the wanted one."""
    mouth = lipsync.mouth
    wanted = lip_shapes(mouth.landmarks, mouth.avatar.boxes())[mouth.bank][::-1][:150]  # the recording backwards: no free run to follow
    targets = mouth.bank[:150]
    sequence, frame_by_frame = mouth.picker(), mouth.picker()
    frame_by_frame.switch_cost = 0.0
    cuts = {}
    for name, picker in (("sequence", sequence), ("frame_by_frame", frame_by_frame)):
        path = picker.path(wanted, mouth.poses[targets])
        cuts[name] = int(np.sum(~np.isin(np.diff(path), (0, 1))))
        if name == "sequence":
            picked = aperture(lip_shapes(mouth.landmarks, mouth.avatar.boxes())[path])
            assert np.corrcoef(picked, aperture(wanted))[0, 1] > 0.7
    assert cuts["sequence"] < 0.5 * cuts["frame_by_frame"], cuts


def test_a_cut_between_unrelated_mouths_is_spread_over_frames(lipsync, mouth_avatar):
    """A closed mouth followed by a wide open one from elsewhere in the recording: with the
    crossing the lips change over several frames, each step smaller than the cut."""
    openings = aperture(lip_shapes(mouth_avatar.landmarks(), mouth_avatar.boxes()))[lipsync.mouth.bank]
    closed, wide = int(np.argmin(openings[:-10])), int(np.argmax(openings[:-10]))
    references = np.array([closed] * 3 + [wide + k for k in range(6)])
    generator = MouthGenerator(mouth_avatar, mouth_avatar.landmarks())
    target = 0
    boxes, points = mouth_avatar.boxes(), crop_coordinates(mouth_avatar.landmarks(), mouth_avatar.boxes())

    def changes(plan: np.ndarray) -> np.ndarray:
        crops = np.stack([crop_face(generator.composite(target, row), boxes[target]) for row in plan])
        return lip_changes(lip_regions(crops, np.repeat(points[target][None], len(crops), axis=0)))

    cut = changes(np.stack([references, references, np.ones(len(references))], axis=1))
    crossed = changes(Crossings(lipsync.mouth.bank).plan(references))
    at = 2  # the change from frame 2 to 3
    assert cut[at] > 2 * np.median(cut)  # the cut is a jump
    assert crossed[at : at + len(CROSSING_SHARES) + 1].max() < 0.75 * cut[at]
    assert crossed[at : at + len(CROSSING_SHARES) + 1].sum() > 0.7 * cut[at]  # ... and the mouth still gets there


def test_crossings_follow_the_recording_and_restart_on_a_new_cut():
    crossings = Crossings(np.arange(100))
    rows = crossings.plan(np.array([10, 11, 50, 51, 52, 53, 80]))
    assert rows[:2].tolist() == [[10, 10, 1.0], [11, 11, 1.0]]
    assert rows[2].tolist() == [50, 12, CROSSING_SHARES[0]]  # the old mouth goes on along the recording
    assert rows[3].tolist() == [51, 13, CROSSING_SHARES[1]]
    assert rows[4].tolist() == [52, 52, 1.0]
    assert rows[6].tolist() == [80, 54, CROSSING_SHARES[0]]
