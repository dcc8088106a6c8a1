"""The model-file format: what an exported style (`<style>.safetensors`) or a Lightning
`.ckpt` holds, read without executing any code, and the network rebuilt from it.

Written by `stylenet.export`, read by `stylenet.inference` (and by training's `init_from`).
An export is safetensors: the transformation network's weights plus string metadata
(`format`, `format_version`, `arch`, `style_name`, `loss`, ...; a multi-style network also
`styles`, the JSON list of its style names in order); a checkpoint is read with
`torch.load(weights_only=True)`. Imports only torch, safetensors, pydantic and the network definition.

Everything in a file is untrusted: `read_model_file` validates it in one place before any of
it is used or built (`stylenet.schema`: types, ranges, sizes, nesting, dtypes; then
`check_architecture`: the claimed network against the weights' shapes), and every violation
is a ModelLoadError naming the field.
"""

from __future__ import annotations

import inspect
import json
import math
import os
import re
import warnings
from dataclasses import dataclass, field
from pathlib import Path

import torch

from . import schema
from .errors import UserError
from .transformer import TransformerNet

#: `format` metadata of an exported style, and the layout version this code reads
FORMAT = "stylenet.transformer"
FORMAT_VERSION = 1
EXPORT_SUFFIX = ".safetensors"
#: networks a model file may name in its `arch` metadata
ARCHITECTURES = {"TransformerNet": TransformerNet}


class ModelLoadError(UserError, ValueError):
    """A model file is missing, unreadable, unsafe, or made for another architecture."""


#: what to do about a file whose contents are wrong
REEXPORT = "re-export it with python scripts/export.py"


def invalid(path, exc: schema.SchemaError, advice: str = REEXPORT) -> ModelLoadError:
    """A schema violation as the error the user sees: the file, the field, the fix."""
    return ModelLoadError(f"{path}: {exc}; {advice}")


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

    @property
    def styles(self) -> list[str]:
        """The names of the styles the network holds, in its order: the `styles` metadata (a
        multi-style network), else the one `style_name`."""
        try:
            return schema.style_names(self.metadata) or [self.style_name]
        except schema.SchemaError as exc:
            raise invalid(self.path, exc) from None


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
    """Read an exported .safetensors style or a Lightning .ckpt without executing any code,
    everything in it validated (the schema, then the architecture against the weights)."""
    path = Path(path)
    if not path.exists():
        raise ModelLoadError(f"model file not found: {path}")
    if path.is_dir():
        raise ModelLoadError(f"expected a model file, got a folder: {path} (pass checkpoints/<style>/<style>.safetensors)")
    if path.stat().st_size == 0:
        raise ModelLoadError(f"cannot load {path}: the file is empty (0 bytes)")
    if path.suffix.lower() == ".onnx":
        raise ModelLoadError(f"{path} is an ONNX graph: run it with onnxruntime; Stylizer loads .safetensors exports and .ckpt checkpoints")
    kind = _sniff(path)
    if kind in ("safetensors", "torch"):
        model = _read_safetensors(path) if kind == "safetensors" else _read_checkpoint(path)
        check_architecture(model)
        return model
    raise ModelLoadError(
        f"{path} is not a stylenet model file (neither safetensors nor a PyTorch checkpoint); "
        "pass an export made by scripts/export.py or a checkpoints/<style>/last.ckpt"
    )


def _read_safetensors(path: Path) -> ModelFile:
    from safetensors import SafetensorError, safe_open

    try:
        with safe_open(str(path), framework="pt", device="cpu") as f:
            metadata = dict(f.metadata() or {})
            if metadata.get("format") != FORMAT:
                raise ModelLoadError(
                    f"{path} is a safetensors file but not a stylenet export (no format={FORMAT!r} metadata); "
                    "export a trained style with python scripts/export.py ckpt=checkpoints/<style>/last.ckpt"
                )
            try:
                checked = schema.export_metadata(metadata)
                if checked.format_version > FORMAT_VERSION:
                    raise ModelLoadError(f"{path} uses export format {checked.format_version} (format_version), this stylenet reads up to "
                                         f"{FORMAT_VERSION}: upgrade stylenet")
                names = list(f.keys())
                # dtypes, shapes and count from the header, before a single tensor is read
                schema.tensor_header({k: (f.get_slice(k).get_dtype(), f.get_slice(k).get_shape()) for k in names})
            except schema.SchemaError as exc:
                raise invalid(path, exc) from None
            state = {k: f.get_tensor(k) for k in names}
    except (SafetensorError, OSError, ValueError) as exc:
        if isinstance(exc, ModelLoadError):
            raise
        raise ModelLoadError(
            f"cannot read {path}: {exc}; the file is truncated or corrupt, re-export it with "
            "python scripts/export.py ckpt=checkpoints/<style>/last.ckpt"
        ) from None
    return ModelFile(path, checked.arch, state, metadata)


#: types the weights-only unpickler refuses that run no code (reported as odd, not as a payload)
HARMLESS = {f"builtins.{name}" for name in ("bytes", "bytearray", "set", "frozenset", "complex", "range", "slice")}


def _load_failure(exc: BaseException) -> str:
    """Why torch.load(weights_only=True) refused a file, in our words: torch's own text
    suggests weights_only=False, which would run the code in a file the user did not make."""
    text = str(exc)
    advice = ("weights_only", "Weights only load failed", "trusted source", "file an issue", "Check the documentation")
    detail = next((ln.strip() for ln in text.splitlines() if ln.strip() and not any(a in ln for a in advice)), "")
    if "TorchScript" in text or "constants.pkl" in text:
        return "it is a TorchScript archive; load it with torch.jit.load, or pass the .safetensors export"
    if (found := re.search(r"GLOBAL ([\w.]+)", text)) and found.group(1) in HARMLESS:
        return (f"it holds a Python {found.group(1).removeprefix('builtins.')}, which a checkpoint never does "
                "(stylenet reads tensors and plain data only: use a checkpoint stylenet wrote, or an exported .safetensors)")
    if found:
        return (f"it holds Python objects ({found.group(1)}) that would run code when unpickled; refusing to load it "
                "(stylenet reads only weights: use a checkpoint stylenet wrote, or an exported .safetensors)")
    if isinstance(exc, EOFError):
        return "the file ends early (truncated: was its write interrupted?)"
    if "Unsupported operand" in text or not detail:
        return "the file is truncated, corrupt, or a pickle of something other than a checkpoint"
    return f"the file is truncated, corrupt or not a checkpoint ({detail[:200]})"


def load_checkpoint(path: str | os.PathLike) -> dict:
    """A Lightning checkpoint's dict via torch.load(weights_only=True): tensors and plain data
    only, never code; every failure a ModelLoadError that says what the file is."""
    path = Path(path)
    if path.is_dir():
        raise ModelLoadError(f"expected a checkpoint file, got a folder: {path}")
    if path.stat().st_size == 0:
        raise ModelLoadError(f"cannot load {path}: the file is empty (0 bytes)")
    if _sniff(path) == "safetensors":
        raise ModelLoadError(f"{path} is an exported style (.safetensors), not a training checkpoint")
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # torch's notes on the file's pickle protocol: the error below says it
            ckpt = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # noqa: BLE001 - every failure of an untrusted file is "cannot load"
        raise ModelLoadError(f"cannot load {path}: {_load_failure(exc)}") from None
    if not isinstance(ckpt, dict) or not isinstance(ckpt.get("state_dict"), dict):
        raise ModelLoadError(f"{path} is not a Lightning checkpoint (no state_dict); pass checkpoints/<style>/last.ckpt or an export")
    try:
        schema.checkpoint(ckpt)  # the plain data bounded, the fields stylenet reads typed
    except schema.SchemaError as exc:
        raise invalid(path, exc, "the file is damaged or was not written by stylenet; use another checkpoint") from None
    return ckpt


def _read_checkpoint(path: Path) -> ModelFile:
    ckpt = load_checkpoint(path)
    hparams = ckpt.get("hyper_parameters") or {}
    prefix = "transformer."
    state = {k[len(prefix):]: v for k, v in ckpt["state_dict"].items() if k.startswith(prefix)}
    if not state or not isinstance(hparams.get("model"), dict):
        raise ModelLoadError(f"{path} is a checkpoint but not a stylenet one (no transformer.* weights or model hyper-parameters)")
    metadata = checkpoint_metadata(ckpt, source=path.name)
    return ModelFile(path, {"class": "TransformerNet", **hparams["model"]}, state, metadata)


def checkpoint_metadata(ckpt: dict, source: str = "") -> dict[str, str]:
    """The self-description an export carries (safetensors metadata is str → str)."""
    hp = ckpt.get("hyper_parameters") or {}
    from . import __version__

    styles = {"styles": json.dumps(list(hp["style_names"]))} if hp.get("style_names") else {}
    return {
        **styles,
        "format": FORMAT,
        "format_version": str(FORMAT_VERSION),
        "style_name": str(hp.get("style_name", "style")),
        "arch": json.dumps({"class": "TransformerNet", **dict(hp.get("model") or {})}, sort_keys=True, default=str),
        "loss": json.dumps(hp.get("loss") or {}, sort_keys=True, default=str),
        "training_steps": str(int(ckpt.get("global_step", 0))),
        "image_size": str(hp.get("image_size", "")),
        "batch_size": str(hp.get("batch_size", "")),
        "stylenet_version": str(hp.get("stylenet_version") or __version__),
        "exported_by": f"stylenet {__version__}",
        "source": source,
    }


def check_finite(path, state: dict) -> None:
    """Weights are dense floating-point tensors (`schema.weights`: an int8 or bool network would
    paint a flat colour), and none NaN or infinite (a diverged run: an all-black picture)."""
    try:
        schema.weights(state)
    except schema.SchemaError as exc:
        raise invalid(path, exc, "the file is not a stylenet model") from None
    for key, value in state.items():
        if not bool(torch.isfinite(value).all()):
            raise ModelLoadError(f"{path}: weight {key} holds NaN or infinite values (the training diverged); "
                                 "use an earlier checkpoint (checkpoints/<style>/step_NNNNNN.ckpt) or train again with a lower optim.lr")


def check_architecture(model: ModelFile) -> tuple[type, dict]:
    """The network class and its arguments, checked against the weights actually in the file
    before anything is built: recorded metadata may lie (width=100000 would allocate 720 GB,
    num_residual=100000000 build blocks until memory runs out), the tensors cannot."""
    where, arch = model.path, model.arch
    example = '{"class": "TransformerNet", "width": 32, "num_residual": 5}'
    try:
        schema.check_plain(arch, "arch")  # read_model_file did; a ModelFile made in code gets the same bounds
    except schema.SchemaError as exc:
        raise invalid(where, exc) from None
    if not isinstance(arch, dict):
        raise ModelLoadError(f"{where}: its 'arch' metadata is {arch!r:.80} ({type(arch).__name__}), not an object like "
                             f"{example}; re-export it with python scripts/export.py")
    arch = dict(arch)
    cls_name = arch.pop("class", "TransformerNet")
    cls = ARCHITECTURES.get(cls_name) if isinstance(cls_name, str) else None
    if cls is None:
        raise ModelLoadError(f"{where} was made for architecture {cls_name!r:.80}; this stylenet knows {', '.join(ARCHITECTURES)}")
    params = {k: p.default for k, p in inspect.signature(cls.__init__).parameters.items() if k != "self"}
    if unknown := sorted(set(arch) - set(params)):
        raise ModelLoadError(f"{where}: its arch names {', '.join(map(repr, unknown))}, which {cls_name} does not take "
                             f"(it takes {', '.join(params)}); the file was made by another program or version")
    for key, value in arch.items():
        if isinstance(params[key], bool):  # a switch (separable): true or false, nothing else
            if not isinstance(value, bool):
                raise ModelLoadError(f"{where}: its arch says {key}={value!r:.40}, not true or false; re-export it with python scripts/export.py")
        elif isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value) or value != int(value):
            raise ModelLoadError(f"{where}: its arch says {key}={value!r:.40}, not a whole number; re-export it with python scripts/export.py")
    recorded = {**params, **{k: v if isinstance(v, bool) else int(v) for k, v in arch.items()}}
    check_finite(where, model.state_dict)
    try:
        actual = cls.arch_of(model.state_dict)
    except (KeyError, IndexError, AttributeError):
        raise ModelLoadError(f"{where}: its tensors are not a {cls_name} (no {cls_name} weights found); "
                             "the file was made by another program") from None
    if recorded != actual:
        raise ModelLoadError(f"{where}: its arch metadata says {_args(recorded)}, but its weights are a {cls_name} with "
                             f"{_args(actual)}; the metadata is wrong: re-export it with python scripts/export.py")
    names = model.styles
    if len(names) != recorded.get("num_styles", 1) or (recorded.get("num_styles", 1) > 1 and "styles" not in model.metadata):
        raise ModelLoadError(f"{where}: its weights hold {recorded.get('num_styles', 1)} style(s), but its 'styles' metadata "
                             f"names {len(names) if 'styles' in model.metadata else 'none'}; re-export it with python scripts/export.py")
    with torch.device("meta"):  # shapes only: nothing allocated
        expected = {k: tuple(v.shape) for k, v in cls(**recorded).state_dict().items()}
    got = {k: tuple(v.shape) for k, v in model.state_dict.items()}
    if got != expected:
        missing, extra = sorted(set(expected) - set(got)), sorted(set(got) - set(expected))
        wrong = [f"{k} {got[k]} (expected {expected[k]})" for k in sorted(set(got) & set(expected)) if got[k] != expected[k]]
        detail = "; ".join(part for part in (
            f"missing {', '.join(missing[:3])}" if missing else "", f"unexpected {', '.join(extra[:3])}" if extra else "",
            f"wrong shape {', '.join(wrong[:3])}" if wrong else "") if part)
        raise ModelLoadError(f"{where}: its weights do not fit {cls_name}({_args(recorded)}) ({detail}); "
                             "the file is damaged or was made for a different architecture")
    return cls, recorded


def _args(arch: dict) -> str:
    return ", ".join(f"{k}={v}" for k, v in arch.items())


def build_network(model: ModelFile) -> TransformerNet:
    """Rebuild the network from its architecture (checked against the weights first, the style
    names against its styles) and load the weights."""
    cls, arch = check_architecture(model)
    net = cls(**arch)
    net.load_state_dict({k: v.float() for k, v in model.state_dict.items()}, strict=True)
    return net.eval()


def safe_filename(name: str) -> str:
    """A style name as a file name (exports are named after their style): `outputs.safe_name`."""
    from .outputs import safe_name

    return safe_name(name)
