"""ONNX Runtime as the Stylizer's engine where PyTorch has no fast path: fp32 on a CPU.

On CPUs without native bf16 the network runs in fp32. There, alone in a loop, ONNX Runtime and
PyTorch eager run `model=realtime` equally fast, but in the live loop ONNX Runtime was 1.25x
faster end to end (18.8 against 15.0 FPS at 640x480 on 2 cores, docs/inference.md): its threads
sleep between frames, where PyTorch's OpenMP workers spin on the cores that capture and encoding
need. The network is exported once (torch.export → ONNX, checked against PyTorch at an odd size)
into the cache, under a key made of its weights and the torch version, and later runs open that
file directly.
"""

from __future__ import annotations

import hashlib
import importlib.util
import json
from pathlib import Path

import torch

from .device import precision_name
from .errors import UserError
from .transformer import TransformerNet

#: the Stylizer's `backend=` choices
BACKENDS = ("auto", "torch", "onnxruntime")
INSTALL = "pip install onnxruntime onnx onnxscript (or pip install -e '.[export]')"


class BackendError(UserError, ValueError):
    """A backend that cannot run here, or cannot run what was asked of it."""


def available() -> bool:
    """Whether this environment can export (onnx, onnxscript) and run (onnxruntime) a graph."""
    return all(importlib.util.find_spec(name) is not None for name in ("onnxruntime", "onnx", "onnxscript"))


def weights_key(net: TransformerNet) -> str:
    """What the cached graph depends on: the architecture, how its decoder upsamples (the phase
    form is another graph), every tensor, the torch version."""
    upsampling = [bool(getattr(layer, "phase", False)) for layer in net.decoder]
    digest = hashlib.sha256(json.dumps({"arch": net.arch(), "torch": torch.__version__, "phase": upsampling},
                                       sort_keys=True).encode())
    for name, tensor in net.state_dict().items():
        t = tensor.detach().float().cpu().contiguous()
        digest.update(f"{name}{tuple(t.shape)}".encode())
        digest.update(t.numpy().tobytes())
    return digest.hexdigest()[:32]


def cached_graph(net: TransformerNet, folder: Path | None = None) -> Path:
    """The network's ONNX graph in the cache, exported and checked the first time."""
    from .export import ONNX_TOLERANCE, ExportError, check_onnx, write_onnx
    from .imageio import atomic_write
    from .styles import cache_root

    path = (folder or cache_root() / "onnx") / f"{weights_key(net)}.onnx"
    if path.is_file():
        return path

    def write(tmp: str) -> None:
        write_onnx(net, tmp)
        if (diff := check_onnx(tmp, net)) > ONNX_TOLERANCE:  # checked before it is in the cache
            raise ExportError(f"the ONNX graph differs from PyTorch by {diff:.2e} (> {ONNX_TOLERANCE})")

    return atomic_write(path, write)


class OnnxNetwork:
    """`net` as an onnxruntime session: called like the network on CPU float tensors
    (B,3,H,W), with style weights (S,) or (B,S) for a multi-style network."""

    def __init__(self, net: TransformerNet, threads: int | None = None, folder: Path | None = None):
        import onnxruntime as ort

        self.num_styles, self.min_size = net.num_styles, net.min_size
        path = cached_graph(net, folder)
        options = ort.SessionOptions()
        options.intra_op_num_threads = int(threads or torch.get_num_threads())
        options.inter_op_num_threads = 1
        options.log_severity_level = 3  # warnings about unused initialisers are not the user's concern
        # no busy-waiting between runs: in the live loop the capture and encoding threads need those cores
        options.add_session_config_entry("session.intra_op.allow_spinning", "0")
        try:
            self.session = ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
        except Exception:  # noqa: BLE001 - a cached file that no longer opens (another onnxruntime): make it anew
            path.unlink(missing_ok=True)
            self.session = ort.InferenceSession(str(cached_graph(net, folder)), options, providers=["CPUExecutionProvider"])
        self.path = path

    def fits(self, x: torch.Tensor) -> bool:
        """Whether the graph takes this input (it needs H, W >= min_size; the network pads smaller ones)."""
        return min(x.shape[-2:]) >= self.min_size

    def __call__(self, x: torch.Tensor, style: torch.Tensor | None = None) -> torch.Tensor:
        feeds = {"image": x.detach().float().cpu().contiguous().numpy()}
        if self.num_styles > 1:
            weights = style if style is not None else torch.nn.functional.one_hot(torch.tensor(0), self.num_styles)
            weights = weights.float().cpu()
            feeds["style"] = (weights.expand(x.shape[0], -1) if weights.dim() == 1 else weights).contiguous().numpy()
        (y,) = self.session.run(None, feeds)
        return torch.from_numpy(y)


def pick(backend: str, device: torch.device, dtype: torch.dtype, compile: bool) -> str:
    """`backend=` → the engine that runs: "torch" or "onnxruntime". auto is onnxruntime for fp32
    on a CPU when it is installed and torch.compile was not asked for, torch everywhere else."""
    if backend not in BACKENDS:
        raise BackendError(f"backend={backend!r}: use {', '.join(BACKENDS)}")
    if backend == "torch":
        return "torch"
    if backend == "auto":
        return "onnxruntime" if device.type == "cpu" and dtype == torch.float32 and not compile and available() else "torch"
    if device.type != "cpu":
        raise BackendError(f"backend=onnxruntime runs on the CPU, not {device.type}: use device=cpu, or backend=torch")
    if dtype != torch.float32:
        raise BackendError(f"backend=onnxruntime runs fp32, not {precision_name(dtype)}: use precision=fp32, or backend=torch")
    if compile:
        raise BackendError("compile=true compiles the PyTorch network: use backend=torch with it (or compile=false)")
    if not available():
        raise BackendError(f"backend=onnxruntime needs onnxruntime, onnx and onnxscript: {INSTALL}; or backend=torch")
    return "onnxruntime"


__all__ = ["BACKENDS", "BackendError", "OnnxNetwork", "available", "cached_graph", "pick", "weights_key"]
