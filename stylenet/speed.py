"""Throughput switches (`configs/speed/*.yaml`, docs/speed.md): what `auto` means per device.

They change how a training step is computed, never what it computes (bf16 aside).
"""

from __future__ import annotations

from collections.abc import Mapping

import torch

#: on/off switches; each may also be `auto` (decided per device by `resolve_speed`)
SPEED_SWITCHES = ("single_pass", "truncate_content", "channels_last", "autocast", "compile", "cudnn_benchmark", "lossnet_half")


def cpu_has_fast_bf16() -> bool:
    """True where oneDNN runs bf16 convolutions natively (AMX or AVX512-BF16); elsewhere CPU bf16 is emulated and slower."""
    cpu = getattr(torch, "cpu", None)
    try:
        return bool(cpu._is_amx_tile_supported() or cpu._is_avx512_bf16_supported())
    except AttributeError:  # pragma: no cover - older torch
        return False


def resolve_speed(speed: Mapping | None, device: torch.device | str = "cpu") -> dict:
    """The speed switches with every `auto` decided for `device`; a missing switch is off.

    `speed={}` is therefore the classic recipe (configs/speed/reference.yaml). What `auto`
    means, measured on the hardware (docs/speed.md): autocast = bf16 on a bf16 GPU and on
    CPUs with native bf16; lossnet_half = on a bf16 GPU; compile = on a GPU only
    (Inductor's first-step compile costs minutes on a small CPU); the rest: on.
    """
    speed = dict(speed or {})  # flat: a DictConfig converts key by key
    kind = device.type if isinstance(device, torch.device) else str(device).split(":")[0]
    cuda = kind == "cuda" and torch.cuda.is_available()
    bf16 = (cuda and torch.cuda.is_bf16_supported()) or (kind == "cpu" and cpu_has_fast_bf16())
    auto = {"single_pass": False, "truncate_content": True, "channels_last": kind in ("cuda", "cpu"),
            "autocast": bf16, "compile": cuda, "cudnn_benchmark": cuda, "lossnet_half": cuda and bf16}
    resolved = {}
    for key in SPEED_SWITCHES:
        value = speed.get(key, False)
        if isinstance(value, str) and value.lower() in ("true", "false"):
            value = value.lower() == "true"
        resolved[key] = auto[key] if value in ("auto", None) and key in speed else bool(value)
    resolved["compile_backend"] = speed.get("compile_backend") or "inductor"
    resolved["compile_mode"] = speed.get("compile_mode") or None
    return resolved


def is_compiled(module: torch.nn.Module) -> bool:
    """Whether `module.compile()` is in effect (nn.Module.compile keeps state_dict keys)."""
    return getattr(module, "_compiled_call_impl", None) is not None


def _uncompile(module: torch.nn.Module) -> None:
    module._compiled_call_impl = None  # undoes nn.Module.compile(): calls go to the eager forward again
