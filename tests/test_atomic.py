"""One atomic-write rule for every file the package writes whole: readable by others (0644),
and a writer that fails leaves the old file as it was."""

import os
import stat

import numpy as np
import pytest

from synctalk2d.atomic import atomic_path, write_json_atomic


def mode(path) -> int:
    return stat.S_IMODE(os.stat(path).st_mode)


def test_written_files_are_0644_whatever_the_umask(tmp_path):
    old = os.umask(0o077)  # as private as a umask gets: the mode is still set explicitly
    try:
        write_json_atomic(tmp_path / "a.json", {"x": 1})
        with atomic_path(tmp_path / "f.npy") as tmp:
            np.save(tmp, np.arange(3))
    finally:
        os.umask(old)
    assert mode(tmp_path / "a.json") == mode(tmp_path / "f.npy") == 0o644
    assert np.load(tmp_path / "f.npy").tolist() == [0, 1, 2]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a.json", "f.npy"], "no temp file left"


def test_a_failing_writer_leaves_the_old_file(tmp_path):
    target = tmp_path / "f.npy"
    np.save(target, np.zeros(2))
    with pytest.raises(RuntimeError):
        with atomic_path(target) as tmp:
            tmp.write_bytes(b"half an arr")
            raise RuntimeError("killed mid-write")
    assert np.load(target).tolist() == [0, 0]
    assert [p.name for p in tmp_path.iterdir()] == ["f.npy"]


def test_package_writers_use_it(tmp_path):
    """features/*.npy, checkpoints and unet.onnx were 0600 before they shared the helper."""
    import torch

    from synctalk2d.inference.runtime import export_onnx
    from synctalk2d.models.checkpoint import save_checkpoint
    from synctalk2d.models.unet import UNet, UNetConfig
    from synctalk2d.training.audio_encoder import save_features

    unet = UNet(UNetConfig(width="mobile")).eval()
    written = [
        save_features(tmp_path, "ave", np.zeros((2, 512), np.float32)),
        export_onnx(unet, tmp_path / "unet.onnx"),
    ]
    save_checkpoint(tmp_path / "ckpt" / "best", torch.nn.Linear(2, 2), config={})
    written += [tmp_path / "ckpt" / "best.safetensors", tmp_path / "ckpt" / "best.json"]
    assert [mode(p) for p in written] == [0o644] * 4
