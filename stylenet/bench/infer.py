"""`python scripts/benchmark.py mode=infer`: ms/frame and FPS of the transformation network.

Rows: fp32 eager, channels_last, fp16 and bf16 (GPU only), torch.compile, ONNX Runtime (CPU),
for the full Johnson network and the slim one; columns: 640x480, 1280x720, 1920x1080.
Weights are random (speed does not depend on them). Each cell is the median of up to
`repeat` timed runs after a warm-up, cut short once a cell has used `max_cell_s` seconds;
a first run longer than that is taken as the measurement, so big frames on a small CPU
cost one run each.
"""

from __future__ import annotations

import sys
import tempfile
import time
import warnings
from collections.abc import Callable
from pathlib import Path

import torch
from torch.utils.benchmark import Measurement, Timer

from stylenet.allocator import keep_freed_memory
from stylenet.device import pick_device
from stylenet.transformer import TransformerNet

from . import model_config

#: the table's model names → configs/model/<name>.yaml (realtime: `realtime.model`, at
#: `realtime.scale` of the frame, upsampled along the photo's edges where < 1: stylenet/upsample.py)
MODELS = {"full": "johnson", "slim": "slim", "mobile": "mobile", "realtime": "realtime"}
VARIANTS = ("fp32", "channels_last", "fp16", "bf16", "compiled", "onnxruntime")
LABELS = {"fp32": "fp32 eager", "channels_last": "channels_last", "fp16": "fp16 (GPU)", "bf16": "bf16 (GPU)",
          "compiled": "torch.compile", "onnxruntime": "ONNX Runtime (CPU)"}
GPU_ONLY = ("fp16", "bf16")


def log(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


def time_runs(fn: Callable[[], object], repeat: int, max_cell_s: float) -> float:
    """Median seconds per call (torch.utils.benchmark: device-synchronised, all threads). The
    first call is the warm-up, unless it alone took longer than max_cell_s: then warm-up
    effects are noise and it is the measurement (keeps CPU runs short)."""
    timer = Timer(stmt="fn()", globals={"fn": fn}, num_threads=torch.get_num_threads())
    first = timer.timeit(1)
    if first.median > max_cell_s:
        return first.median
    runs = [timer.timeit(1)]
    while len(runs) < repeat and sum(r.median for r in runs) < max_cell_s:
        runs.append(timer.timeit(1))
    return Measurement.merge(runs)[0].median


def runner(variant: str, net: TransformerNet, device: torch.device, tmp: Path) -> Callable[[torch.Tensor], object]:
    """A function x → y for one variant (may raise: the cell then says why)."""
    if variant in GPU_ONLY and device.type != "cuda":
        raise _NotApplicable("n/a (no GPU)")
    if variant == "onnxruntime":  # what Stylizer(backend="onnxruntime") runs; graphs in `tmp`, keyed by their weights
        from stylenet.onnxrun import OnnxNetwork

        onnx = OnnxNetwork(net.cpu(), folder=tmp)
        net.to(device)
        return onnx
    dtype = {"fp16": torch.float16, "bf16": torch.bfloat16}.get(variant, torch.float32)
    channels_last = variant == "channels_last" or (variant in GPU_ONLY)
    model = TransformerNet(**net.arch()).eval().to(device)
    model.load_state_dict(net.state_dict())
    model = model.to(dtype=dtype, memory_format=torch.channels_last if channels_last else torch.contiguous_format)
    if variant == "compiled":
        model = torch.compile(model, dynamic=True)

    def run(x: torch.Tensor):
        x = x.to(device, dtype)
        if channels_last:
            x = x.contiguous(memory_format=torch.channels_last)
        with torch.inference_mode():
            return model(x)

    return run


class _NotApplicable(Exception):
    pass


def cell(ms: float) -> str:
    return f"{ms:8.1f} ms {1000.0 / ms:7.2f} FPS"


def run(cfg) -> None:
    """Time every (model, variant, size) cell and print the table."""
    device = pick_device(cfg["device"])
    if cfg["threads"]:
        torch.set_num_threads(int(cfg["threads"]))
    sizes = [tuple(int(v) for v in str(s).lower().split("x")) for s in cfg["sizes"]]
    variants = [v for v in cfg["variants"] if v in VARIANTS]
    gpu = torch.cuda.get_device_name() if device.type == "cuda" else "no GPU"
    try:
        import onnxruntime

        ort_version = onnxruntime.__version__
    except ImportError:
        ort_version = "not installed"
    kept = bool(cfg.get("keep_host_memory", True)) and keep_freed_memory()
    header = (f"device: {device.type} ({gpu}), CPU threads: {torch.get_num_threads()}, torch {torch.__version__}, "
              f"onnxruntime {ort_version}, batch {cfg['batch']}, malloc keeps freed memory: {'yes' if kept else 'no'}; "
              f"median of up to {cfg['repeat']} runs after a warm-up "
              f"(one run where it takes > {cfg['max_cell_s']} s)")
    rows: list[tuple[str, str, list[str]]] = []
    notes: list[str] = []
    fps: dict[tuple[str, str, str], float] = {}
    with tempfile.TemporaryDirectory() as tmp:
        for name in cfg["models"]:
            realtime = name == "realtime"
            arch = model_config(str(cfg["realtime"]["model"]) if realtime else MODELS[name])
            torch.manual_seed(0)
            net = TransformerNet(**arch).eval().to(device)
            model_label = f"{name} ({arch['width']}ch, {arch['num_residual']} res)"
            rescaled = realtime and float(cfg["realtime"]["scale"]) != 1
            if realtime:
                model_label = f"realtime (model={cfg['realtime']['model']}" + (
                    f" at {float(cfg['realtime']['scale']):g}x, {cfg['realtime']['upsample']['mode']})" if rescaled else ")")
            for variant in variants:
                label = LABELS[variant] + ("" if variant in ("onnxruntime", *GPU_ONLY) else f" ({device.type})")
                try:
                    start = time.perf_counter()
                    fn = runner(variant, net, device, Path(tmp))
                    if rescaled:
                        fn = scaled(fn, cfg["realtime"])
                    if variant in ("compiled", "onnxruntime"):
                        # compile / session set-up, reported apart; at a table size, because inductor's
                        # conv heuristics guard on tensor sizes and recompile when a tiny input crosses them
                        w0, h0 = sizes[0]
                        fn(torch.rand(int(cfg["batch"]), 3, h0, w0).to(device if variant == "compiled" else "cpu"))
                        notes.append(f"{name} {variant}: set-up {time.perf_counter() - start:.1f} s (not in the table)")
                except _NotApplicable as exc:
                    rows.append((model_label, label, [str(exc)] * len(sizes)))
                    continue
                except Exception as exc:  # noqa: BLE001 - a variant that cannot run here is a table entry
                    reason = f"failed: {exc.__class__.__name__}"
                    notes.append(f"{name} {variant}: {exc.__class__.__name__}: {str(exc).splitlines()[0][:200]}")
                    rows.append((model_label, label, [reason] * len(sizes)))
                    continue
                cells = []
                for w, h in sizes:
                    x = torch.rand(int(cfg["batch"]), 3, h, w)
                    if variant != "onnxruntime":
                        x = x.to(device)
                    with warnings.catch_warnings():
                        warnings.simplefilter("ignore")
                        seconds = time_runs(lambda: fn(x), int(cfg["repeat"]), float(cfg["max_cell_s"]))
                    cells.append(cell(1000.0 * seconds / int(cfg["batch"])))
                    fps[name, variant, f"{w}x{h}"] = int(cfg["batch"]) / seconds
                    log(f"  {name:8s} {LABELS[variant]:20s} {w}x{h}: {cells[-1].strip()}")
                rows.append((model_label, label, cells))
    print_table(header, [f"{w}x{h}" for w, h in sizes], rows, notes)
    for size in [f"{w}x{h}" for w, h in sizes][:1]:
        if ("realtime", "fp32", size) in fps and ("full", "fp32", size) in fps:
            ratio = fps["realtime", "fp32", size] / fps["full", "fp32", size]
            print(f"realtime/full fps ratio at {size}: {ratio:.2f}")


def scaled(fn: Callable[[torch.Tensor], object], realtime) -> Callable[[torch.Tensor], torch.Tensor]:
    """A variant's runner at the real-time path's internal resolution, upsampled back."""
    from stylenet.upsample import options, render_scaled

    def network(x: torch.Tensor) -> torch.Tensor:
        return fn(x).float().to(x.device)

    up = options(realtime["upsample"])
    return lambda x: render_scaled(network, x.float(), float(realtime["scale"]), **up)


def print_table(header: str, columns: list[str], rows, notes: list[str]) -> None:
    widths = [max(len(r[0]) for r in rows), max(len(r[1]) for r in rows)]
    col = max([26, *[len(c) for r in rows for c in r[2]]])
    print(header)
    line = f"| {'model':{widths[0]}} | {'variant':{widths[1]}} | " + " | ".join(f"{c:>{col}}" for c in columns) + " |"
    print(line)
    print("|" + "|".join("-" * (n + 2) for n in [*widths, *[col] * len(columns)]) + "|")
    for model, variant, cells in rows:
        print(f"| {model:{widths[0]}} | {variant:{widths[1]}} | " + " | ".join(f"{c:>{col}}" for c in cells) + " |")
    for note in notes:
        print(f"note: {note}")
