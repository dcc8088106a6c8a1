"""`stylenet-benchmark mode=train` (`python scripts/benchmark.py mode=train`): training throughput, `reference` vs `fast`.

For each batch size both configurations are built side by side (configs/speed/*.yaml,
Johnson network, VGG16 with random weights by default: weights change no timing), warmed
up (torch.compile happens there), then timed step by step *alternately* — reference,
fast, reference, fast … — so that load from other processes on a shared machine hits both
alike; the table shows medians.

One timed step is exactly what Lightning runs per batch under automatic optimisation:
the host batch copied to the device (non-blocking from pinned memory on a GPU), the
module's own objective `compute_losses` inside the train-step context of Lightning's own
precision plugin (`bf16-mixed` where `speed.autocast` resolves on), `zero_grad`,
`backward`, `Adam.step` from the module's `configure_optimizers`; and the module is
prepared by the same `setup_speed` that its `on_fit_start` calls. It is called directly
rather than through a `Trainer` so that every step can be timed alone (with
`torch.utils.benchmark.Timer`, device-synchronised) without the trainer's per-step
logging and progress bar. The loss network, model and speed configurations are the
training's own config groups (loss=perceptual, model=, speed=), composed by Hydra.

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

import torch
from torch.utils.benchmark import Timer

from stylenet.allocator import keep_freed_memory
from stylenet.commands.app import as_list
from stylenet.device import pick_device, synchronize
from stylenet.errors import UserError
from stylenet.speed import resolve_speed

from . import model_config, training_group

MIB = 1024.0 * 1024.0


# -- configuration: the training's own YAML ----------------------------------------------------
def speed_config(name: str, overrides=None) -> dict:
    """`speed=<name>` (stylenet/configs/speed/) with `overrides` (e.g. +fast={compile:false}) on top."""
    return training_group("speed", name, overrides)


def loss_config(network: str, weights) -> dict:
    """`loss=perceptual` for `network`, resolved as training resolves it."""
    networks = sorted(training_group("loss", "perceptual")["layers"])
    if network not in networks:
        raise UserError(f"unknown network {network!r}; stylenet/configs/loss/perceptual.yaml has {networks}")
    return training_group("loss", "perceptual", {"network": network, "weights": weights})


def precision_plugin(device: torch.device, autocast: bool):
    """The Lightning precision plugin a `Trainer` would use: its train_step_context wraps each step."""
    from pytorch_lightning.plugins.precision import MixedPrecision, Precision

    return MixedPrecision("bf16-mixed", device.type) if autocast else Precision()


# -- memory ------------------------------------------------------------------------------------
class _CPUPeak:
    """Peak bytes of tensor storages allocated (and still alive) while active: CPU's max_memory_allocated.

    Counts what goes through the dispatcher (every tensor of an eager step), not allocator
    caches or oneDNN scratch space. Written here because torch has a peak-memory counter
    only for accelerators, and the profiler's CPU memory events do not add up to a peak.
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

    def __init__(self, name: str, speed: dict, args, batch: int, device: torch.device, style: torch.Tensor):
        from stylenet.module import StyleTransferModule

        self.name, self.batch, self.device = name, batch, device
        torch.manual_seed(args["seed"])
        self.module = StyleTransferModule(
            model=model_config(args["model"]), loss=loss_config(args["network"], args["weights"]),
            optim={"lr": 1e-3, "scale_lr": "none"}, speed=speed, style_name="bench", style_image=style,
            batch_size=batch, image_size=args["size"],
        ).to(device)
        self.switches = resolve_speed(speed, device)
        self._cudnn = bool(self.switches["cudnn_benchmark"])
        torch.backends.cudnn.benchmark = self._cudnn
        self.precision = precision_plugin(device, self.switches["autocast"])
        with warnings_to_stderr():
            self.module.setup_speed(step_context=self.precision.train_step_context)
        self.module.train()
        self.optimizer = self.module.configure_optimizers()
        g = torch.Generator().manual_seed(args["seed"])
        self.host = torch.rand(batch, 3, args["size"], args["size"], generator=g)
        if device.type == "cuda":
            self.host = self.host.pin_memory()
        self.times: list[float] = []
        self.cpu_times: list[float] = []
        self.peak_bytes: int | None = None
        self.timer = Timer(stmt="run.train_step()", globals={"run": self}, num_threads=torch.get_num_threads())

    def use_process_settings(self) -> None:
        """This configuration's process-wide settings, set before its step and outside its timing."""
        torch.backends.cudnn.benchmark = self._cudnn  # a global flag: each configuration sets its own
        if self.device.type == "cpu":  # so is malloc's: off is glibc's usual behaviour for large blocks
            keep_freed_memory(self.switches["keep_host_memory"])

    def step(self) -> float:
        self.use_process_settings()
        return self.train_step()

    def train_step(self) -> float:
        """One optimiser step as Lightning runs it (the process settings already in place)."""
        x = self.host.to(self.device, non_blocking=True)
        with self.precision.train_step_context():
            loss = self.module.compute_losses(x)["loss"]
        self.optimizer.zero_grad(set_to_none=True)
        loss.backward()
        self.optimizer.step()
        return loss

    def timed_step(self) -> None:
        """One step, timed (wall: Timer, device-synchronised; CPU: all threads of this process)."""
        self.use_process_settings()
        synchronize(self.device)
        cpu = time.process_time()
        self.times.append(self.timer.timeit(1).median)
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

    from stylenet.module import StyleTransferModule

    speed = {**speed, "compile": False, "autocast": False, "lossnet_half": False}
    module = StyleTransferModule(
        model=model_config(args["model"]), loss=loss_config(args["network"], args["weights"]),
        optim={"lr": 1e-3}, speed=speed, style_image=style, batch_size=1, image_size=args["size"],
    )
    module.setup_speed()  # the configuration's own step (e.g. phase_upsample: fewer decoder FLOPs)
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
    timer = Timer(stmt="a @ b", globals={"a": a, "b": b})
    timer.timeit(3)  # warm-up
    return 2.0 * n**3 / timer.timeit(iters).mean


# -- the benchmark ------------------------------------------------------------------------------
def _fmt_switches(switches: dict) -> str:
    return " ".join(f"{k}={'on' if v is True else 'off' if v is False else v}" for k, v in switches.items()
                    if k != "compile_mode" or v)


def run(args) -> None:
    """Build every configuration at every batch size, time them alternately, print the table."""
    batch_sizes = [int(b) for b in as_list(args["batch_sizes"])]
    if args["threads"]:
        torch.set_num_threads(int(args["threads"]))
    device = pick_device(args["device"])
    steps, warmup, size = max(1, int(args["steps"])), max(0, int(args["warmup"])), int(args["size"])
    names = list(args["configs"])
    speeds = {n: speed_config(n, args.get(n)) for n in names}
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
