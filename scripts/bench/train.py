"""`python scripts/benchmark.py mode=train`: training throughput, `reference` vs `fast`.

For each batch size both configurations are built side by side (configs/speed/*.yaml,
Johnson network, VGG16 with random weights by default: weights change no timing), warmed
up (torch.compile happens there), then timed step by step *alternately* — reference,
fast, reference, fast … — so that load from other processes on a shared machine hits both
alike; the table shows medians.

One timed step is exactly what Lightning runs per batch under automatic optimisation:
the host batch copied to the device (non-blocking from pinned memory on a GPU),
`module.compute_losses` inside the autocast context Lightning's `bf16-mixed` plugin
uses (`torch.autocast(device, bfloat16, cache_enabled=False)`), `zero_grad`,
`backward`, `Adam.step`; and the module is prepared by the same `setup_speed` that its
`on_fit_start` calls. It is called directly rather than through a `Trainer` so that every
step can be timed alone (CUDA-synchronised) without the trainer's per-step logging and
progress bar, and so that this runs where only torch, torchvision and Lightning are
installed (no Hydra, OmegaConf, datasets, wandb).

Also printed: the FLOPs of one training step (counted with FlopCounterMode on an eager
fp32 copy at batch 1; every term scales linearly with the batch), the achieved FLOP
rate, and on a GPU its fraction of the device's measured dense bf16 matmul rate.
"""

from __future__ import annotations

import contextlib
import gc
import statistics
import sys
import time
import weakref
from pathlib import Path

import torch
import yaml

from ..cli import parse_overrides

CONFIGS = Path(__file__).resolve().parents[2] / "configs"

USAGE = """
python scripts/benchmark.py mode=train [batch_sizes=[4,8,16,32]] [steps=5] [size=256] [network=vgg16] ...

Images/s, ms/step (median of `steps` timed steps after `warmup`), and peak memory of one
training step at size×size px, for each batch size and each configuration in `configs`
(names of configs/speed/*.yaml). `fast={compile: false}` overrides switches of `fast`.
"""

DEFAULTS = {
    "batch_sizes": [4, 8, 16, 32],
    "steps": 5,                    # timed steps per configuration and batch size (median reported)
    "warmup": 2,                   # untimed steps first (torch.compile and cuDNN autotuning happen here)
    "size": 256,                   # training crop, px
    "network": "vgg16",            # loss network: vgg16 | vgg19 | squeezenet1_1
    "weights": None,               # loss-network weights (null = random: same speed, no download)
    "model": "johnson",            # configs/model/<name>.yaml
    "configs": ["reference", "fast"],
    "fast": {},                    # switch overrides for `fast`, e.g. fast={compile: false}
    "reference": {},               # switch overrides for `reference`
    "device": "auto",              # auto | cpu | cuda | cuda:N
    "threads": None,               # torch.set_num_threads (CPU); null = torch's default
    "flops": True,                 # count the FLOPs of one step (FlopCounterMode, eager, batch 1)
    "memory": True,                # measure peak memory of one step per configuration
    "matmul_size": 8192,           # n of the n×n×n bf16 matmul that measures the GPU's rate
    "seed": 0,
}

MIB = 1024.0 * 1024.0


# -- configuration ---------------------------------------------------------------------------
def _yaml(path: Path) -> dict:
    with open(path) as f:
        return yaml.safe_load(f) or {}


def speed_config(name: str, overrides: dict | None = None) -> dict:
    path = CONFIGS / "speed" / f"{name}.yaml"
    if not path.is_file():
        options = sorted(p.stem for p in (CONFIGS / "speed").glob("*.yaml"))
        raise ValueError(f"unknown speed configuration {name!r}; configs/speed has {options}")
    speed = _yaml(path)
    speed.update(overrides or {})
    return speed


def loss_config(network: str, weights) -> dict:
    table = _yaml(CONFIGS / "loss" / "perceptual.yaml")["layers"]
    if network not in table:
        raise ValueError(f"unknown network {network!r}; configs/loss/perceptual.yaml has {sorted(table)}")
    layers = table[network]
    return {"network": network, "weights": weights, "content_layer": layers["content"],
            "style_layers": dict(layers["style"]), "content_weight": 1.0,
            "style_weight": float(layers["style_weight"]), "tv_weight": float(layers["tv_weight"])}


def model_config(name: str) -> dict:
    path = CONFIGS / "model" / f"{name}.yaml"
    if not path.is_file():
        raise ValueError(f"unknown model {name!r}; configs/model has {sorted(p.stem for p in path.parent.glob('*.yaml'))}")
    return _yaml(path)


def pick_device(name: str) -> torch.device:
    if name in (None, "auto"):
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    device = torch.device(name)
    if device.type == "cuda" and not torch.cuda.is_available():
        raise ValueError("device=cuda but no CUDA device is available")
    return device


def autocast_context(device: torch.device, on: bool):
    """What Lightning's `bf16-mixed` precision plugin wraps each training step in."""
    if not on:
        return contextlib.nullcontext()
    return torch.autocast(device.type, dtype=torch.bfloat16, cache_enabled=False)


# -- memory ------------------------------------------------------------------------------------
class _CPUPeak:
    """Peak bytes of tensor storages allocated (and still alive) while active: CPU's max_memory_allocated.

    Counts what goes through the dispatcher (every tensor of an eager step), not allocator
    caches or oneDNN scratch space.
    """

    def __init__(self):
        from torch.utils._python_dispatch import TorchDispatchMode

        tracker = self

        class Mode(TorchDispatchMode):
            def __torch_dispatch__(self, func, types, args=(), kwargs=None):
                out = func(*args, **(kwargs or {}))
                tracker._see(out)
                return out

        self.mode, self.live, self.current, self.peak = Mode(), {}, 0, 0

    def _see(self, out) -> None:
        from torch.utils._pytree import tree_leaves

        for t in tree_leaves(out):
            if not isinstance(t, torch.Tensor) or t.device.type != "cpu":
                continue
            storage = t.untyped_storage()
            key = id(storage) if storage.data_ptr() == 0 else storage.data_ptr()
            if key in self.live:
                continue
            nbytes = storage.nbytes()
            self.live[key] = nbytes
            self.current += nbytes
            self.peak = max(self.peak, self.current)
            try:
                weakref.finalize(storage, self._free, key)
            except TypeError:  # pragma: no cover - storage not weak-referenceable: count it as kept
                pass

    def _free(self, key) -> None:
        self.current -= self.live.pop(key, 0)

    def __enter__(self):
        self.mode.__enter__()
        return self

    def __exit__(self, *exc):
        return self.mode.__exit__(*exc)


def _tensor_bytes(tensors) -> int:
    seen, total = set(), 0
    for t in tensors:
        if isinstance(t, torch.Tensor):
            s = t.untyped_storage()
            if s.data_ptr() not in seen:
                seen.add(s.data_ptr())
                total += s.nbytes()
    return total


# -- one configuration at one batch size ----------------------------------------------------
class Run:
    """A module, its optimiser and a host batch, stepping exactly as Lightning would."""

    def __init__(self, name: str, speed: dict, args: dict, batch: int, device: torch.device, style: torch.Tensor):
        from ..module import StyleTransferModule

        self.name, self.batch, self.device = name, batch, device
        torch.manual_seed(args["seed"])
        self.module = StyleTransferModule(
            model=model_config(args["model"]), loss=loss_config(args["network"], args["weights"]),
            optim={"lr": 1e-3, "scale_lr": "none"}, speed=speed, style_name="bench", style_image=style,
            batch_size=batch, image_size=args["size"],
        ).to(device)
        self.switches = self.module.speed_switches(device)
        self._cudnn = bool(self.switches["cudnn_benchmark"])
        torch.backends.cudnn.benchmark = self._cudnn
        with warnings_to_stderr():
            self.module.setup_speed(step_context=lambda: autocast_context(device, self.switches["autocast"]))
        self.module.train()
        self.optimizer = self.module.configure_optimizers()
        g = torch.Generator().manual_seed(args["seed"])
        self.host = torch.rand(batch, 3, args["size"], args["size"], generator=g)
        if device.type == "cuda":
            self.host = self.host.pin_memory()
        self.times: list[float] = []
        self.cpu_times: list[float] = []
        self.peak_bytes: int | None = None

    def step(self) -> float:
        torch.backends.cudnn.benchmark = self._cudnn  # a global flag: each configuration sets its own
        x = self.host.to(self.device, non_blocking=True)
        with autocast_context(self.device, self.switches["autocast"]):
            loss = self.module.compute_losses(x)["loss"]
        self.optimizer.zero_grad(set_to_none=True)
        loss.backward()
        self.optimizer.step()
        return loss

    def timed_step(self) -> None:
        sync = torch.cuda.synchronize if self.device.type == "cuda" else (lambda: None)
        sync()
        start, cpu = time.perf_counter(), time.process_time()
        self.step()
        sync()
        self.times.append(time.perf_counter() - start)
        self.cpu_times.append(time.process_time() - cpu)

    def resident_bytes(self) -> int:
        state = [v for s in self.optimizer.state.values() for v in s.values()]
        params = list(self.module.parameters())
        grads = [p.grad for p in params if p.grad is not None]
        return _tensor_bytes([*params, *self.module.buffers(), *grads, *state])

    def measure_memory(self) -> None:
        """Peak bytes of one step: this run's resident tensors plus what the step allocates on top."""
        own = self.resident_bytes()
        if self.device.type == "cuda":
            torch.cuda.synchronize()
            before = torch.cuda.memory_allocated(self.device)
            torch.cuda.reset_peak_memory_stats(self.device)
            self.step()
            torch.cuda.synchronize()
            self.peak_bytes = own + torch.cuda.max_memory_allocated(self.device) - before
        else:
            tracker = _CPUPeak()
            with tracker:
                self.step()
            self.peak_bytes = own + tracker.peak

    @property
    def median_s(self) -> float:
        return statistics.median(self.times)


@contextlib.contextmanager
def warnings_to_stderr():
    import warnings

    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        yield
    for w in caught:
        if issubclass(w.category, RuntimeWarning) or "compile" in str(w.message):
            print(f"warning: {w.message}", file=sys.stderr)


# -- FLOPs and the device's bf16 rate -------------------------------------------------------
def count_step_flops(speed: dict, args: dict, style: torch.Tensor) -> dict[str, int]:
    """FLOPs of one training step at batch 1, by part (eager fp32 on CPU: the count is device-free)."""
    from torch.utils.flop_counter import FlopCounterMode

    from ..module import StyleTransferModule

    speed = {**speed, "compile": False, "autocast": False, "lossnet_half": False}
    module = StyleTransferModule(
        model=model_config(args["model"]), loss=loss_config(args["network"], args["weights"]),
        optim={"lr": 1e-3}, speed=speed, style_image=style, batch_size=1, image_size=args["size"],
    )
    x = torch.rand(1, 3, args["size"], args["size"])
    with FlopCounterMode(display=False) as counter:
        module.transformer(x)
    transformer_fwd = counter.get_total_flops()
    with FlopCounterMode(display=False) as counter:
        loss = module.compute_losses(x)["loss"]
    forward = counter.get_total_flops()
    with FlopCounterMode(display=False) as counter:
        loss.backward()
    backward = counter.get_total_flops()
    return {"transformer_fwd": transformer_fwd, "lossnet_fwd": forward - transformer_fwd,
            "backward": backward, "total": forward + backward}


def measured_bf16_matmul_flops(device: torch.device, n: int = 8192, iters: int = 20) -> float:
    """Dense bf16 matmul rate of the device in FLOP/s (n×n×n, after warm-up): the achievable peak."""
    a = torch.randn(n, n, device=device, dtype=torch.bfloat16)
    b = torch.randn(n, n, device=device, dtype=torch.bfloat16)
    for _ in range(3):
        a @ b
    torch.cuda.synchronize(device)
    start = time.perf_counter()
    for _ in range(iters):
        a @ b
    torch.cuda.synchronize(device)
    return 2.0 * n**3 * iters / (time.perf_counter() - start)


# -- the benchmark ------------------------------------------------------------------------------
def _fmt_switches(switches: dict) -> str:
    return " ".join(f"{k}={'on' if v is True else 'off' if v is False else v}" for k, v in switches.items()
                    if k != "compile_mode" or v)


def main(argv: list[str]) -> None:
    args = parse_overrides(argv, DEFAULTS, usage=USAGE)
    batch_sizes = [int(b) for b in (args["batch_sizes"] if isinstance(args["batch_sizes"], list) else [args["batch_sizes"]])]
    if args["threads"]:
        torch.set_num_threads(int(args["threads"]))
    device = pick_device(args["device"])
    steps, warmup, size = max(1, int(args["steps"])), max(0, int(args["warmup"])), int(args["size"])
    names = list(args["configs"])
    speeds = {n: speed_config(n, args.get(n) if isinstance(args.get(n), dict) else None) for n in names}
    style = torch.rand(1, 3, size, size, generator=torch.Generator().manual_seed(1))

    if device.type == "cuda":
        gpu = f"{torch.cuda.get_device_name(device)}"
    else:
        gpu = "n/a (no GPU)"
    print(f"# training throughput: {args['model']} transformer, {args['network']} loss network "
          f"(weights={args['weights']}), {size}x{size} px")
    print(f"# device: {device} ({gpu if device.type == 'cuda' else f'{torch.get_num_threads()} CPU thread(s)'}); "
          f"torch {torch.__version__}; GPU: {gpu}")
    print(f"# {warmup} warm-up + {steps} timed steps per row, configurations alternated step by step; "
          "medians (shared machines are noisy: compare ratios within one run)")
    from ..speed import resolve_speed

    for n in names:
        print(f"# {n}: {_fmt_switches(resolve_speed(speeds[n], device))}")

    flops: dict[str, dict[str, int]] = {}
    if args["flops"]:
        for n in names:
            flops[n] = count_step_flops(speeds[n], args, style)
        print("# FLOPs of one training step per image (x batch for a step): "
              "transformer fwd+bwd, loss network fwd (content + output batch) and bwd to the input")
        for n, f in flops.items():
            print(f"#   {n}: {f['total'] / 1e9:.1f} GFLOP = transformer fwd {f['transformer_fwd'] / 1e9:.1f} "
                  f"+ loss network fwd (+Grams) {f['lossnet_fwd'] / 1e9:.1f} + backward (transformer + loss network "
                  f"to input) {f['backward'] / 1e9:.1f}")
    peak_rate = None
    if device.type == "cuda":
        peak_rate = measured_bf16_matmul_flops(device, int(args["matmul_size"]))
        print(f"# measured dense bf16 matmul rate: {peak_rate / 1e12:.0f} TFLOP/s ({args['matmul_size']}^3)")
    else:
        print("# measured dense bf16 matmul rate: n/a (no GPU)")

    print("# ms/step: median wall time; min ms: fastest step; cpu ms: median process CPU time per step (all threads;"
          " less affected than wall time by other processes); peak MiB: this configuration's tensors at the step's peak")
    header = (f"{'config':<10} {'batch':>5} {'images/s':>9} {'ms/step':>9} {'min ms':>8} {'cpu ms':>8} {'peak MiB':>9} "
              f"{'GFLOP/step':>10} {'TFLOP/s':>8} {'bf16 frac':>12}")
    print(header)
    print("-" * len(header))
    results: dict[tuple[str, int], float] = {}
    for batch in batch_sizes:
        runs: list[Run] = []
        try:
            for n in names:
                runs.append(Run(n, speeds[n], args, batch, device, style))
            for run in runs:
                for _ in range(warmup):
                    run.step()
            for _ in range(steps):
                for run in runs:
                    run.timed_step()
            if args["memory"]:
                for run in runs:
                    run.measure_memory()
        except torch.OutOfMemoryError:
            print(f"{'(all)':<10} {batch:>5} {'out of memory':>9}")
            del runs
            gc.collect()
            torch.cuda.empty_cache()
            continue
        for run in runs:
            sec = run.median_s
            ips = batch / sec
            results[(run.name, batch)] = ips
            mem = f"{run.peak_bytes / MIB:.0f}" if run.peak_bytes is not None else "n/a"
            f = flops.get(run.name)
            gflop = f"{f['total'] * batch / 1e9:.0f}" if f else "n/a"
            rate = f["total"] * batch / sec if f else None
            tflops = f"{rate / 1e12:.3f}" if rate is not None else "n/a"
            frac = f"{rate / peak_rate:.1%}" if (rate is not None and peak_rate) else "n/a (no GPU)" if device.type != "cuda" else "n/a"
            cpu_ms = statistics.median(run.cpu_times) * 1e3
            print(f"{run.name:<10} {batch:>5} {ips:>9.2f} {sec * 1e3:>9.1f} {min(run.times) * 1e3:>8.1f} {cpu_ms:>8.0f} {mem:>9} "
                  f"{gflop:>10} {tflops:>8} {frac:>12}", flush=True)
        del runs
        gc.collect()
        if device.type == "cuda":
            torch.cuda.empty_cache()

    if "fast" in names and "reference" in names:
        done = [b for b in batch_sizes if ("fast", b) in results and ("reference", b) in results]
        at = 4 if 4 in done else (min(done) if done else 4)
        if done:
            ratio = results[("fast", at)] / results[("reference", at)]
            print(f"fast/reference images/s ratio at batch {at}: {ratio:.2f}")
        else:
            print(f"fast/reference images/s ratio at batch {at}: n/a")
