"""Where tensors run: one choice of device (and of inference precision) for every caller.

`auto` is the machine's accelerator as torch knows it (`torch.accelerator`: CUDA, ROCm,
MPS, XPU, ...), else the CPU. Inference, the Gatys tools and the benchmarks all ask here;
training leaves the choice to Lightning's `trainer.accelerator`.
"""

from __future__ import annotations

import os

import torch

from .errors import UserError


class DeviceError(UserError, ValueError):
    """A device was asked for that this machine does not have."""


def accelerator() -> torch.device | None:
    """The available accelerator, or None (older torch without `torch.accelerator`: CUDA, then MPS)."""
    api = getattr(torch, "accelerator", None)
    if api is not None and hasattr(api, "current_accelerator"):
        return api.current_accelerator() if api.is_available() else None
    if torch.cuda.is_available():  # pragma: no cover - torch < 2.6
        return torch.device("cuda")
    mps = getattr(torch.backends, "mps", None)  # pragma: no cover
    return torch.device("mps") if mps is not None and mps.is_available() else None


def pick_device(name: str | torch.device | None = "auto") -> torch.device:
    """`auto` (or None): the accelerator if there is one, else the CPU. A named device is
    checked, so `device=cuda` on a machine without CUDA is a clear error, not a crash later."""
    if name in (None, "auto"):
        return accelerator() or torch.device("cpu")
    try:
        device = torch.device(name)
    except (RuntimeError, TypeError):
        raise DeviceError(f"unknown device {name!r}; use auto, cpu, cuda, cuda:N or mps") from None
    if device.type == "cuda" and not torch.cuda.is_available():
        raise DeviceError(f"device={name} but no CUDA device is available; use device=auto or device=cpu")
    return device


def synchronize(device: torch.device) -> None:
    """Wait for the device's queued work (timings must not stop at an asynchronous launch)."""
    if device.type == "cuda":
        torch.cuda.synchronize(device)
    elif device.type != "cpu" and hasattr(torch, "accelerator"):
        torch.accelerator.synchronize()


_DTYPES = {"fp32": torch.float32, "float32": torch.float32, "fp16": torch.float16, "float16": torch.float16,
           "half": torch.float16, "bf16": torch.bfloat16, "bfloat16": torch.bfloat16}


def precision_name(dtype: torch.dtype) -> str:
    """A dtype in the `precision=` option's words (fp32, fp16, bf16), for messages."""
    return next((name for name in ("fp32", "fp16", "bf16") if _DTYPES[name] == dtype), str(dtype).replace("torch.", ""))


#: oneDNN ISA caps (ONEDNN_MAX_CPU_ISA) below AVX512_CORE_BF16: no native bf16 convolutions under them
_NO_BF16_ISAS = {"SSE41", "AVX", "AVX2", "AVX2_VNNI", "AVX2_VNNI_2", "AVX512_CORE", "AVX512_CORE_VNNI"}


def cpu_has_fast_bf16() -> bool:
    """True where oneDNN runs bf16 convolutions natively (AMX or AVX512-BF16); elsewhere CPU bf16
    is emulated and slower. A cap below that (`ONEDNN_MAX_CPU_ISA=AVX2`: how an AVX2-only CPU
    is emulated on a newer one, docs/speed.md) counts as none."""
    cap = (os.environ.get("ONEDNN_MAX_CPU_ISA") or os.environ.get("DNNL_MAX_CPU_ISA") or "").strip().upper()
    if cap in _NO_BF16_ISAS:
        return False
    cpu = getattr(torch, "cpu", None)
    try:
        return bool(cpu._is_amx_tile_supported() or cpu._is_avx512_bf16_supported())
    except AttributeError:  # pragma: no cover - older torch
        return False


def inference_dtype(dtype: str | torch.dtype | None, device: torch.device) -> torch.dtype:
    """auto: bf16 on a CPU with native bf16 (AMX / AVX512-BF16: the real-time path 1.5x faster,
    outputs within 1 grey level at the 99th percentile), else fp32: on an H100 at batch 1 fp32
    (TF32 convolutions) ran 640x480 to 1080p faster than fp16 or bf16 (4.3 vs 5.3 ms at 640x480),
    and an AVX2-only CPU emulates bf16 (docs/speed.md)."""
    if isinstance(dtype, torch.dtype):
        return dtype
    if dtype in (None, "auto"):
        return torch.bfloat16 if device.type == "cpu" and cpu_has_fast_bf16() else torch.float32
    try:
        return _DTYPES[str(dtype).lower()]
    except KeyError:
        raise ValueError(f"unknown precision {dtype!r}; use auto, fp32, fp16 or bf16") from None
