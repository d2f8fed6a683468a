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
from synctalk2d.inference.picker import CROSSING_LEAD, CROSSING_SHARES, Crossings, ReferencePicker

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
    spread = crossed[at - CROSSING_LEAD : at - CROSSING_LEAD + len(CROSSING_SHARES) + 1]
    assert spread.max() < 0.5 * cut[at], (spread, cut[at])
    assert spread.sum() > 0.7 * cut[at]  # ... and the mouth still gets there


def test_crossings_follow_the_recording_and_are_half_way_on_the_cut():
    """A file's crossing starts a frame before its cut and shows the new mouth half drawn
    on the frame it was chosen for; the old mouth goes on along the recording meanwhile."""
    rows = Crossings(np.arange(100)).plan(np.array([10, 11, 50, 51, 52, 53, 80, 81]))
    assert rows[0].tolist() == [10, 10, 1.0]
    assert rows[1:4].tolist() == [[50, 11, 0.25], [50, 12, 0.5], [51, 13, 0.75]]
    assert rows[4].tolist() == [52, 52, 1.0]
    assert rows[5:7].tolist() == [[80, 53, 0.25], [80, 54, 0.5]]
    assert CROSSING_SHARES[CROSSING_LEAD] == 0.5


def test_a_cut_nobody_saw_coming_starts_half_way():
    """A live stream with no look-ahead learns of a cut on its frame: the crossing then
    starts from its middle, as the new mouth is due now."""
    crossings = Crossings(np.arange(100))
    assert crossings(10) == (10, 10, 1.0)
    assert crossings(50) == (50, 11, 0.5) and crossings(51) == (51, 12, 0.75) and crossings(52) == (52, 52, 1.0)


def test_a_stream_keeps_to_a_cut_its_look_ahead_planned(lipsync):
    """Where the search over a stream's look-ahead cuts on the next frame, the crossing
    starts now, and the next frame gets that reference whatever the next search says."""
    mouth = lipsync.mouth
    shapes = lip_shapes(mouth.landmarks, mouth.avatar.boxes())[mouth.bank]
    order = np.argsort(aperture(shapes))
    closed, wide = shapes[order[0]], shapes[order[-1]]
    picker, crossings = mouth.picker(), Crossings(mouth.bank)
    poses = np.repeat(mouth.poses[:1], 6, axis=0)
    first, following = picker(np.stack([closed] * 6), poses)
    assert following is None  # nothing to cut to
    frame, following = picker(np.stack([closed] + [wide] * 5), poses)  # the mouth opens wide on the next frame
    assert following is not None and following - frame not in (0, 1)
    row = crossings(first)
    row = crossings(frame, following)
    assert row == (following, frame, CROSSING_SHARES[0])
    frame, _ = picker(np.stack([closed] * 6), poses)  # the speech changed its mind: the cut goes on
    assert frame == following and crossings(frame)[2] == CROSSING_SHARES[1]
