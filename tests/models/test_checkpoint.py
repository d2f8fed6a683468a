import json

import pytest
import torch

from synctalk2d.errors import UserError
from synctalk2d.models.checkpoint import (
    load_audio_encoder,
    load_checkpoint,
    load_syncnet,
    load_unet,
    save_checkpoint,
)


def _trained_toy() -> tuple[torch.nn.Module, torch.optim.Optimizer]:
    torch.manual_seed(0)
    model = torch.nn.Sequential(torch.nn.Conv2d(3, 4, 3), torch.nn.BatchNorm2d(4))
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-3)
    for _ in range(2):
        optimizer.zero_grad()
        model(torch.randn(2, 3, 8, 8)).square().mean().backward()
        optimizer.step()
    return model, optimizer


def test_round_trip_restores_weights_optimizer_and_record(tmp_path):
    model, optimizer = _trained_toy()
    config = {"kind": "toy", "model": {"channels": 4}}
    save_checkpoint(tmp_path / "ck" / "latest", model, config, optimizer, {"step": 2, "metrics": {"loss": 0.5}})

    assert sorted(p.name for p in (tmp_path / "ck").iterdir()) == ["latest.json", "latest.safetensors"], "no temp files left"
    readable = json.loads((tmp_path / "ck" / "latest.json").read_text())
    assert readable["config"] == config and readable["state"]["step"] == 2

    checkpoint = load_checkpoint(tmp_path / "ck" / "latest")
    assert checkpoint.config == config and checkpoint.state == {"step": 2, "metrics": {"loss": 0.5}}
    fresh = torch.nn.Sequential(torch.nn.Conv2d(3, 4, 3), torch.nn.BatchNorm2d(4))
    fresh.load_state_dict(checkpoint.weights)
    for a, b in zip(model.state_dict().values(), fresh.state_dict().values()):
        assert torch.equal(a, b)
    fresh_optimizer = torch.optim.Adam(fresh.parameters(), lr=1e-3)
    fresh_optimizer.load_state_dict(checkpoint.optimizer)
    original = optimizer.state_dict()
    restored = fresh_optimizer.state_dict()
    assert restored["param_groups"] == json.loads(json.dumps(original["param_groups"])), "tuples come back as lists"
    for pid, state in original["state"].items():
        for name, value in state.items():
            assert torch.equal(torch.as_tensor(value), torch.as_tensor(restored["state"][pid][name]))
    fresh(torch.randn(2, 3, 8, 8)).square().mean().backward()
    fresh_optimizer.step()  # the restored state is usable


def test_model_only_checkpoint_has_no_optimizer(tmp_path):
    model, _ = _trained_toy()
    save_checkpoint(tmp_path / "best", model, {"kind": "toy"})
    assert load_checkpoint(tmp_path / "best").optimizer is None


def test_untrained_avatar_and_damaged_checkpoint_are_clear_errors(tmp_path):
    for load in (load_unet, load_syncnet, load_audio_encoder):
        with pytest.raises(UserError, match=r"is not trained .*run `synctalk2d train --avatar"):
            load(tmp_path)
    (tmp_path / "bad.safetensors").write_bytes(b"not a checkpoint")
    with pytest.raises(UserError, match="damaged"):
        load_checkpoint(tmp_path / "bad")
    with pytest.raises(UserError, match="does not exist"):
        load_checkpoint(tmp_path / "missing")


def test_checkpoint_of_another_model_is_a_clear_error(tmp_path):
    model, _ = _trained_toy()
    save_checkpoint(tmp_path / "checkpoints" / "unet" / "best", model, {"kind": "toy", "model": {}})
    with pytest.raises(UserError, match="holds a 'toy' model") as error:
        load_unet(tmp_path)
    # `train` skips a stage it finds complete, so the way out names the directory to delete
    assert f"delete {tmp_path / 'checkpoints' / 'unet'} and run `synctalk2d train --avatar {tmp_path}` again" in str(error.value)


def test_syncnet_of_a_loaded_record_is_the_syncnet_load_syncnet_returns(tmp_path):
    """`syncnet_of` builds the model from a record already read (the U-Net stage gates on
    that record's accuracy), the same weights `load_syncnet` loads."""
    from synctalk2d.models.checkpoint import syncnet_of, trained_stem
    from synctalk2d.models.syncnet import SyncNet, SyncNetConfig

    torch.manual_seed(0)
    config = SyncNetConfig(feature_type="ave")
    save_checkpoint(tmp_path / "checkpoints" / "syncnet" / "best", SyncNet(config), {"kind": "syncnet", "model": config.to_dict()}, state={"step": 8})
    stem = trained_stem(tmp_path, "syncnet")
    checkpoint = load_checkpoint(stem)
    model, loaded = syncnet_of(checkpoint, stem), load_syncnet(tmp_path)
    assert checkpoint.state["step"] == 8 and not model.training
    for key, value in loaded.state_dict().items():
        assert torch.equal(model.state_dict()[key], value), key
