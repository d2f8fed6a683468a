"""Which device to run on, and what it does fast: shared by training and inference."""

from __future__ import annotations

import torch

from synctalk2d.errors import UserError


def pick_device(name: str | None = None) -> torch.device:
    """``name`` ("cuda", "cuda:1", "mps", "cpu"), or the best available when None/"auto":
    CUDA, then Apple's MPS, then the CPU."""
    if name in (None, "auto"):
        name = "cuda" if torch.cuda.is_available() else "mps" if torch.backends.mps.is_available() else "cpu"
    if name.startswith("cuda") and not torch.cuda.is_available():
        raise UserError(f"--device {name} was asked for but no CUDA GPU is available")
    if name == "mps" and not torch.backends.mps.is_available():
        raise UserError("--device mps was asked for but MPS is not available")
    try:
        return torch.device(name)
    except RuntimeError:
        raise UserError(f"--device must be cuda, mps or cpu, not {name!r}") from None


def cpu_has_fast_bf16() -> bool:
    """AMX or AVX512-BF16: bf16 convs beat fp32. Without them oneDNN emulates bf16 (slower)."""
    cpu = torch.cpu
    return any(getattr(cpu, name, lambda: False)() for name in ("_is_amx_tile_supported", "_is_avx512_bf16_supported"))
