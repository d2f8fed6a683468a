import numpy as np
import pytest
import soundfile as sf
import torch

from conftest import fixture_path
from synctalk2d.audio.ave import ave_features
from synctalk2d.audio.features import FEATURE_TYPES, extract_features
from synctalk2d.audio.mel import melspectrogram
from synctalk2d.audio.windows import WINDOW_SHAPES, feature_windows, to_model_window
from synctalk2d.errors import UserError


def tiny_encoder():
    """Any module mapping mel windows (B, 1, 80, 16) to (B, 512) will do."""
    torch.manual_seed(0)
    nn = torch.nn
    return nn.Sequential(nn.Conv2d(1, 8, 3, stride=2), nn.BatchNorm2d(8), nn.ReLU(), nn.Flatten(), nn.Linear(8 * 39 * 7, 512))


def test_ave_features_of_speech_feed_the_unet_windows():
    wav, _ = sf.read(fixture_path("speech_hb.wav"), dtype="float32")
    wav = wav[: 640 * 75]
    encoder = tiny_encoder()
    features = extract_features("ave", wav, 75, ave_encoder=encoder)
    assert features.shape == (75, 512) and features.dtype == np.float32
    np.testing.assert_array_equal(features, ave_features(melspectrogram(wav), 75, encoder))
    assert features.std(axis=0).mean() > 0  # speech moves the features frame to frame
    assert to_model_window(feature_windows(features, np.arange(75)), "ave").shape == (75, *WINDOW_SHAPES["ave"])


def test_bad_requests_are_clear_errors():
    assert FEATURE_TYPES == ("ave", "hubert", "wenet")
    with pytest.raises(UserError, match="ave, hubert, wenet"):
        extract_features("mfcc", np.zeros(16000, np.float32), 25)
    with pytest.raises(UserError, match="empty"):
        extract_features("ave", np.zeros(0, np.float32), 0, ave_encoder=tiny_encoder())
