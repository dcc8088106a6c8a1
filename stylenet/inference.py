"""Apply a trained style: load a model file safely, stylize images, frames and tensors.

Independent of the training side (no Lightning, Hydra or loss network): it imports only the
network definition, the image helpers, torch, safetensors, numpy and Pillow, so an exported
style runs anywhere torch does and imports fast.

    s = Stylizer.load("checkpoints/hokusai/hokusai.safetensors")   # or a Lightning last.ckpt
    picture = s.stylize(Image.open("photo.jpg"), strength=0.8, preserve_color=False)
    frame = s.stylize(bgr_frame, bgr=True)                            # OpenCV frames
    y = s.stylize_tensor(x)                                           # (B,3,H,W) in [0,1]
"""

from __future__ import annotations

import json
import os
import re
import warnings
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image
from torch import nn

from .errors import UserError
from .imageio import pil_to_tensor, tensor_to_pil, to_rgb
from .transformer import TransformerNet

#: `format` metadata of an exported style, and the layout version this code reads
FORMAT = "stylenet.transformer"
FORMAT_VERSION = 1
EXPORT_SUFFIX = ".safetensors"
ARCHITECTURES = {"TransformerNet": TransformerNet}
CHECKPOINT_DIRS = ("checkpoints",)
REPO_ROOT = Path(__file__).resolve().parent.parent


class ModelLoadError(UserError, ValueError):
    """A model file is missing, unreadable, unsafe, or made for another architecture."""


# -- model files ----------------------------------------------------------------------------
@dataclass
class ModelFile:
    """What a model file holds: the network's architecture and weights, plus string metadata."""

    path: Path
    arch: dict
    state_dict: dict[str, torch.Tensor]
    metadata: dict[str, str] = field(default_factory=dict)

    @property
    def style_name(self) -> str:
        return self.metadata.get("style_name") or self.path.stem


def _sniff(path: Path) -> str:
    """'safetensors', 'torch' (zip or legacy pickle) or 'unknown', from the first bytes."""
    with open(path, "rb") as f:
        head = f.read(9)
    if head[:4] == b"PK\x03\x04" or head[:1] == b"\x80":
        return "torch"
    if len(head) == 9 and head[8:9] == b"{" and int.from_bytes(head[:8], "little") < (100 << 20):
        return "safetensors"
    return "unknown"


def read_model_file(path: str | os.PathLike) -> ModelFile:
    """Read an exported .safetensors style or a Lightning .ckpt without executing any code."""
    path = Path(path)
    if not path.exists():
        raise ModelLoadError(f"model file not found: {path}")
    if path.is_dir():
        raise ModelLoadError(f"expected a model file, got a folder: {path} (pass checkpoints/<style>/<style>.safetensors)")
    if path.suffix.lower() == ".onnx":
        raise ModelLoadError(f"{path} is an ONNX graph: run it with onnxruntime; Stylizer loads .safetensors exports and .ckpt checkpoints")
    kind = _sniff(path)
    if kind == "safetensors":
        return _read_safetensors(path)
    if kind == "torch":
        return _read_checkpoint(path)
    raise ModelLoadError(
        f"{path} is not a stylenet model file (neither safetensors nor a PyTorch checkpoint); "
        "pass an export made by scripts/export.py or a checkpoints/<style>/last.ckpt"
    )


def _read_safetensors(path: Path) -> ModelFile:
    from safetensors import SafetensorError, safe_open

    try:
        with safe_open(str(path), framework="pt", device="cpu") as f:
            metadata = dict(f.metadata() or {})
            state = {k: f.get_tensor(k) for k in f.keys()}
    except (SafetensorError, OSError, ValueError) as exc:
        raise ModelLoadError(
            f"cannot read {path}: {exc}; the file is truncated or corrupt, re-export it with "
            "python scripts/export.py ckpt=checkpoints/<style>/last.ckpt"
        ) from None
    if metadata.get("format") != FORMAT:
        raise ModelLoadError(
            f"{path} is a safetensors file but not a stylenet export (no format={FORMAT!r} metadata); "
            "export a trained style with python scripts/export.py ckpt=checkpoints/<style>/last.ckpt"
        )
    version = int(metadata.get("format_version", "0") or 0)
    if version > FORMAT_VERSION:
        raise ModelLoadError(f"{path} uses export format {version}, this stylenet reads up to {FORMAT_VERSION}: upgrade stylenet")
    try:
        arch = json.loads(metadata["arch"])
    except (KeyError, json.JSONDecodeError):
        raise ModelLoadError(f"{path} has no readable 'arch' metadata; re-export it with scripts/export.py") from None
    return ModelFile(path, arch, state, metadata)


def _read_checkpoint(path: Path) -> ModelFile:
    try:
        ckpt = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # noqa: BLE001 - every failure of an untrusted file is "cannot load"
        lines = [ln.strip() for ln in str(exc).splitlines() if ln.strip()] or [exc.__class__.__name__]
        message = next((ln for ln in lines if "Unsupported global" in ln), lines[0])
        if "TorchScript" in message:
            reason = "it is a TorchScript archive; load it with torch.jit.load, or pass the .safetensors export"
        elif "weights_only" in message or "Unpickl" in exc.__class__.__name__ or "GLOBAL" in message:
            reason = f"it holds Python objects that would run code when unpickled, refusing ({message})"
        else:
            reason = f"the file is truncated, corrupt or not a checkpoint ({message})"
        raise ModelLoadError(f"cannot load {path}: {reason}") from None
    if not isinstance(ckpt, dict) or not isinstance(ckpt.get("state_dict"), dict):
        raise ModelLoadError(f"{path} is not a Lightning checkpoint (no state_dict); pass checkpoints/<style>/last.ckpt or an export")
    hparams = ckpt.get("hyper_parameters") or {}
    prefix = "transformer."
    state = {k[len(prefix):]: v for k, v in ckpt["state_dict"].items() if k.startswith(prefix)}
    if not state or not isinstance(hparams.get("model"), dict):
        raise ModelLoadError(f"{path} is a checkpoint but not a stylenet one (no transformer.* weights or model hyper-parameters)")
    metadata = checkpoint_metadata(ckpt, source=path.name)
    return ModelFile(path, json.loads(metadata["arch"]), state, metadata)


def checkpoint_metadata(ckpt: dict, source: str = "") -> dict[str, str]:
    """The self-description an export carries (safetensors metadata is str → str)."""
    hp = ckpt.get("hyper_parameters") or {}
    from . import __version__

    return {
        "format": FORMAT,
        "format_version": str(FORMAT_VERSION),
        "style_name": str(hp.get("style_name", "style")),
        "arch": json.dumps({"class": "TransformerNet", **dict(hp.get("model") or {})}, sort_keys=True),
        "loss": json.dumps(hp.get("loss") or {}, sort_keys=True),
        "training_steps": str(int(ckpt.get("global_step", 0))),
        "image_size": str(hp.get("image_size", "")),
        "batch_size": str(hp.get("batch_size", "")),
        "stylenet_version": str(hp.get("stylenet_version") or __version__),
        "exported_by": f"stylenet {__version__}",
        "source": source,
    }


def build_network(model: ModelFile) -> TransformerNet:
    """Rebuild the network from its recorded architecture and load the weights strictly."""
    arch = dict(model.arch)
    cls_name = arch.pop("class", "TransformerNet")
    cls = ARCHITECTURES.get(cls_name)
    if cls is None:
        raise ModelLoadError(f"{model.path} was made for architecture {cls_name!r}; this stylenet knows {', '.join(ARCHITECTURES)}")
    try:
        net = cls(**arch)
    except TypeError as exc:
        raise ModelLoadError(f"{model.path} has architecture arguments {arch} that {cls_name} does not take ({exc})") from None
    state = {k: v.float() if v.is_floating_point() else v for k, v in model.state_dict.items()}
    try:
        net.load_state_dict(state, strict=True)
    except RuntimeError as exc:
        detail = " ".join(str(exc).split())
        raise ModelLoadError(
            f"{model.path}: its weights do not fit {cls_name}({', '.join(f'{k}={v}' for k, v in arch.items())}) - "
            f"the file was made for a different architecture ({detail[:300]})"
        ) from None
    return net.eval()


def resolve_model(spec: str | os.PathLike, roots: Sequence[Path] | None = None) -> Path:
    """A model path, or a preset name whose export exists under checkpoints/ (else its last.ckpt)."""
    path = Path(spec)
    if path.exists() or path.suffix or len(path.parts) > 1:
        return path
    name = str(spec)
    roots = list(roots) if roots is not None else [Path.cwd(), REPO_ROOT]
    for root in roots:
        for base in CHECKPOINT_DIRS:
            folder = root / base / name
            for candidate in (folder / f"{name}{EXPORT_SUFFIX}", folder / "last.ckpt"):
                if candidate.is_file():
                    return candidate
    found = sorted({p.stem for r in roots for b in CHECKPOINT_DIRS for p in (r / b).glob(f"*/*{EXPORT_SUFFIX}")})
    hint = f"exports found: {', '.join(found)}" if found else "no exports found under checkpoints/"
    raise ModelLoadError(
        f"no model file or exported preset named {name!r} ({hint}); train it with python train.py style={name}, "
        f"or export it with python scripts/export.py ckpt=checkpoints/{name}/last.ckpt"
    )


# -- devices and precision ------------------------------------------------------------------
def auto_device(device: str | torch.device | None = "auto") -> torch.device:
    """CUDA if present, else Apple MPS, else CPU; an explicit device is taken as is."""
    if device not in (None, "auto"):
        return torch.device(device)
    if torch.cuda.is_available():
        return torch.device("cuda")
    mps = getattr(torch.backends, "mps", None)
    if mps is not None and mps.is_available():
        return torch.device("mps")
    return torch.device("cpu")


_DTYPES = {"fp32": torch.float32, "float32": torch.float32, "fp16": torch.float16, "float16": torch.float16,
           "half": torch.float16, "bf16": torch.bfloat16, "bfloat16": torch.bfloat16}


def resolve_dtype(dtype: str | torch.dtype | None, device: torch.device) -> torch.dtype:
    """auto: half precision on a GPU (twice the throughput, invisible in 8-bit output), fp32 on CPU."""
    if isinstance(dtype, torch.dtype):
        return dtype
    if dtype in (None, "auto"):
        return torch.float16 if device.type == "cuda" else torch.float32
    try:
        return _DTYPES[str(dtype).lower()]
    except KeyError:
        raise ValueError(f"unknown precision {dtype!r}; use auto, fp32, fp16 or bf16") from None


# -- colour ---------------------------------------------------------------------------------
#: BT.601 luma (the Y of JPEG's YCbCr)
LUMA = (0.299, 0.587, 0.114)


def luma(x: torch.Tensor) -> torch.Tensor:
    r, g, b = x.unbind(-3)
    return (LUMA[0] * r + LUMA[1] * g + LUMA[2] * b).unsqueeze(-3)


def preserve_colors(stylized: torch.Tensor, original: torch.Tensor) -> torch.Tensor:
    """Luminance-only transfer (Gatys et al. 2016): the stylized Y with the photo's Cb and Cr.

    With Cb and Cr held fixed, YCbCr → RGB reduces to adding the luminance change to every
    channel; clamping to [0,1] only touches already-saturated pixels.
    """
    return (original + (luma(stylized) - luma(original))).clamp_(0, 1)


# -- tiling ---------------------------------------------------------------------------------
class FrozenNormStats:
    """Record every InstanceNorm's statistics on one input, then normalise tiles with them.

    Instance norm makes each tile's output depend on that tile's own statistics, so tiles
    stylized independently disagree at their seams. Taking the statistics from the whole
    image once (downscaled when large) gives every tile the same normalisation: tiles then
    agree wherever their receptive fields are inside them, and the blend hides the rest.
    """

    def __init__(self, net: nn.Module):
        self.norms = [m for m in net.modules() if isinstance(m, nn.modules.instancenorm._InstanceNorm)]
        self.stats: dict[nn.Module, tuple[torch.Tensor, torch.Tensor]] = {}
        self.mode = "record"
        self._handles = []

    def __enter__(self) -> FrozenNormStats:
        self._handles = [m.register_forward_hook(self._hook) for m in self.norms]
        return self

    def __exit__(self, *exc) -> None:
        for h in self._handles:
            h.remove()
        self._handles = []

    def _hook(self, module, inputs, output):
        x = inputs[0]
        if self.mode == "record":
            var, mean = torch.var_mean(x.float(), dim=(-2, -1), keepdim=True, unbiased=False)
            self.stats[module] = (mean, var)
            return None
        mean, var = self.stats[module]
        y = (x.float() - mean) * torch.rsqrt(var + module.eps)
        if module.affine:
            y = y * module.weight.float().view(1, -1, 1, 1) + module.bias.float().view(1, -1, 1, 1)
        return y.to(output.dtype)


def receptive_radius(net: TransformerNet) -> int:
    """How far (px) an output pixel sees: 4+1+2 (encoder) + 8 per residual block + 2+1+4 (decoder)."""
    return 14 + 8 * int(net.num_residual)


def tile_starts(length: int, tile: int, overlap: int, align: int = 4) -> list[int]:
    """Tile origins along one axis: aligned to `align` so every tile sees the global pixel grid."""
    if length <= tile:
        return [0]
    step = max(align, (tile - overlap) // align * align)
    starts = list(range(0, length - tile, step))
    last = (length - tile) // align * align
    if last > starts[-1]:
        starts.append(last)
    return starts


def _ramp(n: int, start: bool, end: bool, margin: int, blend: int, device) -> torch.Tensor:
    """Blend weights along one tile side that has a neighbour: 0 over `margin` px, then a linear rise."""
    w = torch.ones(n, device=device)
    side = torch.cat([torch.zeros(margin, device=device), (torch.arange(blend, device=device) + 0.5) / blend])
    side = side[: n // 2]
    if start:
        w[: len(side)] = side
    if end:
        w[n - len(side):] = torch.minimum(w[n - len(side):], side.flip(0))
    return w


@torch.no_grad()
def tiled_forward(net: TransformerNet, x: torch.Tensor, tile: int = 1024, blend: int = 32,
                  stats_pixels: int = 4_000_000) -> torch.Tensor:
    """Stylize (B,3,H,W) tile by tile: bounded memory, no seams.

    Every tile is normalised with the same instance-norm statistics, taken once from the whole
    image (downscaled to at most `stats_pixels`: the largest size stylized untiled anyway). A tile's pixels closer than the
    receptive radius to its inner edges are wrong (they see the tile's padding), so they get
    weight 0; the next `blend` px fade in linearly. Tiles therefore overlap by 2*radius + blend
    and agree exactly wherever they are blended. When the image has at most stats_pixels the
    statistics are exact and the result equals untiled stylization (up to float rounding);
    above it, the only difference is the downscaled statistics, which are the same for all tiles.
    """
    b, _, h, w = x.shape
    margin = -(-receptive_radius(net) // 4) * 4 + 4
    blend = max(4, -(-blend // 4) * 4)
    overlap = 2 * margin + blend
    tile = max(-(-tile // 4) * 4, 2 * overlap)
    out = torch.zeros(b, 3, h, w, device=x.device, dtype=torch.float32)
    weight = torch.zeros(1, 1, h, w, device=x.device, dtype=torch.float32)
    ys, xs = tile_starts(h, tile, overlap), tile_starts(w, tile, overlap)
    with FrozenNormStats(net) as norms:
        scale = (stats_pixels / (h * w)) ** 0.5
        net(x if scale >= 1 else F.interpolate(x, scale_factor=scale, mode="area"))
        norms.mode = "apply"
        for i, y0 in enumerate(ys):
            y1 = h if i == len(ys) - 1 else min(h, y0 + tile)
            wy = _ramp(y1 - y0, i > 0, i < len(ys) - 1, margin, blend, x.device)
            for j, x0 in enumerate(xs):
                x1 = w if j == len(xs) - 1 else min(w, x0 + tile)
                wx = _ramp(x1 - x0, j > 0, j < len(xs) - 1, margin, blend, x.device)
                wt = (wy[:, None] * wx[None, :])[None, None]
                out[..., y0:y1, x0:x1] += net(x[..., y0:y1, x0:x1]).float() * wt
                weight[..., y0:y1, x0:x1] += wt
    return out.div_(weight)


# -- the stylizer ---------------------------------------------------------------------------
class Stylizer:
    """One style, ready to apply: device and precision chosen, optionally compiled.

    Inputs are PIL images, numpy frames (H,W,3 or N,H,W,3; uint8 or float in [0,1]; RGB or,
    with bgr=True, OpenCV's BGR), tensors (3,H,W or B,3,H,W in [0,1]) or lists of these.
    Outputs have the input's type, layout and size. Large images are tiled automatically.
    """

    def __init__(self, net: TransformerNet, *, metadata: dict[str, str] | None = None, device="auto",
                 precision="auto", channels_last="auto", compile: bool = False, batch_size: int = 4,
                 tile_size: int = 1024, tile_blend: int = 32, max_pixels: int = 4_000_000):
        self.device = auto_device(device)
        self.dtype = resolve_dtype(precision, self.device)
        self.channels_last = self.device.type == "cuda" if channels_last in (None, "auto") else bool(channels_last)
        self.metadata = dict(metadata or {})
        self.batch_size = max(1, int(batch_size))
        self.tile_size, self.tile_blend = int(tile_size), int(tile_blend)
        self.max_pixels = int(max_pixels)
        memory_format = torch.channels_last if self.channels_last else torch.contiguous_format
        self.net = net.eval().requires_grad_(False).to(self.device, self.dtype, memory_format=memory_format)
        self._forward = self.net
        self._compiled = bool(compile)
        if compile:
            self._forward = torch.compile(self.net, dynamic=True)

    @classmethod
    def load(cls, path: str | os.PathLike, **kwargs) -> Stylizer:
        """From an export (.safetensors), a Lightning .ckpt or a preset name under checkpoints/."""
        model = read_model_file(resolve_model(path))
        return cls(build_network(model), metadata=model.metadata, **kwargs)

    @property
    def name(self) -> str:
        return self.metadata.get("style_name", "style")

    def __repr__(self) -> str:
        return f"Stylizer({self.name!r}, {self.net.arch()}, device={self.device}, dtype={self.dtype})"

    # -- tensors ------------------------------------------------------------------------------
    def _network(self, x: torch.Tensor) -> torch.Tensor:
        x = x.to(self.device, self.dtype)
        if self.channels_last:
            x = x.contiguous(memory_format=torch.channels_last)
        if not self._compiled:
            return self.net(x).float()
        try:
            return self._forward(x).float()
        except Exception as exc:  # noqa: BLE001 - an optional speed-up must not stop a live feed
            warnings.warn(f"torch.compile failed ({exc.__class__.__name__}: {exc}); running eager", stacklevel=3)
            self._forward, self._compiled = self.net, False
            return self.net(x).float()

    def _should_tile(self, h: int, w: int, tile) -> bool:
        if tile in (None, "auto"):
            return h * w > self.max_pixels
        return bool(tile)

    @torch.no_grad()
    def stylize_tensor(self, x: torch.Tensor, *, strength: float = 1.0, preserve_color: bool = False,
                       tile: bool | int | str = "auto") -> torch.Tensor:
        """(B,3,H,W) or (3,H,W) float in [0,1] → the same shape, device and dtype, stylized.

        strength blends with the input (0 returns it unchanged); preserve_color keeps the input's
        colours and takes only the luminance from the style; tile: "auto" (above max_pixels),
        True/False, or a tile size in pixels.
        """
        if x.dim() == 3:
            return self.stylize_tensor(x[None], strength=strength, preserve_color=preserve_color, tile=tile)[0]
        if x.dim() != 4 or x.shape[1] != 3 or not x.is_floating_point():
            raise ValueError(f"expected a float tensor (B,3,H,W) or (3,H,W) in [0,1], got {tuple(x.shape)} {x.dtype}")
        if not 0.0 <= float(strength) <= 1.0:
            raise ValueError(f"strength must be between 0 and 1, got {strength}")
        if strength == 0 or x.shape[0] == 0:
            return x.clone()
        h, w = x.shape[-2:]
        tiled = self._should_tile(h, w, tile)
        tile_size = tile if isinstance(tile, int) and not isinstance(tile, bool) else self.tile_size
        outs = []
        for chunk in x.split(1 if tiled else self.batch_size):
            original = chunk.to(self.device, torch.float32)
            if tiled:
                y = tiled_forward(self.net, original.to(self.dtype), tile_size, self.tile_blend, self.max_pixels)
            else:
                y = self._network(original)
            if preserve_color:
                y = preserve_colors(y, original)
            if strength != 1:
                y = torch.lerp(original, y, float(strength))
            outs.append(y.clamp_(0, 1).to(x.device, x.dtype))
        return outs[0] if len(outs) == 1 else torch.cat(outs)

    # -- images, frames, batches ----------------------------------------------------------------
    def stylize(self, image, *, strength: float = 1.0, preserve_color: bool = False, bgr: bool = False,
                tile: bool | int | str = "auto"):
        """Stylize a PIL image, a numpy frame/batch, a tensor, or a list of any of these."""
        opts = dict(strength=strength, preserve_color=preserve_color, tile=tile)
        if isinstance(image, (list, tuple)):
            return self._stylize_list(list(image), bgr=bgr, **opts)
        if isinstance(image, torch.Tensor):
            return self.stylize_tensor(image, **opts)
        if isinstance(image, Image.Image):
            return tensor_to_pil(self.stylize_tensor(pil_to_tensor(to_rgb(image)), **opts))
        if isinstance(image, np.ndarray):
            x, restore = array_to_tensor(image, bgr=bgr)
            return restore(self.stylize_tensor(x, **opts))
        raise TypeError(f"cannot stylize a {type(image).__name__}: pass a PIL image, a numpy array or a tensor")

    __call__ = stylize

    def _stylize_list(self, images: list, bgr: bool, **opts) -> list:
        """Batch same-sized items together (video frames, folders of equal photos)."""
        results: list = [None] * len(images)
        groups: dict[tuple, list[int]] = {}
        for i, image in enumerate(images):
            if isinstance(image, Image.Image):
                key = ("pil", image.size)
            elif isinstance(image, np.ndarray) and image.ndim == 3:
                key = ("np", image.shape, image.dtype.str)
            elif isinstance(image, torch.Tensor) and image.dim() == 3:
                key = ("t", tuple(image.shape), image.dtype, image.device)
            else:
                key = ("single", i)
            groups.setdefault(key, []).append(i)
        for key, idx in groups.items():
            if key[0] == "single":
                results[idx[0]] = self.stylize(images[idx[0]], bgr=bgr, **opts)
            elif key[0] == "pil":
                batch = torch.stack([pil_to_tensor(to_rgb(images[i])) for i in idx])
                for i, y in zip(idx, self.stylize_tensor(batch, **opts)):
                    results[i] = tensor_to_pil(y)
            elif key[0] == "np":
                ys = self.stylize(np.stack([images[i] for i in idx]), bgr=bgr, **opts)
                for i, y in zip(idx, ys):
                    results[i] = y
            else:
                for i, y in zip(idx, self.stylize_tensor(torch.stack([images[i] for i in idx]), **opts)):
                    results[i] = y
        return results


def array_to_tensor(array: np.ndarray, bgr: bool = False):
    """(H,W,3) or (N,H,W,3) uint8/float array → ((N,3,H,W) float tensor, function back to the array's form)."""
    if array.ndim not in (3, 4) or array.shape[-1] != 3:
        raise ValueError(f"expected an image array (H,W,3) or (N,H,W,3), got shape {array.shape}")
    single, dtype = array.ndim == 3, array.dtype
    batch = array[None] if single else array
    if bgr:
        batch = batch[..., ::-1]
    if dtype == np.uint8:
        x = torch.from_numpy(np.ascontiguousarray(batch)).permute(0, 3, 1, 2).float().div_(255.0)
    elif np.issubdtype(dtype, np.floating):
        x = torch.from_numpy(np.ascontiguousarray(batch, dtype=np.float32)).permute(0, 3, 1, 2)
    else:
        raise ValueError(f"expected a uint8 or float image array, got {dtype}")

    def restore(y: torch.Tensor) -> np.ndarray:
        out = y.permute(0, 2, 3, 1)
        out = out.mul(255).round_().clamp_(0, 255).to(torch.uint8) if dtype == np.uint8 else out.to(torch.float32)
        out = out.cpu().numpy()
        if bgr:
            out = np.ascontiguousarray(out[..., ::-1])
        out = out.astype(dtype, copy=False)
        return out[0] if single else out

    return x, restore


def safe_filename(name: str) -> str:
    """A style name as a file name (exports are named after their style)."""
    return re.sub(r"[^A-Za-z0-9_.-]+", "_", name).strip("._") or "style"
