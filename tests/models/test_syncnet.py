import pytest
import torch
import torch.nn.functional as F

from synctalk2d.audio.windows import WINDOW_SHAPES
from synctalk2d.errors import UserError
from synctalk2d.models.syncnet import (
    SyncNet,
    SyncNetConfig,
    Wav2LipSyncNet,
    sync_loss,
    sync_probability,
)


def _unit(embeddings):
    return torch.allclose(embeddings.norm(dim=1), torch.ones(len(embeddings)), atol=1e-5)


@pytest.mark.parametrize("feature_type", list(WINDOW_SHAPES))
def test_syncnet_embeds_crop_and_window_as_512_unit_vectors(feature_type):
    model = SyncNet(SyncNetConfig(feature_type)).eval()
    with torch.no_grad():
        audio, face = model(torch.rand(1, 3, *SyncNet.FACE_SIZE), torch.randn(1, *WINDOW_SHAPES[feature_type]))
    assert audio.shape == face.shape == (1, 512) and _unit(audio) and _unit(face)


def test_wav2lip_syncnet_embeds_five_faces_and_a_mel_window():
    model = Wav2LipSyncNet().eval()
    with torch.no_grad():
        audio, face = model(torch.rand(1, 15, *Wav2LipSyncNet.FACE_SIZE), torch.randn(1, 1, 80, 16))
    assert audio.shape == face.shape == (1, 512) and _unit(audio) and _unit(face)


def test_frozen_syncnet_passes_gradient_to_the_face_and_trains_both_towers():
    torch.manual_seed(0)
    model = SyncNet().train()
    face = torch.rand(2, 3, 320, 320, requires_grad=True)
    audio = torch.randn(2, *WINDOW_SHAPES["ave"], requires_grad=True)
    loss, probability = sync_loss(*model(face, audio), torch.tensor([1.0, 0.0]))
    loss.backward()
    assert probability.shape == (2,) and 0 <= probability.min() and probability.max() <= 1
    assert face.grad.abs().sum() > 0 and audio.grad.abs().sum() > 0
    assert model.face_encoder[0].conv_block[0].weight.grad is not None
    assert model.audio_encoder[0].conv_block[0].weight.grad is not None


def test_sync_probability_is_the_relu_cosine_and_the_loss_is_its_bce():
    a = F.normalize(torch.tensor([[1.0, 0.0], [1.0, 0.0], [1.0, 0.0]]), dim=1)
    v = F.normalize(torch.tensor([[1.0, 1.0], [0.0, 1.0], [-1.0, 0.5]]), dim=1)
    probability = sync_probability(a, v)
    assert torch.allclose(probability, torch.tensor([2**-0.5, 0.0, 0.0]), atol=1e-6)
    target = torch.tensor([1.0, 0.0, 0.0])
    loss, returned = sync_loss(a, v, target)
    assert torch.equal(returned, probability)
    assert torch.isclose(loss, F.binary_cross_entropy(probability, target))
    assert sync_loss(a, a, torch.ones(3))[0] < 1e-5, "identical embeddings: certainly in sync"


def test_sync_loss_runs_under_autocast():
    a, v = F.normalize(torch.randn(4, 512), dim=1), F.normalize(torch.randn(4, 512), dim=1)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        loss, _ = sync_loss(a.bfloat16(), v.bfloat16(), torch.ones(4))
    assert loss.dtype == torch.float32 and torch.isfinite(loss)


def test_config_round_trip_and_clear_error():
    config = SyncNetConfig("wenet")
    assert SyncNetConfig.from_dict(config.to_dict()) == config == SyncNet(config).config
    with pytest.raises(UserError, match="unknown feature type 'mfcc'"):
        SyncNetConfig("mfcc")
