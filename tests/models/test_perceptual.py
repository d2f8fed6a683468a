import pytest
import torch

from synctalk2d.errors import UserError
from synctalk2d.models.perceptual import (
    VGG19_FILE,
    PerceptualLoss,
    load_vgg19,
    vgg19_features,
)


def _torchvision_layout(vgg: torch.nn.Sequential) -> dict[str, torch.Tensor]:
    """What torchvision's vgg19 state dict looks like: ``features.<index>.*`` for all 16
    convs (here the first 7, plus conv3_4 at index 16) and the classifier."""
    state = {f"features.{k}": v for k, v in vgg.state_dict().items()}
    state["features.16.weight"], state["features.16.bias"] = torch.randn(256, 256, 3, 3), torch.randn(256)
    state["classifier.0.weight"], state["classifier.0.bias"] = torch.randn(8, 16), torch.randn(8)
    return state


def test_torchvision_state_dict_loads_from_a_path_and_from_the_hub_cache(tmp_path, monkeypatch):
    torch.manual_seed(0)
    source = vgg19_features()
    path = tmp_path / "vgg19.pth"
    torch.save(_torchvision_layout(source), path)
    for loaded in (load_vgg19(path), None):
        if loaded is None:  # the same file found in the (monkeypatched) torch hub cache
            hub = tmp_path / "hub"
            monkeypatch.setattr(torch.hub, "get_dir", lambda hub=hub: str(hub))
            assert load_vgg19() is None, "nothing in the cache yet"
            (hub / "checkpoints").mkdir(parents=True)
            path.rename(hub / "checkpoints" / VGG19_FILE)
            loaded = load_vgg19()
        assert len(loaded) == 15 and isinstance(loaded[14], torch.nn.Conv2d)
        for a, b in zip(source.state_dict().values(), loaded.state_dict().values()):
            assert torch.equal(a, b)


def test_missing_or_mismatched_weights_are_clear_errors(tmp_path):
    with pytest.raises(UserError, match="VGG19 weights .*nope.pth do not exist"):
        load_vgg19(tmp_path / "nope.pth")
    state = _torchvision_layout(vgg19_features())
    del state["features.14.weight"]
    path = tmp_path / "vgg16_by_mistake.pth"
    torch.save(state, path)
    with pytest.raises(UserError, match=r"vgg16_by_mistake.pth does not hold torchvision VGG19 weights .*missing \(first: 14.weight\)"):
        load_vgg19(path)


def test_perceptual_loss_compares_features_and_trains_only_the_prediction():
    torch.manual_seed(0)
    loss = PerceptualLoss(vgg19_features())
    target = torch.rand(2, 3, 32, 32)
    predicted = torch.rand(2, 3, 32, 32, requires_grad=True)
    assert loss(target, target) == 0
    value = loss(predicted, target)
    value.backward()
    assert value > 0 and predicted.grad.abs().sum() > 0
    assert all(not p.requires_grad for p in loss.parameters())
    assert list(loss.state_dict()) == [k for k in loss.state_dict() if k.startswith("vgg.")], "no normalisation buffers saved"
