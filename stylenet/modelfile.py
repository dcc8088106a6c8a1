"""The model-file format: what an exported style (`<style>.safetensors`) or a Lightning
`.ckpt` holds, read without executing any code, and the network rebuilt from it.

Written by `stylenet.export`, read by `stylenet.inference` (and by training's `init_from`).
An export is safetensors: the transformation network's weights plus string metadata
(`format`, `format_version`, `arch`, `style_name`, `loss`, ...); a checkpoint is read with
`torch.load(weights_only=True)`. Imports only torch, safetensors and the network definition.
"""

from __future__ import annotations

import json
import os
import re
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import torch

from .errors import UserError
from .transformer import TransformerNet

#: `format` metadata of an exported style, and the layout version this code reads
FORMAT = "stylenet.transformer"
FORMAT_VERSION = 1
EXPORT_SUFFIX = ".safetensors"
#: networks a model file may name in its `arch` metadata
ARCHITECTURES = {"TransformerNet": TransformerNet}
CHECKPOINT_DIRS = ("checkpoints",)
REPO_ROOT = Path(__file__).resolve().parent.parent


class ModelLoadError(UserError, ValueError):
    """A model file is missing, unreadable, unsafe, or made for another architecture."""


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
    # safetensors first: its 8-byte header length may start with any byte, 0x80 included
    # (a header of 6272 bytes does), which would otherwise read as a pickle's PROTO opcode
    if len(head) == 9 and head[8:9] == b"{" and int.from_bytes(head[:8], "little") < (100 << 20):
        return "safetensors"
    if head[:4] == b"PK\x03\x04" or head[:1] == b"\x80":
        return "torch"
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


def safe_filename(name: str) -> str:
    """A style name as a file name (exports are named after their style)."""
    return re.sub(r"[^A-Za-z0-9_.-]+", "_", name).strip("._") or "style"
