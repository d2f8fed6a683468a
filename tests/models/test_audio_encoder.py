import pytest
import torch
from safetensors.torch import save_file

from synctalk2d.errors import UserError
from synctalk2d.models.audio_encoder import AudioEncoder, load_audio_encoder_weights
from synctalk2d.models.syncnet import Wav2LipSyncNet


def _randomised(module: torch.nn.Module) -> torch.nn.Module:
    """Random weights and BatchNorm statistics, so a load that misses any of them shows."""
    torch.manual_seed(1)
    with torch.no_grad():
        for name, tensor in module.state_dict().items():
            if tensor.is_floating_point():
                tensor.copy_(torch.rand_like(tensor) + 0.5 if name.endswith("running_var") else torch.randn_like(tensor) * 0.1)
    return module.eval()


def test_mel_window_to_512():
    assert AudioEncoder().eval()(torch.randn(2, 1, 80, 16)).shape == (2, 512)


def test_bare_encoder_keys_are_the_synctalk_layout():
    keys = AudioEncoder().state_dict()
    assert "0.conv_block.0.weight" in keys and "12.conv_block.1.running_var" in keys and "13.conv_block.0.weight" not in keys
    assert all(k.startswith("audio_encoder.") for k in Wav2LipSyncNet().state_dict() if not k.startswith("face_encoder."))


def test_full_syncnet_pth_and_bare_safetensors_load(tmp_path):
    syncnet = _randomised(Wav2LipSyncNet())
    mel = torch.randn(2, 1, 80, 16)
    expected = syncnet.audio_encoder(mel)

    full = tmp_path / "syncnet.pth"  # Wav2Lip's layout: a dict with a DataParallel state dict inside
    torch.save({"state_dict": {f"module.{k}": v for k, v in syncnet.state_dict().items()}, "global_step": 7}, full)
    bare = tmp_path / "encoder.safetensors"
    save_file({k: v.contiguous() for k, v in syncnet.audio_encoder.state_dict().items() if not k.endswith("num_batches_tracked")}, bare)

    for path in (full, bare):
        encoder = load_audio_encoder_weights(AudioEncoder(), path).eval()
        assert torch.allclose(encoder(mel), expected)


def test_mismatched_checkpoints_are_one_clear_error(tmp_path):
    encoder = AudioEncoder()
    # Wav2Lip's lipsync expert: one more 256-channel residual block, so block 11 is 256 -> 256
    wav2lip = {k: v for k, v in encoder.state_dict().items()}
    wav2lip["11.conv_block.0.weight"] = torch.zeros(256, 256, 3, 3)
    path = tmp_path / "lipsync_expert.pth"
    torch.save(wav2lip, path)
    with pytest.raises(
        UserError,
        match=r"lipsync_expert.pth does not hold an AVE audio encoder .*wrong shape "
        r"\(first: 11.conv_block.0.weight is \[256, 256, 3, 3\], expected \[512, 256, 3, 3\]\)",
    ):
        load_audio_encoder_weights(encoder, path)

    faces_only = tmp_path / "faces.pth"
    torch.save({f"face_encoder.{k}": v for k, v in Wav2LipSyncNet().face_encoder.state_dict().items()}, faces_only)
    with pytest.raises(UserError, match=r"faces.pth does not hold an AVE audio encoder .*tensors are missing \(first: 0.conv_block.0.weight\)"):
        load_audio_encoder_weights(encoder, faces_only)

    garbage = tmp_path / "garbage.pth"
    garbage.write_bytes(b"not a checkpoint")
    with pytest.raises(UserError, match="garbage.pth cannot be read as model weights"):
        load_audio_encoder_weights(encoder, garbage)
    with pytest.raises(UserError, match="does not exist"):
        load_audio_encoder_weights(encoder, tmp_path / "missing.pth")
