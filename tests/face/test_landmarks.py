import cv2
import numpy as np
import pytest

from synctalk2d.errors import UserError
from synctalk2d.face.landmarks import LANDMARK_MODELS, FaceTracker, fill_missing, landmark_detector, landmark_model, smooth
from synctalk2d.face.mesh import MeshTracker


def _inner_lip_gap(landmarks):
    """Inner-lip aperture (points 62-66) in face widths (contour points 0-16)."""
    width = np.linalg.norm(landmarks[..., 16, :] - landmarks[..., 0, :], axis=-1)
    return np.linalg.norm(landmarks[..., 66, :] - landmarks[..., 62, :], axis=-1) / width


def test_mouth_is_inside_the_face(talk_b_avatar):
    lm = talk_b_avatar.landmarks()
    assert lm.shape == (talk_b_avatar.info.num_frames, 68, 2) and lm.dtype == np.float32
    mouth, contour = lm[:, 48:68], lm[:, 0:17]
    assert (mouth[..., 0] > contour[..., 0].min(axis=1, keepdims=True)).all()
    assert (mouth[..., 0] < contour[..., 0].max(axis=1, keepdims=True)).all()
    assert (mouth[..., 1] > lm[:, 30:31, 1]).all(), "mouth below the nose tip"
    assert (mouth[..., 1] < lm[:, 8:9, 1]).all(), "mouth above the chin"
    boxes = talk_b_avatar.boxes()
    assert (mouth[..., 0] > boxes[:, None, 0]).all() and (mouth[..., 0] < boxes[:, None, 2]).all()
    assert (mouth[..., 1] > boxes[:, None, 1]).all() and (mouth[..., 1] < boxes[:, None, 3]).all()


def test_landmarks_follow_the_mouth_opening(talk_b_avatar):
    """The saved (smoothed) lip gap follows a fresh per-frame detection, with no lag and
    without washing out the opening and closing of speech."""
    saved = _inner_lip_gap(talk_b_avatar.landmarks())
    tracker = landmark_detector(talk_b_avatar.info.landmark_model)
    fresh = []
    for i in range(len(saved)):
        fresh.append(_inner_lip_gap(tracker(cv2.cvtColor(talk_b_avatar.frame(i), cv2.COLOR_RGB2BGR))))
    fresh = np.array(fresh)
    assert fresh.max() - fresh.min() > 0.05, "the speaker opens and closes the mouth"
    corr = {lag: np.corrcoef(saved[lag:], fresh[: len(fresh) - lag])[0, 1] for lag in (0, 1, 2)}
    corr.update({-lag: np.corrcoef(saved[: len(saved) - lag], fresh[lag:])[0, 1] for lag in (1, 2)})
    assert corr[0] > 0.9
    assert max(corr, key=corr.get) == 0
    assert saved.max() - saved.min() > 0.8 * (fresh.max() - fresh.min())


def test_smoothing_removes_jitter_without_lag():
    rng = np.random.default_rng(0)
    t = np.arange(200, dtype=np.float32)
    motion = 100 + 40 * np.sin(t / 15)  # a head turning back and forth
    noisy = motion + rng.normal(0, 1.0, t.shape).astype(np.float32)
    smoothed = smooth(noisy[:, None])[:, 0]
    jitter = lambda x: np.abs(np.diff(x, 2)).mean()  # noqa: E731
    assert jitter(smoothed) < 0.5 * jitter(noisy)
    assert np.abs(smoothed - motion).mean() < np.abs(noisy - motion).mean()
    lags = {lag: np.abs(smoothed[10 + lag : 190 + lag] - motion[10:190]).mean() for lag in range(-3, 4)}
    assert min(lags, key=lags.get) == 0


def test_missing_frames_are_filled_from_neighbours():
    lm = np.zeros((5, 68, 2), np.float32)
    lm[0], lm[4] = 10, 50
    found = np.array([True, False, False, False, True])
    filled = fill_missing(lm, found)
    assert filled[:, 0, 0].tolist() == [10, 20, 30, 40, 50]
    found = np.array([False, False, False, False, True])
    assert fill_missing(lm, found)[:, 0, 0].tolist() == [50] * 5


def test_the_default_landmark_model_is_mediapipe_and_an_avatar_is_measured_with_its_own(talk_b_avatar):
    """Avatars are made with the Apache-2.0 model unless asked otherwise; an avatar's recorded
    model (also an old avatar's dlib description) gives back a detector of that model."""
    assert talk_b_avatar.info.landmark_model == LANDMARK_MODELS["mediapipe"]
    assert isinstance(landmark_detector(), MeshTracker)
    assert isinstance(landmark_detector(talk_b_avatar.info.landmark_model), MeshTracker)
    assert isinstance(landmark_detector("dlib"), FaceTracker)
    assert isinstance(landmark_detector(LANDMARK_MODELS["dlib"]), FaceTracker)
    with pytest.raises(UserError, match="unknown landmark model 'openpose'; choose one of: mediapipe, dlib"):
        landmark_detector("openpose")
    with pytest.raises(UserError, match="unknown landmark model"):
        landmark_model("openpose")
