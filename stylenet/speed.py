"""Throughput switches (`configs/speed/*.yaml`, docs/speed.md): what `auto` means per device,
and how a training step is run with them (memory format, bf16, `torch.compile` with an eager
fallback). They change how the step is computed, never what it computes (bf16 aside): the
objective itself is `StyleTransferModule.compute_losses`.
"""

from __future__ import annotations

import contextlib
import warnings
from collections.abc import Callable, Mapping
from dataclasses import dataclass, replace

import torch

from .allocator import keep_freed_memory
from .device import cpu_has_fast_bf16

#: on/off switches; each may also be `auto` (decided per device by `resolve_speed`)
SPEED_SWITCHES = ("single_pass", "truncate_content", "channels_last", "autocast", "compile", "cudnn_benchmark",
                  "lossnet_half", "phase_upsample", "narrow_conv", "keep_host_memory")


def resolve_speed(speed: Mapping | None, device: torch.device | str = "cpu") -> dict:
    """The speed switches with every `auto` decided for `device`; a missing switch is off.

    `speed={}` is therefore the classic recipe (configs/speed/reference.yaml). What `auto`
    means, measured on the hardware (docs/speed.md): autocast = bf16 on a bf16 GPU and on
    CPUs with native bf16; channels_last = on a GPU and with that bf16 on a CPU (in fp32 on a
    CPU NCHW measured faster, with phase_upsample); lossnet_half = on a bf16 GPU; compile =
    on a GPU only (Inductor's first-step compile costs minutes on a small CPU); narrow_conv and
    keep_host_memory = on a CPU (on a GPU not measured yet); the rest: on.
    """
    speed = dict(speed or {})  # flat: a DictConfig converts key by key
    kind = device.type if isinstance(device, torch.device) else str(device).split(":")[0]
    cuda = kind == "cuda" and torch.cuda.is_available()
    bf16 = (cuda and torch.cuda.is_bf16_supported()) or (kind == "cpu" and cpu_has_fast_bf16())
    auto = {"single_pass": False, "truncate_content": True, "channels_last": cuda or (kind == "cpu" and bf16),
            "autocast": bf16, "compile": cuda, "cudnn_benchmark": cuda, "lossnet_half": cuda and bf16,
            "phase_upsample": True, "narrow_conv": kind == "cpu", "keep_host_memory": kind == "cpu"}
    resolved = {}
    for key in SPEED_SWITCHES:
        value = speed.get(key, False)
        if isinstance(value, str) and value.lower() in ("true", "false"):
            value = value.lower() == "true"
        resolved[key] = auto[key] if value in ("auto", None) and key in speed else bool(value)
    resolved["compile_backend"] = speed.get("compile_backend") or "inductor"
    resolved["compile_mode"] = speed.get("compile_mode") or None
    return resolved


def resolve_precision(trainer_cfg, speed_cfg) -> str:
    """trainer.precision wins; else speed.autocast (auto: bf16-mixed on a bf16 GPU or a CPU with native bf16)."""
    if trainer_cfg.get("precision") not in (None, "auto"):
        return str(trainer_cfg.get("precision"))
    accelerator = str(trainer_cfg.get("accelerator") or "auto")
    if accelerator in ("auto", "gpu"):
        accelerator = "cuda" if torch.cuda.is_available() else ("cpu" if accelerator == "auto" else "cuda")
    autocast = resolve_speed({"autocast": speed_cfg.get("autocast", False)}, accelerator)["autocast"]
    return "bf16-mixed" if autocast else "32-true"


@dataclass
class StepPlan:
    """How a training step runs on one kind of device: the resolved switches and the callables
    to run each network with. Compiled callables are `torch.compile` wrappers made *beside*
    the module's networks, never in place: checkpoints keep their keys, and falling back to
    eager is just using the module's own networks again."""

    device: str
    switches: dict
    transformer: Callable
    lossnet: Callable
    content_pass: Callable  # the (no-grad) content batch → its features at the content layer
    compiled: bool = False


def eager_plan(module, device: torch.device | str) -> StepPlan:
    """The module's own networks with the switches resolved for `device`; changes nothing.
    (`module.network`: the transformer, or with train_only=norm the transformer with the new
    styles' γ, β spliced in.)"""
    kind = torch.device(device).type
    switches = resolve_speed(module.hparams.speed, kind)
    content_pass = module.content_features if switches["truncate_content"] else module.lossnet
    return StepPlan(kind, switches, module.network, module.lossnet, content_pass)


def prepare(module, step_context: Callable | None = None) -> StepPlan:
    """Apply the switches for the module's current device and return its step plan.

    Memory format and the loss network's dtype are set on the module. With `compile`, both
    networks and the content pass are compiled and one trial step on a batch of the
    training shape runs at once, inside `step_context()` (the trainer's autocast), so that
    a compiler failure falls back to eager with a warning instead of failing the run at its
    first step.
    """
    plan = eager_plan(module, module.device)
    speed = plan.switches
    fmt = torch.channels_last if speed["channels_last"] else torch.contiguous_format
    module.transformer.to(memory_format=fmt)
    module.transformer.use_phase_upsample(speed["phase_upsample"])
    module.transformer.use_narrow_conv(speed["narrow_conv"])
    if speed["keep_host_memory"]:
        keep_freed_memory()  # process-wide, so never switched back off here
    module.lossnet.to(memory_format=fmt)
    module.lossnet.to(torch.bfloat16 if speed["lossnet_half"] else torch.float32)
    if not speed["compile"]:
        return plan
    # static shapes: training batches all share one shape (drop_last)
    options = {"backend": speed["compile_backend"], "mode": speed["compile_mode"], "dynamic": False}
    try:
        lossnet = torch.compile(module.lossnet, **options)
        compiled = replace(plan, transformer=torch.compile(module.network, **options), lossnet=lossnet,
                           content_pass=torch.compile(plan.content_pass, **options) if speed["truncate_content"] else lossnet,
                           compiled=True)
        trial_step(module, compiled, step_context)
        return compiled
    except Exception as exc:  # noqa: BLE001 - any compiler/backend failure means: run eager
        first = (str(exc).strip().splitlines() or [exc.__class__.__name__])[0][:300]
        warnings.warn(
            f"torch.compile failed ({exc.__class__.__name__}: {first}); training continues without "
            "compilation (set speed.compile=false to skip the attempt)", RuntimeWarning, stacklevel=2,
        )
        return plan


def trial_step(module, plan: StepPlan, step_context: Callable | None = None) -> None:
    """One forward+backward with `plan` on a random batch of the training shape: compiles now,
    changes nothing (no optimiser step, gradients dropped, the global RNG untouched)."""
    if not module.has_style:
        return  # no style yet: compilation errors (if any) surface at the first step
    size = int(module.hparams.image_size)
    generator = torch.Generator().manual_seed(0)
    batch = torch.rand(int(module.hparams.batch_size), 3, size, size, generator=generator).to(module.device)
    was_training = module.training
    module.train()
    try:
        with torch.enable_grad(), (step_context() if step_context else contextlib.nullcontext()):
            loss = module.compute_losses(batch, plan)["loss"]
        loss.backward()
    finally:
        for p in module.parameters():
            p.grad = None
        module.train(was_training)
