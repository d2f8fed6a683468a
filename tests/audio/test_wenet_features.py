import numpy as np
import pytest
import soundfile as sf
import torch
from transformers.audio_utils import mel_filter_bank, spectrogram, window_function

from conftest import fixture_path
from synctalk2d.audio.features import extract_features
from synctalk2d.audio.wenet import kaldi_fbank, load_wenet, wenet_features
from synctalk2d.audio.windows import feature_window, to_model_window
from synctalk2d.errors import UserError

pytestmark = pytest.mark.filterwarnings("ignore::DeprecationWarning")  # the TorchScript ONNX exporter


class BlockMeans(torch.nn.Module):
    """A stand-in WeNet encoder: output row t is the mean log energy of fbank frames
    4t .. 4t+3 of the chunk (the real encoder's 4x subsampling), repeated 512 times."""

    def forward(self, chunk, offset=None, att_cache=None, cnn_cache=None):
        blocks = chunk.reshape(1, 67, -1)[:, :64].reshape(1, 16, -1).mean(-1, keepdim=True)
        unused = sum(0 * x.float().sum() for x in (offset, att_cache, cnn_cache) if x is not None)
        return blocks.expand(1, 16, 512) + unused


def export(path, inputs: dict):
    torch.onnx.export(BlockMeans(), tuple(inputs.values()), str(path), input_names=list(inputs), output_names=["output"], dynamo=False)
    return path


@pytest.fixture(scope="module")
def speech():
    wav, rate = sf.read(fixture_path("speech_hb.wav"), dtype="float32")
    assert rate == 16000
    return wav[: 16000 * 4]


@pytest.fixture(scope="module")
def encoder_path(tmp_path_factory):
    """The reference's encoder.onnx interface: chunk (1, 1, 67, 80), offset, caches."""
    inputs = {
        "chunk": torch.zeros(1, 1, 67, 80),
        "offset": torch.tensor([100]),
        "att_cache": torch.zeros(3, 8, 16, 128),
        "cnn_cache": torch.zeros(3, 1, 512, 14),
    }
    return export(tmp_path_factory.mktemp("wenet") / "encoder.onnx", inputs)


def test_fbank_matches_kaldi(speech):
    """Against transformers' numpy port of torchaudio's kaldi.fbank (torchaudio isn't installed)."""
    ours = kaldi_fbank(speech)
    kaldi = spectrogram(
        speech * 32768,
        window_function(400, "povey", periodic=False),
        frame_length=400,
        hop_length=160,
        fft_length=512,
        power=2.0,
        center=False,
        preemphasis=0.97,
        remove_dc_offset=True,
        log_mel="log",
        mel_floor=np.finfo(np.float32).eps,
        mel_filters=mel_filter_bank(257, 80, 20, 8000, 16000, norm=None, mel_scale="kaldi", triangularize_in_mel_space=True),
    ).T
    assert ours.shape == kaldi.shape == (1 + (len(speech) - 400) // 160, 80)
    np.testing.assert_allclose(ours, kaldi, atol=1e-3)


@pytest.mark.parametrize("num_frames", [1, 37, 100, 130])
def test_each_frame_gets_the_encoder_output_of_a_chunk_centred_on_it(speech, encoder_path, num_frames):
    features = wenet_features(speech, num_frames, load_wenet(encoder_path))
    assert features.shape == (num_frames, 16, 512) and features.dtype == np.float32
    fbank = kaldi_fbank(speech[: num_frames * 640])
    inside = min(num_frames, (len(fbank) - 4) // 4 + 1)
    centres = [fbank[4 * i : 4 * i + 4].mean() for i in range(inside)]  # frame i's own 40 ms
    np.testing.assert_allclose(features[:inside, 8, 0], centres, atol=1e-4)
    silence = np.log(np.finfo(np.float32).eps)
    assert np.allclose(features[0, 0], silence) and (num_frames <= 100 or np.allclose(features[-1, -1], silence))


def test_a_graph_taking_only_a_3d_chunk_works_too(speech, encoder_path, tmp_path):
    plain = load_wenet(export(tmp_path / "plain.onnx", {"chunk": torch.zeros(1, 67, 80)}))
    np.testing.assert_array_equal(wenet_features(speech, 20, plain), wenet_features(speech, 20, load_wenet(encoder_path)))


def test_graphs_with_other_inputs_are_a_clear_error(tmp_path):
    path = export(tmp_path / "offline.onnx", {"speech": torch.zeros(1, 67, 80), "speech_lengths": torch.tensor([67])})
    with pytest.raises(UserError, match="speech_lengths") as error:
        load_wenet(path)
    assert "expected chunk" in str(error.value)
    with pytest.raises(UserError, match="1x67x80"):
        load_wenet(export(tmp_path / "wide.onnx", {"chunk": torch.zeros(1, 67, 40)}))
    with pytest.raises(UserError, match="not found"):
        load_wenet(tmp_path / "missing.onnx")
    (tmp_path / "junk.onnx").write_bytes(b"not a graph")
    with pytest.raises(UserError, match="not a usable ONNX model"):
        load_wenet(tmp_path / "junk.onnx")


def test_extract_features_gives_wenet_windows_the_unet_takes(speech, encoder_path):
    features = extract_features("wenet", speech, 50, wenet_model=encoder_path)
    assert to_model_window(feature_window(features, 20), "wenet").shape == (256, 16, 32)
    with pytest.raises(UserError, match="--wenet-model"):
        extract_features("wenet", speech, 50)
