"""Benchmarks behind `scripts/benchmark.py mode=...`: each module's `run(cfg)` prints its table.

Tools of this repository, not library code: they import `stylenet` and time its real code
paths (the training step of `StyleTransferModule`, the training loader, `Stylizer`).
"""

from stylenet.commands.app import CONFIG_DIR


def model_config(name: str) -> dict:
    """configs/model/<name>.yaml: the transformation network's arguments, as training reads them."""
    from omegaconf import OmegaConf

    path = CONFIG_DIR / "model" / f"{name}.yaml"
    if not path.is_file():
        from stylenet.errors import UserError

        raise UserError(f"unknown model {name!r}; configs/model has {sorted(p.stem for p in path.parent.glob('*.yaml'))}")
    return OmegaConf.to_container(OmegaConf.load(path))


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
