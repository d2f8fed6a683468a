"""The U-Net as a fast batched predictor: `UNetRunner.from_model(unet, backend, precision, device)`.

Every backend runs the network with BatchNorm folded into the convolutions (inference
never updates the statistics, so a conv+BN pair is one conv with a new weight and bias).
Measured on the 2-core development CPU (AVX-512 with BF16), CPU ms per frame on one core,
full width, batch 1: eager fp32 360 -> BN folded 340 -> channels_last 230 -> bf16
130 -> `torch.compile` (frozen weights) 80 -> glibc keeping freed memory 51 (mobile width:
133 -> 27). bench/infer_unet.py prints the full table. What that says about the network:

* ~4.9 GMAC a frame at full width, 90 % in 1x1 convs, which bf16 dot products make
  cheap; the time goes to moving 85 M activations a frame, and the 30 depthwise convs
  (6 % of the MACs, memory-bound) take 45 % of the conv time. So what pays is fewer bytes and passes:
  channels_last (no reorders around oneDNN), bf16 (half the bytes), compile with frozen
  weights (pre-packed weights; bias, ReLU and residual adds fused into the convs), and no
  page faults (`keep_freed_memory`). Tiling the 320x320 blocks into stripes did not help.
* Small batches are faster per frame than large ones (a frame's maps mostly stay in
  cache), so on CPU every model call is one frame, and `torch.compile` sees one shape.
* onnxruntime fp32 beats PyTorch fp32 (NCHWc convs, fused ReLU, its own memory arena) but
  not PyTorch bf16. Its int8 (static QDQ, per-channel weights, calibrated on real crops)
  is about as fast as torch bf16, and is within 40 dB of fp32 with random weights but
  not with trained ones (~21 dB: the 320x320 decoder layers cannot take 8-bit
  activations), so it is never chosen by default and always checked (falling back to
  fp32). onnxruntime has no bf16/fp16 convolutions on x86 CPUs (an fp16 model gets Casts
  back to fp32), so those precisions exist only on torch.

Defaults (``"auto"``): on a CPU with AMX or AVX512-BF16, torch + bf16 + compile (53-60 dB
from fp32 on real crops); on other CPUs onnxruntime fp32; on CUDA torch fp16 (more
mantissa than bf16, same tensor-core speed; untested here: no GPU) in channels_last.
Reduced precision must stay within `MIN_PSNR_DB` of fp32: pass real crops as ``samples``
and `from_model` checks that on the actual weights (falling back to fp32, see
`UNetRunner.summary`), or call `fidelity_psnr` yourself. `LipSync` passes a few of the
avatar's own frames, so every command that renders checks it at load.
"""

from __future__ import annotations

import contextlib
import copy
import ctypes
import logging
import os
import tempfile
import threading
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import torch
from torch import nn
from torch.nn.utils.fusion import fuse_conv_bn_eval

from synctalk2d.atomic import atomic_path
from synctalk2d.audio.windows import WINDOW_SHAPES
from synctalk2d.device import cpu_has_fast_bf16
from synctalk2d.errors import UserError
from synctalk2d.evaluation.metrics import psnr
from synctalk2d.models.config import check_choice
from synctalk2d.models.unet import NO_AUDIO, UNet

log = logging.getLogger(__name__)

MIN_PSNR_DB = 40.0
BACKENDS = ("auto", "torch", "onnx")
PRECISIONS = ("auto", "fp32", "bf16", "fp16", "int8")
_DTYPES = {"fp32": torch.float32, "bf16": torch.bfloat16, "fp16": torch.float16}
IMAGE_SIZE = 320

# (images (B, 6, H, W) float in [0, 1], audio windows) -> (B, 3, H, W) float32
Forward = Callable[[torch.Tensor, torch.Tensor], torch.Tensor]


def fold_batchnorm(module: nn.Module) -> nn.Module:
    """Fold every BatchNorm2d that directly follows a Conv2d in an `nn.Sequential` into
    that conv, in place (the BN becomes `nn.Identity`); returns ``module``. Eval only."""
    if module.training:
        raise ValueError("fold_batchnorm needs a model in eval mode")
    for seq in module.modules():
        if not isinstance(seq, nn.Sequential):
            continue
        names = list(seq._modules)
        for conv_name, bn_name in zip(names, names[1:]):
            conv, bn = seq._modules[conv_name], seq._modules[bn_name]
            if isinstance(conv, nn.Conv2d) and isinstance(bn, nn.BatchNorm2d):
                seq._modules[conv_name] = fuse_conv_bn_eval(conv, bn)
                seq._modules[bn_name] = nn.Identity()
    return module


def inference_copy(unet: UNet) -> UNet:
    """An eval-mode copy of ``unet`` with BatchNorm folded; the original is untouched."""
    return fold_batchnorm(copy.deepcopy(unet).eval().requires_grad_(False))


def tune_process(threads: int | None = None) -> None:
    """Process-wide settings that make CPU inference fast: glibc keeps freed memory
    (`keep_freed_memory`) and, when ``threads`` is given, torch's intra-op thread count.

    They change the whole host process, so library code never calls this: the CLI does,
    for the commands that render (a program embedding `LipSync` may call it too)."""
    keep_freed_memory()
    if threads:
        torch.set_num_threads(threads)


def keep_freed_memory() -> bool:
    """Make glibc keep freed memory for reuse (process-wide; Linux only; see `tune_process`).

    A frame allocates fresh activation tensors of up to 26 MB; by default glibc mmaps
    blocks that large and unmaps them on free, so the next frame page-faults all of it in
    again (a third of the bf16 frame time at full width). With mmap and trim thresholds at
    1 GiB the heap keeps its peak size; one arena, because a worker thread's own arena
    (64 MB heaps) churns the same way (15 % slower per frame than the main thread).
    Returns False where this is not glibc. onnxruntime has its own arena: no need there."""
    try:
        mallopt = ctypes.CDLL("libc.so.6").mallopt
    except (OSError, AttributeError):
        return False
    m_trim_threshold, m_mmap_threshold, m_arena_max = -1, -3, -8
    return all(mallopt(option, value) for option, value in ((m_mmap_threshold, 1 << 30), (m_trim_threshold, 1 << 30), (m_arena_max, 1)))


def release_freed_memory() -> None:
    """Hand the heap's free pages back to the system now (glibc's ``malloc_trim``; nothing
    elsewhere). `keep_freed_memory` keeps them for the next frame, which is right inside a
    loop of frames; between stretches of work that allocate differently (one video
    encoder closed, the next opened) the kept pages fragment and the heap creeps up."""
    with contextlib.suppress(OSError, AttributeError):
        ctypes.CDLL("libc.so.6").malloc_trim(0)


def export_onnx(unet: UNet, path: str | Path, opset: int = 17) -> Path:
    """Export ``unet`` (BN folded, fp32) to ONNX with a dynamic batch axis, atomically
    (see `synctalk2d.atomic`).

    Uses the TorchScript exporter (``dynamo=False``): the network is static, and it gives
    a plain Conv/Relu/Add graph that onnxruntime fuses and quantizes without surprises.
    """
    model = inference_copy(unet).float().cpu()
    image = torch.rand(1, 6, IMAGE_SIZE, IMAGE_SIZE)
    audio = torch.rand(1, *WINDOW_SHAPES[unet.config.feature_type])
    batch = {0: "batch"}
    path = Path(path)
    with atomic_path(path) as tmp:
        torch.onnx.export(
            model,
            (image, audio),
            tmp,
            input_names=["image", "audio"],
            output_names=["face"],
            dynamic_axes={"image": batch, "audio": batch, "face": batch},
            opset_version=opset,
            dynamo=False,
        )
    return path


def _torch_forward(unet: UNet, precision: str, device: torch.device, compile: bool) -> Forward:
    dtype = _DTYPES[precision]
    model = inference_copy(unet).to(device, dtype, memory_format=torch.channels_last)
    if compile:
        model = _frozen_compile(model)

    def forward(images: torch.Tensor, audio: torch.Tensor | None) -> torch.Tensor:
        images = images.to(device, dtype, memory_format=torch.channels_last)
        return model(images, None if audio is None else audio.to(device, dtype)).float()

    return forward


def _frozen_compile(model: nn.Module) -> Callable[..., torch.Tensor]:
    """`torch.compile` with inductor's freezing: weights become constants, so oneDNN convs
    get pre-packed weights and fused bias/ReLU/residual-add epilogues. Freezing is set
    around every call (it is read when the first call compiles): passed as a
    ``torch.compile`` option it does not reach the conv fusion passes."""
    from torch._inductor import config

    compiled = torch.compile(model, dynamic=False)

    def call(*args: torch.Tensor) -> torch.Tensor:
        with config.patch(freezing=True):
            return compiled(*args)

    return call


def _onnx_forward(unet: UNet, precision: str, device: torch.device, threads: int, samples, onnx_model: str | Path | None) -> Forward:
    import onnxruntime as ort

    with tempfile.TemporaryDirectory() as tmp:
        path = Path(onnx_model) if onnx_model else export_onnx(unet, Path(tmp) / "unet.onnx")
        if precision == "int8":
            path = _quantize_int8(path, samples, Path(tmp))
        options = ort.SessionOptions()
        options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        options.intra_op_num_threads = threads
        providers = ["CPUExecutionProvider"]
        if device.type == "cuda" and "CUDAExecutionProvider" in ort.get_available_providers():
            providers.insert(0, "CUDAExecutionProvider")
        session = ort.InferenceSession(str(path), options, providers=providers)

    def forward(images: torch.Tensor, audio: torch.Tensor) -> torch.Tensor:
        feed = {"image": _numpy32(images), "audio": _numpy32(audio)}
        return torch.from_numpy(session.run(None, feed)[0])

    return forward


def _numpy32(x: np.ndarray | torch.Tensor) -> np.ndarray:
    return np.ascontiguousarray(torch.as_tensor(x).detach().cpu().float().numpy())


def _quantize_int8(path: Path, samples, workdir: Path) -> Path:
    """Static int8 (QDQ, u8 activations, per-channel s8 weights) calibrated on ``samples``,
    written to ``workdir`` (never beside an exported model the user keeps): the activation
    ranges of a lip-sync U-Net depend on real faces, not noise."""
    from onnxruntime.quantization import (
        CalibrationDataReader,
        QuantFormat,
        QuantType,
        quantize_static,
    )
    from onnxruntime.quantization.shape_inference import quant_pre_process

    images, audio = samples

    class Reader(CalibrationDataReader):
        def __init__(self):
            self.feeds = iter({"image": _numpy32(images[i : i + 1]), "audio": _numpy32(audio[i : i + 1])} for i in range(len(images)))

        def get_next(self):
            return next(self.feeds, None)

    prepared, quantized = workdir / "prepared.onnx", workdir / "int8.onnx"
    quant_pre_process(str(path), str(prepared), skip_symbolic_shape=True)
    quantize_static(
        str(prepared),
        str(quantized),
        Reader(),
        quant_format=QuantFormat.QDQ,
        per_channel=True,
        activation_type=QuantType.QUInt8,
        weight_type=QuantType.QInt8,
    )
    return quantized


class UNetRunner:
    """A U-Net ready for inference. Call it with the generator's uint8 arrays, or use
    `predict` for the raw float output.

    On CPU the frames of a batch run in parallel, one per core, each single-threaded
    (``workers``), rather than every op split over all cores: no per-op thread barriers
    (about 200 a frame), each core keeps its own frame in its L2 cache, and a core taken
    by compositing or encoding threads delays one frame instead of stalling every op.
    """

    def __init__(self, forward: Forward, backend: str, precision: str, device: torch.device, workers: int = 1):
        self._forward = forward
        self.backend, self.precision, self.device, self.workers = backend, precision, device, workers
        self._pool = single_threaded_pool(workers) if workers > 1 else None
        self.psnr_db: float | None = None  # measured against fp32 by `from_model` when given samples
        self.rejected: tuple[str, float] | None = None  # (precision, dB) that failed the check

    @property
    def summary(self) -> str:
        """One line for the user: what runs, and how far from fp32 it measured."""
        chosen = f"U-Net on {self.backend} {self.precision} ({self.device.type})"
        if self.rejected:
            precision, db = self.rejected
            return f"{chosen}: {precision} measured {db:.1f} dB PSNR from fp32, below the {MIN_PSNR_DB:.0f} dB rule, so fp32 is used"
        if self.psnr_db is not None:
            return f"{chosen}: {self.psnr_db:.1f} dB PSNR from fp32 on the avatar's own frames"
        return chosen

    @classmethod
    def from_model(
        cls,
        unet: UNet,
        backend: str = "auto",
        precision: str = "auto",
        device: str | torch.device = "cpu",
        threads: int | None = None,
        frame_parallel: bool | None = None,
        compile: bool | None = None,
        samples: tuple[np.ndarray | torch.Tensor, np.ndarray | torch.Tensor] | None = None,
        onnx_model: str | Path | None = None,
    ) -> UNetRunner:
        """The fastest correct runner for ``device`` (see the module docstring).

        ``threads``: CPU cores to use (default: all this process may run on).
        ``frame_parallel`` (CPU): one single-threaded frame per core (default when more
        than one core) instead of intra-op threads (then ``threads`` is passed to
        torch's own thread count: see `tune_process`). ``compile`` (torch): default on CPU, where
        it is measured to win; eager if it fails. ``samples``: real crops and audio windows,
        (N, 6, 320, 320) float in [0, 1] and (N, C, H, W); they calibrate int8 and check
        reduced precision against fp32 (falling back to fp32 below `MIN_PSNR_DB`).
        ``onnx_model`` (onnx): a model `export_onnx` wrote for ``unet`` (``synctalk2d
        export``), run instead of exporting ``unet`` again.
        """
        device = torch.device(device)
        backend, precision = resolve(backend, precision, device)
        if precision == "int8" and samples is None:
            raise UserError("int8 needs calibration samples: from_model(..., samples=(images, audio)) with real crops")
        cores = threads or len(os.sched_getaffinity(0))
        on_cpu = device.type == "cpu"
        frame_parallel = on_cpu and cores > 1 if frame_parallel is None else frame_parallel and on_cpu
        op_threads = 1 if frame_parallel else cores
        compile = backend == "torch" and (on_cpu if compile is None else compile)
        if backend == "onnx":
            forward = _onnx_forward(unet, precision, device, op_threads, samples, onnx_model)
        else:
            forward = _torch_forward(unet, precision, device, compile)
        runner = cls(forward, backend, precision, device, cores if frame_parallel else 1)
        try:
            runner.warm_up(unet.config.feature_type)
        except Exception as error:  # torch.compile needs a working C++ compiler at run time
            if not compile:
                raise
            log.warning("torch.compile failed (%s); running eager", error)
            runner.close()
            return cls.from_model(unet, backend, precision, device, threads, frame_parallel, False, samples, onnx_model)
        if samples is not None and precision != "fp32":
            runner.psnr_db = fidelity_psnr(unet, runner, *samples)
            if runner.psnr_db < MIN_PSNR_DB:
                log.info("%s %s is %.1f dB from fp32 (< %.0f dB): using fp32", backend, precision, runner.psnr_db, MIN_PSNR_DB)
                runner.close()
                fallback = cls.from_model(unet, backend, "fp32", device, threads, frame_parallel, compile, onnx_model=onnx_model)
                fallback.rejected = (precision, runner.psnr_db)
                return fallback
        return runner

    def close(self) -> None:
        """Stop the CPU worker threads (they are idle between calls, so this is optional)."""
        if self._pool:
            self._pool.shutdown()

    def warm_up(self, feature_type: str) -> None:
        """Compile and pick kernels at load time: one frame first (a compile on one
        worker), then one per worker."""
        for batch in (1, self.workers):
            audio = None if feature_type == NO_AUDIO else torch.zeros(batch, *WINDOW_SHAPES[feature_type])
            self.predict(torch.zeros(batch, 6, IMAGE_SIZE, IMAGE_SIZE), audio)

    def predict(self, images: np.ndarray | torch.Tensor, audio: np.ndarray | torch.Tensor | None) -> torch.Tensor:
        """(B, 6, 320, 320) float in [0, 1], (B, C, H, W) audio (None: the compositor) -> (B, 3, 320, 320) float32 on the CPU."""
        return self._run(torch.as_tensor(images), _tensor(audio), _identity, _identity)

    def __call__(self, images: np.ndarray, audio: np.ndarray) -> np.ndarray:
        """The generator's contract: (B, 320, 320, 6) uint8 reference+masked crops, (B, C, H, W)
        audio windows -> (B, 320, 320, 3) uint8 faces."""
        nchw = torch.from_numpy(np.asarray(images)).permute(0, 3, 1, 2)  # a channels_last view, no copy
        return self._run(nchw, _tensor(audio), _from_uint8, _to_uint8).numpy()

    def _run(self, images: torch.Tensor, audio: torch.Tensor | None, prepare: Callable, finish: Callable) -> torch.Tensor:
        """On CPU one frame per model call, in the workers (input and output conversions
        too): a frame's activations mostly stay in cache, a batch's do not (batch 8 is
        slower per frame than batch 1), and `torch.compile` sees a single shape."""

        def run(images: torch.Tensor, audio: torch.Tensor | None) -> torch.Tensor:
            with torch.inference_mode():  # thread-local: workers need their own
                return finish(self._forward(prepare(images), audio).cpu())

        if self.device.type != "cpu":
            return run(images, audio)
        each = self._pool.map if self._pool else map
        frames = images.split(1)
        return torch.cat(list(each(run, frames, [None] * len(frames) if audio is None else audio.split(1))))


def _tensor(x: np.ndarray | torch.Tensor | None) -> torch.Tensor | None:
    return None if x is None else torch.as_tensor(x)


def _identity(x: torch.Tensor) -> torch.Tensor:
    return x


def _from_uint8(images: torch.Tensor) -> torch.Tensor:
    return images.float().div_(255)


def _to_uint8(faces: torch.Tensor) -> torch.Tensor:
    return faces.permute(0, 2, 3, 1).mul(255).round_().clamp_(0, 255).to(torch.uint8)


def single_threaded_pool(workers: int, name: str = "unet") -> ThreadPoolExecutor:
    """Worker threads whose torch ops each run on one thread: for work that is many small
    calls side by side (batches split over workers, live sessions), where intra-op threads
    only wait on each other.

    Under OpenMP a thread keeps its own thread count once it has run torch's lazy thread
    init, but `torch.set_num_threads` also sets the default that new threads start from.
    So every worker sets 1 and initialises while the rest wait, then the caller's count
    is restored (for the main thread and threads started later)."""
    before = torch.get_num_threads()
    started = threading.Barrier(workers + 1)

    def init() -> None:
        torch.set_num_threads(1)
        torch.get_num_threads()  # runs the lazy per-thread init while the default is 1
        started.wait()

    pool = ThreadPoolExecutor(workers, initializer=init, thread_name_prefix=name)
    for _ in range(workers):
        pool.submit(lambda: None)
    started.wait()
    torch.set_num_threads(before)
    return pool


def resolve(backend: str, precision: str, device: torch.device) -> tuple[str, str]:
    """The (backend, precision) that ``"auto"`` stands for on ``device``; an impossible
    pair fails with a sentence a user can act on. int8 implies onnx (torch has no int8 convs)."""
    check_choice("backend", backend, BACKENDS)
    check_choice("precision", precision, PRECISIONS)
    fast_bf16 = device.type == "cpu" and cpu_has_fast_bf16()
    if backend == "auto":
        cpu_onnx = device.type == "cpu" and not fast_bf16 and precision in ("auto", "fp32")
        backend = "onnx" if precision == "int8" or cpu_onnx else "torch"
    if precision == "auto":
        precision = {"cuda": "fp16", "cpu": "bf16" if fast_bf16 and backend == "torch" else "fp32"}.get(device.type, "fp32")
    if backend == "onnx" and precision not in ("fp32", "int8"):
        raise UserError(f"onnxruntime has no {precision} convolutions on this machine: use --precision fp32 or int8 with --backend onnx")
    if backend == "torch" and precision == "int8":
        raise UserError("int8 runs on onnxruntime only: use --backend onnx (or auto) with --precision int8")
    return backend, precision


def fidelity_psnr(unet: UNet, runner: UNetRunner, images: np.ndarray | torch.Tensor, audio: np.ndarray | torch.Tensor) -> float:
    """PSNR (dB) of ``runner``'s output against ``unet`` in eager fp32 on the same inputs:
    the quality rule for reduced precision is >= `MIN_PSNR_DB` on real face crops."""
    images, audio = torch.as_tensor(images).float(), None if audio is None else torch.as_tensor(audio).float()
    with torch.inference_mode():
        reference = copy.deepcopy(unet).eval().float().cpu()(images, audio)
    return psnr(runner.predict(images, audio).numpy(), reference.numpy(), peak=1.0)
