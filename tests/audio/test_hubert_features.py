import shutil
import sys

import numpy as np
import pytest
import soundfile as sf
import torch
from transformers import HubertConfig, HubertModel, Wav2Vec2FeatureExtractor

from conftest import fixture_path
from synctalk2d.audio.features import extract_features
from synctalk2d.audio.hubert import hubert_features, load_hubert
from synctalk2d.audio.windows import feature_window, to_model_window
from synctalk2d.errors import UserError


def tiny_config(hidden_size, layers):
    return HubertConfig(
        hidden_size=hidden_size,
        num_hidden_layers=layers,
        num_attention_heads=2,
        intermediate_size=32,
        conv_dim=(8,) * 7,
        num_conv_pos_embeddings=16,
        num_conv_pos_embedding_groups=2,
        feat_extract_norm="layer",
    )


@pytest.fixture(scope="module")
def speech():
    wav, rate = sf.read(fixture_path("speech_hb.wav"), dtype="float32")
    assert rate == 16000
    return wav[: 16000 * 8]


@pytest.fixture(scope="module")
def large_shaped_dir(tmp_path_factory):
    """A random 1-layer HuBERT with the large model's 1024-d output, saved as a model dir."""
    torch.manual_seed(0)
    path = tmp_path_factory.mktemp("hubert")
    HubertModel(tiny_config(1024, 1)).save_pretrained(path)
    Wav2Vec2FeatureExtractor(do_normalize=True).save_pretrained(path)
    return path


@pytest.mark.parametrize("num_samples", [100, 640 * 25, 640 * 25 + 1000, 640 * 60 - 1])
def test_two_vectors_per_frame_for_any_length(speech, large_shaped_dir, num_samples):
    model, extractor = load_hubert(large_shaped_dir)
    num_frames = max(1, num_samples // 640)
    features = hubert_features(speech[:num_samples], num_frames, model, extractor)
    assert features.shape == (num_frames, 2, 1024) and features.dtype == np.float32


def test_missing_vectors_repeat_the_last_one(speech, large_shaped_dir):
    model, extractor = load_hubert(large_shaped_dir)
    features = hubert_features(speech[: 640 * 10], 12, model, extractor).reshape(24, 1024)  # audio for 19
    np.testing.assert_array_equal(features[19:], np.repeat(features[18:19], 5, axis=0))
    assert not np.array_equal(features[17], features[18])


def test_vectors_are_the_models_last_hidden_state_in_order(speech, large_shaped_dir):
    model, extractor = load_hubert(large_shaped_dir)
    wav = speech[: 640 * 50]
    features = hubert_features(wav, 50, model, extractor).reshape(100, 1024)
    with torch.no_grad():
        hidden = model(torch.from_numpy(extractor(wav, sampling_rate=16000, return_tensors="np").input_values)).last_hidden_state[0]
    assert len(hidden) == 99  # a single pass gives one vector less than 2 per frame
    np.testing.assert_allclose(features[:99], hidden.numpy(), atol=1e-5)
    np.testing.assert_array_equal(features[99], features[98])


def test_chunks_with_context_give_the_same_vectors_as_one_pass(speech, tmp_path):
    """Without attention layers each vector only sees nearby audio, so chunking with
    enough context must reproduce the single pass exactly: chunk cuts are aligned."""
    model = HubertModel(tiny_config(16, 0)).eval()
    one_pass = hubert_features(speech, 200, model)
    chunked = hubert_features(speech, 200, model, chunk_seconds=1.0, context_seconds=0.5)
    np.testing.assert_allclose(chunked, one_pass, atol=1e-5)


def test_without_a_feature_extractor_config_the_audio_is_normalised_the_same(speech, large_shaped_dir, tmp_path):
    HubertModel.from_pretrained(large_shaped_dir).save_pretrained(tmp_path)
    model, extractor = load_hubert(tmp_path)
    assert extractor is None
    reference_model, reference_extractor = load_hubert(large_shaped_dir)
    wav = speech[: 640 * 30] * 0.3 + 0.01
    np.testing.assert_allclose(hubert_features(wav, 30, model), hubert_features(wav, 30, reference_model, reference_extractor), atol=1e-4)


def test_a_hub_name_loads_from_the_local_cache_only(large_shaped_dir, tmp_path, monkeypatch):
    from huggingface_hub import constants

    revision = "0" * 40
    repo = tmp_path / "models--someone--tiny-hubert"
    shutil.copytree(large_shaped_dir, repo / "snapshots" / revision)
    (repo / "refs").mkdir()
    (repo / "refs" / "main").write_text(revision)
    monkeypatch.setattr(constants, "HF_HUB_CACHE", str(tmp_path))
    model, extractor = load_hubert("someone/tiny-hubert")
    assert model.config.hidden_size == 1024 and extractor is not None
    with pytest.raises(UserError, match=str(tmp_path)):
        load_hubert("someone/not-cached")


def test_a_missing_model_is_a_clear_error(tmp_path):
    with pytest.raises(UserError, match="--hubert-model") as error:
        load_hubert(tmp_path / "no-such-model")
    assert "no-such-model" in str(error.value) and "Hugging Face cache" in str(error.value)
    with pytest.raises(UserError, match="no loadable HuBERT"):
        load_hubert(tmp_path)  # a directory, but empty


def test_extract_features_gives_hubert_windows_the_unet_takes(speech, large_shaped_dir, tmp_path):
    features = extract_features("hubert", speech[: 640 * 20], 20, hubert_model=large_shaped_dir)
    assert features.shape == (20, 2, 1024)
    assert to_model_window(feature_window(features, 5), "hubert").shape == (32, 32, 32)
    HubertModel(tiny_config(16, 0)).save_pretrained(tmp_path)
    with pytest.raises(UserError, match="hubert-large"):
        extract_features("hubert", speech[: 640 * 20], 20, hubert_model=tmp_path)


def test_missing_transformers_names_the_extra(monkeypatch, tmp_path):
    monkeypatch.setitem(sys.modules, "transformers", None)  # as if not installed
    with pytest.raises(UserError, match=r"pip install 'synctalk2d\[hubert\]'"):
        load_hubert(tmp_path)
