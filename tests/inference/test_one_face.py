"""On a moving head with hair at the cheek, the default drawing keeps one face: only the
lips come from the chosen reference; the cheeks, hair and jaw line stay the target's."""

import pytest

from conftest import fixture_path
from synctalk2d.evaluation.evaluate import evaluate
from synctalk2d.inference import mouth


@pytest.fixture(scope="module")
def hair_avatar(tmp_path_factory):
    """hard_faces/long_hair_turning_13s (no sound of its own) made with the bundled speech,
    trained by default with its last 4 s held out."""
    from synctalk2d.preprocess import preprocess
    from synctalk2d.training.train import build_config, train

    root = tmp_path_factory.mktemp("hair") / "long_hair"
    preprocess(fixture_path("hard_faces/long_hair_turning_13s.mp4"), root, audio=fixture_path("speech_44k.wav"), show_progress=False)
    train(build_config(root, holdout_seconds=4.0), show_progress=False)
    return root


@pytest.fixture(scope="module")
def reports(hair_avatar):
    out = {}
    for paste in ("region", "warp"):
        with pytest.MonkeyPatch.context() as patch:
            patch.setattr(mouth, "PASTE", paste)
            out[paste] = evaluate(hair_avatar, show_progress=False)["speech"]
    return out


def test_the_default_draws_only_the_lips(reports):
    assert mouth.PASTE == "warp"
    region, warp = reports["region"]["generated"], reports["warp"]["generated"]
    # the measure sees what the region paste carries (another moment's hair and chin) ...
    assert region["foreign_area"] > 0.15
    # ... and the warp keeps the frame's own cheeks, hair and jaw line
    assert warp["foreign_area"] < 0.5 * region["foreign_area"]
    assert warp["lower_face_p95_over_real"] < region["lower_face_p95_over_real"]


def test_the_real_tail_is_its_own_reference(reports):
    real = reports["warp"]["real"]
    assert real["lower_face_p95_over_real"] == pytest.approx(1.0)
    assert real["lower_face_jump_rate"] <= 0.02
