"""The inference runtime: BN folding, ONNX export, reduced precision within 40 dB of fp32.

Mobile width with random weights keeps these fast; the bf16/int8 checks use real face
crops from talk_b.mp4. Random weights flatter reduced precision (low-contrast outputs):
rerun `fidelity_psnr` on trained weights (bench/infer_unet.py --avatar DIR does), where
int8 measured ~21 dB and `from_model` falls back to fp32."""

from __future__ import annotations

import av
import cv2
import numpy as np
import pytest
import torch
from torch import nn

from conftest import fixture_path
from synctalk2d.device import cpu_has_fast_bf16
from synctalk2d.errors import UserError
from synctalk2d.face.crop import mask_lower_face
from synctalk2d.inference import runtime
from synctalk2d.inference.runtime import (
    MIN_PSNR_DB,
    UNetRunner,
    export_onnx,
    fidelity_psnr,
    fold_batchnorm,
)
from synctalk2d.models.unet import UNet, UNetConfig


@pytest.fixture(scope="module")
def unet() -> UNet:
    """Mobile U-Net with non-trivial BatchNorm statistics (fresh ones would fold to no-ops)."""
    torch.manual_seed(0)
    model = UNet(UNetConfig(width="mobile")).eval()
    for bn in (m for m in model.modules() if isinstance(m, nn.BatchNorm2d)):
        bn.running_mean.uniform_(-0.2, 0.2)
        bn.running_var.uniform_(0.5, 1.5)
        bn.weight.data.uniform_(0.5, 1.5)
        bn.bias.data.uniform_(-0.2, 0.2)
    return model


@pytest.fixture(scope="module")
def crops() -> np.ndarray:
    """(2, 320, 320, 6) uint8 model inputs: real face crops of talk_b.mp4 and their masked copies."""
    with av.open(str(fixture_path("talk_b.mp4"))) as container:
        frames = [f.to_ndarray(format="rgb24") for i, f in zip(range(61), container.decode(video=0)) if i % 60 == 0]
    faces = np.stack([cv2.resize(f[260:600, 240:580], (320, 320), interpolation=cv2.INTER_AREA) for f in frames])
    return np.concatenate([faces, mask_lower_face(faces)], axis=-1)


@pytest.fixture(scope="module")
def inputs(crops) -> tuple[torch.Tensor, torch.Tensor]:
    images = torch.from_numpy(crops).permute(0, 3, 1, 2).float() / 255
    return images, torch.randn(len(crops), 32, 16, 16, generator=torch.Generator().manual_seed(1))


def eager(unet: UNet, images: torch.Tensor, audio: torch.Tensor) -> torch.Tensor:
    with torch.inference_mode():
        return unet(images, audio)


def test_fold_batchnorm_preserves_outputs(unet, inputs):
    folded = runtime.inference_copy(unet)
    assert not any(isinstance(m, nn.BatchNorm2d) for m in folded.modules())
    assert any(isinstance(m, nn.BatchNorm2d) for m in unet.modules())  # the original is untouched
    assert torch.allclose(eager(folded, *inputs), eager(unet, *inputs), atol=1e-5)


def test_fold_batchnorm_needs_eval_mode():
    with pytest.raises(ValueError, match="eval"):
        fold_batchnorm(UNet(UNetConfig(width="mobile")).train())


def test_onnx_export_matches_torch(unet, inputs, tmp_path):
    import onnxruntime as ort

    session = ort.InferenceSession(str(export_onnx(unet, tmp_path / "unet.onnx")), providers=["CPUExecutionProvider"])
    (out,) = session.run(None, {"image": inputs[0].numpy(), "audio": inputs[1].numpy()})  # batch 2: a dynamic axis
    assert np.abs(out - eager(unet, *inputs).numpy()).max() < 1e-4


def test_runner_keeps_the_generator_contract(unet, crops, inputs):
    runner = UNetRunner.from_model(unet, backend="torch", precision="fp32", compile=False)
    faces = runner(crops, inputs[1].numpy())
    assert faces.shape == (len(crops), 320, 320, 3) and faces.dtype == np.uint8
    expected = eager(unet, *inputs).permute(0, 2, 3, 1).mul(255).round().numpy()
    assert np.abs(faces.astype(np.float32) - expected).max() <= 1


def test_frame_parallel_matches_intra_op(unet, inputs):
    parallel = UNetRunner.from_model(unet, backend="torch", precision="fp32", threads=2, frame_parallel=True, compile=False)
    serial = UNetRunner.from_model(unet, backend="torch", precision="fp32", frame_parallel=False, compile=False)
    assert parallel.workers == 2 and serial.workers == 1
    assert torch.allclose(parallel.predict(*inputs), serial.predict(*inputs), atol=1e-5)


@pytest.mark.skipif(not cpu_has_fast_bf16(), reason="no AMX / AVX512-BF16 on this CPU")
def test_default_cpu_runner_is_compiled_bf16_within_40db(unet, inputs):
    runner = UNetRunner.from_model(unet)
    assert (runner.backend, runner.precision) == ("torch", "bf16")
    assert fidelity_psnr(unet, runner, *inputs) >= MIN_PSNR_DB


def test_onnx_int8_within_40db(unet, inputs):
    """The int8 pipeline (export, calibration, QDQ session) works; with random weights
    it also passes the quality check."""
    runner = UNetRunner.from_model(unet, backend="onnx", precision="int8", samples=inputs)
    assert runner.precision == "int8"
    assert fidelity_psnr(unet, runner, *inputs) >= MIN_PSNR_DB


def test_int8_needs_calibration_samples(unet):
    with pytest.raises(UserError, match="calibration"):
        UNetRunner.from_model(unet, backend="onnx", precision="int8")


def test_below_40db_falls_back_to_fp32(unet, inputs, monkeypatch):
    monkeypatch.setattr(runtime, "MIN_PSNR_DB", 1000.0)
    runner = UNetRunner.from_model(unet, backend="torch", precision="bf16", compile=False, samples=inputs)
    assert runner.precision == "fp32"
    assert runner.rejected[0] == "bf16" and "below the 1000 dB rule, so fp32 is used" in runner.summary


def test_checked_precision_reports_its_psnr(unet, inputs):
    runner = UNetRunner.from_model(unet, backend="torch", precision="bf16", compile=False, samples=inputs)
    assert runner.psnr_db is not None and f"{runner.psnr_db:.1f} dB PSNR from fp32" in runner.summary


def test_int8_implies_onnx():
    assert runtime.resolve("auto", "int8", torch.device("cpu")) == ("onnx", "int8")


def test_unknown_choices_are_rejected_in_words(unet):
    with pytest.raises(UserError, match="unknown backend 'tensorrt'; expected one of auto, torch, onnx"):
        UNetRunner.from_model(unet, backend="tensorrt")
    with pytest.raises(UserError, match="int8 runs on onnxruntime only: use --backend onnx"):
        UNetRunner.from_model(unet, backend="torch", precision="int8")
    with pytest.raises(UserError, match="onnxruntime has no bf16"):
        UNetRunner.from_model(unet, backend="onnx", precision="bf16")
