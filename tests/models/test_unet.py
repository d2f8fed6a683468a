import pytest
import torch

from synctalk2d.audio.windows import WINDOW_SHAPES
from synctalk2d.errors import UserError
from synctalk2d.models.unet import NO_AUDIO, WIDTHS, UNet, UNetConfig


def test_default_unet_has_the_reference_parameter_count():
    model = UNet()
    assert model.config == UNetConfig("ave", "full")
    assert sum(p.numel() for p in model.parameters() if p.requires_grad) == 12_186_935


@pytest.mark.parametrize("width", list(WIDTHS))
@pytest.mark.parametrize("feature_type", list(WINDOW_SHAPES))
def test_output_is_a_320_crop_in_0_1(feature_type, width):
    torch.manual_seed(0)
    model = UNet(UNetConfig(feature_type, width)).eval()
    with torch.no_grad():
        out = model(torch.rand(1, 6, 320, 320), torch.randn(1, *WINDOW_SHAPES[feature_type]))
    assert out.shape == (1, 3, 320, 320)
    assert out.min() > 0 and out.max() < 1


def test_gradient_reaches_image_and_audio():
    torch.manual_seed(0)
    model = UNet(UNetConfig("ave", "mobile")).train()
    image = torch.rand(1, 6, 320, 320, requires_grad=True)
    audio = torch.randn(1, *WINDOW_SHAPES["ave"], requires_grad=True)
    model(image, audio).mean().backward()
    assert image.grad.abs().sum() > 0 and audio.grad.abs().sum() > 0
    assert all(p.grad is not None for p in model.parameters())


def test_config_round_trip_and_clear_errors():
    config = UNetConfig("hubert", "mobile")
    assert UNetConfig.from_dict(config.to_dict()) == config
    assert config.to_dict() == {"feature_type": "hubert", "width": "mobile"}
    with pytest.raises(UserError, match="unknown feature type 'whisper'; expected one of ave, hubert, wenet, none"):
        UNetConfig(feature_type="whisper")
    with pytest.raises(UserError, match="unknown width 'tiny'"):
        UNetConfig(width="tiny")


def test_the_compositor_has_no_audio_branch_and_draws_from_images_alone():
    """``feature_type="none"``: the reference crop already shows the mouth to draw."""
    torch.manual_seed(0)
    model = UNet(UNetConfig(NO_AUDIO, "mobile")).train()
    assert model.audio is None
    image = torch.rand(2, 6, 320, 320, requires_grad=True)
    out = model(image)
    assert out.shape == (2, 3, 320, 320)
    out.mean().backward()
    assert image.grad.abs().sum() > 0 and all(p.grad is not None for p in model.parameters())
    full = sum(p.numel() for p in UNet(UNetConfig(NO_AUDIO, "full")).parameters())
    assert full < 12_186_935 / 1.5  # the audio branch is most of the reference's parameters
