"""Benchmarks behind `stylenet-benchmark mode=...` (`python scripts/benchmark.py mode=...`): each
module's `run(cfg)` prints its table.

They ship with the package and time its real code paths (the training step of
`StyleTransferModule`, the training loader, `Stylizer`). Their options are the config group
`stylenet/configs/tools/mode/`; what they take from the training's own config tree (a
network's model, speed or loss options, the data options, a style preset) is composed by
Hydra from `stylenet/configs/` (`training_group`), never read from YAML by hand.
"""

from __future__ import annotations


def training_group(group: str, option: str, values=None) -> dict:
    """`stylenet/configs/<group>/<option>.yaml` as `train.py <group>=<option>` composes it (Hydra),
    with `values` merged on top, resolved: `training_group("model", "slim")`. An unknown
    option is a UserError listing the group's options."""
    from omegaconf import OmegaConf, open_dict

    from stylenet.commands.app import compose

    cfg = compose([f"{group}={option}"])
    if values:
        with open_dict(cfg):
            cfg[group] = OmegaConf.merge(cfg[group], values)
    return OmegaConf.to_container(cfg[group], resolve=True)  # its interpolations (loss.layers.<network>) resolved in place


def model_config(name: str) -> dict:
    """The transformation network's arguments of `model=<name>`, as training reads them."""
    return training_group("model", name)


CPU_FLAGS = ("avx2", "avx512f", "avx512_bf16", "amx_tile", "amx_bf16")


def environment() -> str:
    """Where a benchmark ran, printed above its table: CPU model and the flags that decide its
    speed (AVX2 / AVX-512 / native bf16 via AVX512-BF16 or AMX), oneDNN's ISA cap if one is set
    (`ONEDNN_MAX_CPU_ISA=AVX2` emulates an AVX2-only CPU), torch threads, the GPU."""
    import os
    import platform

    import torch

    model, flags = platform.processor() or platform.machine(), set()
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                key, _, value = line.partition(":")
                if key.strip() == "model name" and model in ("", platform.machine(), platform.processor()):
                    model = value.strip()
                elif key.strip() == "flags":
                    flags = set(value.split())
                    break
    except OSError:
        pass
    present = [f for f in CPU_FLAGS if f in flags] or ["flags unknown"]
    cap = os.environ.get("ONEDNN_MAX_CPU_ISA")
    capability = torch.backends.cpu.get_cpu_capability() if hasattr(torch.backends, "cpu") else "?"
    gpu = torch.cuda.get_device_name(0) if torch.cuda.is_available() else "none"
    return (f"where: CPU {model} ({' '.join(present)}; torch kernels {capability}"
            f"{f'; oneDNN capped at {cap}' if cap else ''}), {os.cpu_count()} cores, torch {torch.__version__} "
            f"with {torch.get_num_threads()} threads; GPU {gpu}")
