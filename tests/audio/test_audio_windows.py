from math import prod

import numpy as np
import pytest

from synctalk2d.audio.windows import (
    FEATURE_SHAPES,
    FRAMES_PER_WINDOW,
    WINDOW_SHAPES,
    feature_window,
    feature_windows,
    to_model_window,
    window_sources,
)


def test_window_is_8_before_the_frame_and_7_after_in_the_middle():
    assert window_sources(np.array([10]), 20).tolist() == [list(range(2, 18))]
    assert window_sources(np.array([12]), 20).tolist() == [list(range(4, 20))]  # ends exactly on the last frame


def test_start_repeats_the_first_frame():
    assert window_sources(np.array([0]), 20).tolist() == [[0] * 9 + list(range(1, 8))]
    assert window_sources(np.array([3]), 20).tolist() == [[0] * 6 + list(range(1, 11))]
    assert window_sources(np.array([8]), 20).tolist() == [list(range(0, 16))]


def test_a_window_running_past_the_end_is_the_last_frame_16_times():
    for index in range(13, 20):
        assert window_sources(np.array([index]), 20).tolist() == [[19] * 16]
    assert (window_sources(np.arange(5), 5) == 4).all()  # a clip under 8 frames stays still


def test_out_of_range_frames_are_refused():
    with pytest.raises(IndexError):
        window_sources(np.array([20]), 20)
    with pytest.raises(IndexError):
        window_sources(np.array([-1]), 20)


def test_batches_equal_single_windows():
    features = np.random.default_rng(0).normal(size=(30, 2, 3)).astype(np.float32)
    indices = np.array([0, 5, 8, 17, 22, 23, 29])
    batch = feature_windows(features, indices)
    assert batch.shape == (7, FRAMES_PER_WINDOW, 2, 3)
    for window, index in zip(batch, indices):
        np.testing.assert_array_equal(window, feature_window(features, index))
    np.testing.assert_array_equal(feature_window(features, 22), features[14:30])
    np.testing.assert_array_equal(feature_window(features, 23), np.repeat(features[-1:], 16, axis=0))


@pytest.mark.parametrize("feature_type", ["ave", "hubert", "wenet"])
def test_windows_reshape_to_the_model_shapes(feature_type):
    shape = FEATURE_SHAPES[feature_type]
    assert FRAMES_PER_WINDOW * prod(shape) == prod(WINDOW_SHAPES[feature_type])
    features = np.arange(24 * prod(shape), dtype=np.float32).reshape(24, *shape)
    single = to_model_window(feature_window(features, 8), feature_type)
    assert single.shape == WINDOW_SHAPES[feature_type]
    np.testing.assert_array_equal(single.ravel(), features[:16].ravel())  # frames laid out in order
    batch = to_model_window(feature_windows(features, np.array([8])), feature_type)
    assert batch.shape == (1, *WINDOW_SHAPES[feature_type])
    assert to_model_window(feature_windows(features, np.arange(24)), feature_type).shape == (24, *WINDOW_SHAPES[feature_type])
