"""Checkpoint → one small, safe, self-describing file per style (+ TorchScript / ONNX graphs).

`<style>.safetensors` holds only the transformation network's weights (a few MB, no
optimizer state, no loss network) and, as safetensors metadata, everything needed to rebuild
and describe it: architecture, loss network and weights, training steps, image size, version.
Reading it executes no code. TorchScript and ONNX are for runtimes without stylenet.

A multi-style network is one file too: the shared weights, every style's γ, β and the
`styles` metadata. Its graphs take a second input `style`, the weights (N, S) over the
styles, one row per image (one-hot: a style; other rows: a blend).
"""

from __future__ import annotations

import json
import os
import warnings
from collections.abc import Callable
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn

from .errors import UserError
from .imageio import atomic_write
from .modelfile import EXPORT_SUFFIX, ModelFile, build_network, read_model_file
from .outputs import safe_name
from .transformer import TransformerNet

#: the odd size ONNX exports are checked at against PyTorch
CHECK_SIZE = (37, 53)
ONNX_TOLERANCE = 1e-3


class ExportError(UserError, RuntimeError):
    """An export could not be written or does not reproduce the PyTorch network."""


def default_path(model: ModelFile, suffix: str) -> Path:
    """checkpoints/<style>/<style><suffix>, beside the checkpoint or export it came from (the style
    name comes from the file: `safe_name` keeps it one harmless component of that folder)."""
    return model.path.parent / f"{safe_name(model.style_name)}{suffix}"


def export_checkpoint(ckpt_path: str | os.PathLike, out: str | os.PathLike | None = None, fp16: bool = False) -> Path:
    """Lightning checkpoint → `<ckpt dir>/<style>.safetensors` (weights + metadata only).

    Cheap enough to run at the end of every training run: one checkpoint read, one small write.
    fp16 halves the file; loading casts back to the precision the device wants.
    """
    model = read_model_file(ckpt_path)
    build_network(model)  # fail now, not at inference time, if the weights do not fit
    dtype = torch.float16 if fp16 else torch.float32
    tensors = {k: (v.to(dtype) if v.is_floating_point() else v).contiguous() for k, v in model.state_dict.items()}
    metadata = {**model.metadata, "dtype": str(dtype).removeprefix("torch.")}
    out = Path(out) if out else default_path(model, EXPORT_SUFFIX)
    from safetensors.torch import save

    # serialised here and written into our temp file: safetensors' save_file writes through a
    # temp file of its own (.tmpXXXXXX), which a kill would leave behind where no one removes it
    data = save(tensors, metadata=metadata)
    return atomic_write(out, lambda tmp: Path(tmp).write_bytes(data))


class PortableTransformer(nn.Module):
    """The network with shape-generic padding, for tracers and exporters.

    TransformerNet.forward decides in Python whether to pad; a tracer records the decision
    made for the example input, so an exported graph would silently mis-handle other sizes
    (seen with the dynamo ONNX exporter: correct at 64×48, off by 0.26 at 37×53). Here the
    pad is always applied (sometimes 0 px) and computed from the input's shape, so it stays a
    graph operation. Same result as TransformerNet for H, W >= `net.min_size` (8; 16 for
    shuffle 2), the smallest size the exported graphs accept. A multi-style network
    takes `style`, the weights (N, S): `TransformerNet.style_weights`' validation is Python
    the graph cannot hold, so the shape is the caller's business here.
    """

    def __init__(self, net: TransformerNet):
        super().__init__()
        self.net = net

    def forward(self, x: torch.Tensor, style: torch.Tensor | None = None) -> torch.Tensor:
        h, w = x.shape[-2], x.shape[-1]
        m = self.net.size_multiple
        x = F.pad(x, (0, (-w) % m, 0, (-h) % m), mode="reflect")  # only the padding differs from TransformerNet
        return self.net.transform(x, style)[..., :h, :w]


def example_style(net: TransformerNet, batch: int) -> torch.Tensor | None:
    """Style weights (batch, S) that blend styles (None for a single-style network): what the
    graphs are traced with and checked against PyTorch at. Row 0 mixes the first two styles
    0.7 / 0.3; the others weigh every style alike."""
    if net.num_styles == 1:
        return None
    w = torch.full((batch, net.num_styles), 1.0 / net.num_styles)
    w[0] = 0.0
    w[0, 0], w[0, 1] = 0.7, 0.3
    return w


def _inputs(net: TransformerNet, x: torch.Tensor) -> tuple:
    style = example_style(net, x.shape[0])
    return (x,) if style is None else (x, style)


def _load_float_net(source: str | os.PathLike) -> tuple[ModelFile, TransformerNet]:
    model = read_model_file(source)
    return model, build_network(model).float().eval()


def export_torchscript(source: str | os.PathLike, out: str | os.PathLike | None = None) -> Path:
    """Checkpoint or export → `<style>.torchscript.pt` (traced; metadata as extra file stylenet.json).
    A multi-style network's graph is called as `graph(image, style)`, style weights (N, S)."""
    model, net = _load_float_net(source)
    out = Path(out) if out else default_path(model, ".torchscript.pt")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # torch.jit is deprecated upstream, still the portable C++/mobile format
        with torch.no_grad():  # checked below at an odd size instead of trace's slow self-check
            traced = torch.jit.trace(PortableTransformer(net), _inputs(net, torch.rand(1, 3, 32, 32)), check_trace=False)
            inputs = _inputs(net, torch.rand(2, 3, *CHECK_SIZE))
            diff = float((traced(*inputs) - net(*inputs)).abs().max())
        if diff > ONNX_TOLERANCE:
            raise ExportError(f"the traced TorchScript graph differs from PyTorch by {diff:.2e} at {CHECK_SIZE}")
        files = {"stylenet.json": json.dumps(model.metadata)}
        atomic_write(out, lambda tmp: torch.jit.save(traced, tmp, _extra_files=files))
    return out


def export_onnx(source: str | os.PathLike, out: str | os.PathLike | None = None, check: bool = True,
                opset: int | None = None, log: Callable[[str], None] | None = None) -> Path:
    """Checkpoint or export → `<style>.onnx` with dynamic batch, height and width.

    The metadata goes into the model's metadata_props. With check=True (and onnxruntime
    installed) the file is run at an odd size and compared with PyTorch; a difference above
    1e-3 raises ExportError.
    """
    model, net = _load_float_net(source)
    out = Path(out) if out else default_path(model, ".onnx")
    atomic_write(out, lambda tmp: write_onnx(net, tmp, model.metadata, opset))
    if check:
        try:
            diff = check_onnx(out, net)
        except ImportError:
            warnings.warn("onnxruntime is not installed: the ONNX export was not checked", stacklevel=2)
        else:
            if diff > ONNX_TOLERANCE:
                raise ExportError(f"{out} differs from PyTorch by {diff:.2e} (> {ONNX_TOLERANCE}) at {CHECK_SIZE}")
            if log:
                log(f"onnx check: onnxruntime vs PyTorch at {CHECK_SIZE[0]}x{CHECK_SIZE[1]}: max abs diff {diff:.2e}")
    return out


def write_onnx(net: TransformerNet, path: str | os.PathLike, metadata: dict[str, str] | None = None,
               opset: int | None = None) -> None:
    """The dynamo exporter (torch.export) on PortableTransformer: dynamic batch, height, width >=
    `net.min_size`; a multi-style network has a second input `style` (N, S) sharing the
    image's batch size."""
    import onnx
    from torch.export import Dim

    batch = Dim("batch", min=1)
    shapes = {"x": {0: batch, 2: Dim("height", min=net.min_size), 3: Dim("width", min=net.min_size)}}
    # batch 2 for two inputs: torch.export would specialise a shared batch dimension seen as 1
    inputs = _inputs(net, torch.rand(1 if net.num_styles == 1 else 2, 3, 64, 64))
    names, described = ["image"], "image (N,3,H,W) float32 RGB in [0,1]"
    if len(inputs) == 2:
        shapes["style"] = {0: batch}
        names.append("style")
        described += f"; style (N,{net.num_styles}) float32 weights over the styles (one-hot: a style; a blend: mixed)"
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        program = torch.onnx.export(
            PortableTransformer(net.float().eval()), inputs, dynamo=True, dynamic_shapes=shapes,
            input_names=names, output_names=["stylized"], opset_version=opset, verbose=False,
        )
    proto = program.model_proto
    onnx.helper.set_model_props(proto, {**(metadata or {}), "input": described})
    onnx.save_model(proto, str(path))


def check_onnx(path: str | os.PathLike, net: nn.Module, size: tuple[int, int] = CHECK_SIZE, batch: int = 2) -> float:
    """Max abs difference between onnxruntime (CPU) and PyTorch on a random odd-sized batch
    (a multi-style network: with blended style weights, `example_style`)."""
    import onnxruntime as ort

    x = torch.rand(batch, 3, *size, generator=torch.Generator().manual_seed(0))
    inputs = _inputs(net, x)
    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    feeds = {spec.name: value.numpy() for spec, value in zip(session.get_inputs(), inputs)}
    if len(feeds) != len(session.get_inputs()):
        raise ExportError(f"{path} takes {len(session.get_inputs())} inputs, the network {len(inputs)}")
    got = session.run(None, feeds)[0]
    with torch.no_grad():
        want = net.float().eval()(*inputs)
    if tuple(got.shape) != tuple(want.shape):
        raise ExportError(f"{path} returned shape {tuple(got.shape)} for input {tuple(x.shape)}")
    return float((torch.from_numpy(got) - want).abs().max())


FORMATS = {"safetensors": None, "torchscript": export_torchscript, "onnx": export_onnx}


def export(source: str | os.PathLike, formats=("safetensors",), out_dir: str | os.PathLike | None = None,
           fp16: bool = False, log: Callable[[str], None] | None = None) -> dict[str, Path]:
    """The CLI's job: a checkpoint always yields its .safetensors; other formats are added to it."""
    unknown = [f for f in formats if f not in FORMATS]
    if unknown:
        raise ValueError(f"unknown export format {', '.join(map(repr, unknown))}; use {', '.join(FORMATS)}")
    model = read_model_file(source)
    folder = Path(out_dir) if out_dir else model.path.parent
    written: dict[str, Path] = {}
    target = folder / f"{safe_name(model.style_name)}{EXPORT_SUFFIX}"
    if model.path.suffix != EXPORT_SUFFIX or "safetensors" in formats:
        same = target.exists() and target.resolve() == model.path.resolve()
        written["safetensors"] = model.path if same else export_checkpoint(source, target, fp16=fp16)
    stem = safe_name(model.style_name)
    if "torchscript" in formats:
        written["torchscript"] = export_torchscript(source, folder / f"{stem}.torchscript.pt")
    if "onnx" in formats:
        written["onnx"] = export_onnx(source, folder / f"{stem}.onnx", log=log)
    return written


__all__ = ["ExportError", "PortableTransformer", "check_onnx", "example_style", "export", "export_checkpoint",
           "export_onnx", "export_torchscript", "write_onnx"]
