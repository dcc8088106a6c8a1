"""The shape of every untrusted structure in a model file, checked before anything reads it.

A model file comes from anywhere (a download, a colleague, a fuzzer). What it holds is
validated here, in one pass, before any of it is used: the safetensors header (tensor
names, dtypes, shapes) and its string metadata (`format_version`, the JSON of `arch`,
`styles`, `loss`, ...), and the plain data a Lightning checkpoint unpickles to with
`torch.load(weights_only=True)` (`state_dict`, `hyper_parameters`, `global_step`). Types,
ranges and sizes are pydantic models; what pydantic does not bound is bounded first: the
length of a JSON text and its nesting depth (a list 10000 deep would hit Python's recursion
limit), the number of items, integers too long to convert. Only floating-point weights pass:
int8 or bool tensors would load and paint a flat colour.

Whether the weights fit the architecture the file claims is checked by
`stylenet.modelfile.check_architecture`, which builds the network on the meta device.
A violation is a `SchemaError` naming the field; `stylenet.modelfile` adds the file's name.
"""

from __future__ import annotations

import json
import math
import re
from typing import Annotated, Any, Literal

import torch
from pydantic import AfterValidator, BaseModel, BeforeValidator, ConfigDict, Field, StrictInt, StrictStr, ValidationError
from pydantic_core import PydanticCustomError

#: a metadata value parsed as JSON (arch, styles, loss): a real one is under 2 KB
MAX_JSON_CHARS = 1 << 16
#: nesting of JSON values and of a checkpoint's plain data (Lightning's own: 7)
MAX_DEPTH = 32
#: dicts, lists and values in a checkpoint besides its tensors (a real one: ~500)
MAX_ITEMS = 1_000_000
#: a string in a checkpoint's plain data or an export's metadata value that is not JSON
MAX_TEXT = 1 << 16
#: a style name, a tensor name
MAX_NAME = 256
MAX_STYLES = 4096
MAX_TENSORS = 10_000
#: a tensor's dimensions, and each dimension's size
MAX_DIMS = 8
MAX_SIZE = 1 << 31
#: an integer in metadata or hyper-parameters (a 5000-digit one would not even convert to float)
MAX_INT = 1 << 62
#: the dtypes a network's weights may have: safetensors' names → torch's
WEIGHT_DTYPES = {"F16": torch.float16, "BF16": torch.bfloat16, "F32": torch.float32, "F64": torch.float64}


class SchemaError(ValueError):
    """A field of an untrusted structure has the wrong type, range, size or nesting."""

    def __init__(self, field: str, message: str):
        super().__init__(message)
        self.field = field


def _shown(value: Any, width: int = 60) -> str:
    if isinstance(value, int) and abs(value) > MAX_INT:  # repr of a 5000-digit int raises
        return f"<an integer of {int(abs(value).bit_length() * 0.30103) + 1} digits>"
    text = repr(value)
    return text if len(text) <= width else text[: width - 3] + "..."


# -- bounds that come before any parsing -------------------------------------------------------
def json_depth(text: str) -> int:
    """How deeply the JSON `text` nests, counted without parsing it (brackets outside strings)."""
    depth = peak = 0
    in_string = escaped = False
    for ch in text:
        if in_string:
            if escaped:
                escaped = False
            elif ch == "\\":
                escaped = True
            elif ch == '"':
                in_string = False
        elif ch == '"':
            in_string = True
        elif ch in "[{":
            depth += 1
            peak = max(peak, depth)
        elif ch in "]}":
            depth -= 1
    return peak


def check_plain(value: Any, field: str, *, string_keys: bool = True, tensors: bool = False) -> None:
    """Plain data (what JSON or a weights-only unpickle gives) of bounded depth, count and size:
    dicts (with string keys where `string_keys`), lists, tuples, strings of at most MAX_TEXT,
    finite floats, integers within ±MAX_INT, bools, None, and tensors where `tensors`. Walked
    without recursion, so a 10000-deep or self-referencing structure is refused, not a
    RecursionError; shared sub-lists count every time they are reached (no exponential blow-up)."""
    stack, items = [(value, field, 0)], 0
    while stack:
        item, where, depth = stack.pop()
        items += 1
        if items > MAX_ITEMS:
            raise SchemaError(field, f"{field or 'it'} holds more than {MAX_ITEMS} items")
        where = where if len(where) <= 80 else where[:60] + "..." + where[-12:]
        if isinstance(item, dict):
            children = []
            for key, child in item.items():
                if string_keys and not isinstance(key, str):
                    raise SchemaError(where, f"{where} has the key {_shown(key)} ({type(key).__name__}), not a string")
                children.append((child, (f"{where}.{key}" if where else key) if isinstance(key, str) else f"{where}[{_shown(key, 20)}]"))
        elif isinstance(item, (list, tuple)):
            children = [(child, f"{where}[{i}]") for i, child in enumerate(item)]
        else:
            _check_leaf(item, where, tensors)
            continue
        if depth + 1 > MAX_DEPTH and children:
            raise SchemaError(where, f"{where} nests deeper than {MAX_DEPTH} levels")
        stack.extend((child, name, depth + 1) for child, name in children)


def _check_leaf(item: Any, where: str, tensors: bool) -> None:
    if item is None or isinstance(item, bool):
        return
    if isinstance(item, int):
        if abs(item) > MAX_INT:
            raise SchemaError(where, f"{where} is {_shown(item)}, an integer beyond ±2^62")
    elif isinstance(item, float):
        if not math.isfinite(item):
            raise SchemaError(where, f"{where} is {item}, not a finite number")
    elif isinstance(item, str):
        if len(item) > MAX_TEXT:
            raise SchemaError(where, f"{where} is a string of {len(item)} characters (at most {MAX_TEXT})")
    elif not (tensors and isinstance(item, torch.Tensor)):
        raise SchemaError(where, f"{where} is a {type(item).__name__}, not plain data")


def parse_json(text: Any, field: str) -> Any:
    """A metadata string as JSON, its length and depth bounded before json.loads sees it."""
    if not isinstance(text, str):
        raise SchemaError(field, f"{field} metadata is a {type(text).__name__}, not a string")
    if len(text) > MAX_JSON_CHARS:
        raise SchemaError(field, f"{field} metadata is {len(text)} characters long (at most {MAX_JSON_CHARS})")
    if json_depth(text) > MAX_DEPTH:
        raise SchemaError(field, f"{field} metadata nests deeper than {MAX_DEPTH} levels")
    try:
        value = json.loads(text, parse_constant=_no_constant)
    except (ValueError, RecursionError) as exc:  # JSONDecodeError, and int() of a 5000-digit number
        raise SchemaError(field, f"'{field}' metadata is {_shown(text)}, not JSON ({str(exc)[:80]})") from None
    check_plain(value, field)
    return value


def _no_constant(name: str):
    raise ValueError(f"{name} is not a number JSON allows")


def whole_number(text: Any, field: str, *, minimum: int = 0) -> int:
    """A metadata string of digits as an int: at most 18 of them (int() of 5000 raises, of 4000 does not)."""
    if not isinstance(text, str) or not re.fullmatch(r"\s*[-+]?\d{1,18}\s*", text) or int(text) < minimum:
        raise SchemaError(field, f"{field}={_shown(text)} in its metadata, not a number (a whole number >= {minimum})")
    return int(text)


# -- pydantic models ------------------------------------------------------------------------
def _json(field: str):
    return BeforeValidator(lambda text: _pydantic(parse_json, text, field))


def _pydantic(check, value, field: str):
    """A SchemaError raised inside a validator, kept as pydantic's error with our words."""
    try:
        return check(value, field)
    except SchemaError as exc:
        raise PydanticCustomError("stylenet", "{message}", {"message": str(exc)}) from None


def _distinct(names: list[str]) -> list[str]:
    if len(set(names)) != len(names):
        raise PydanticCustomError("stylenet", "names a style twice: {names}", {"names": _shown(names)})
    return names


StyleName = Annotated[StrictStr, Field(min_length=1, max_length=MAX_NAME)]
StyleNames = Annotated[list[StyleName], Field(min_length=1, max_length=MAX_STYLES), AfterValidator(_distinct)]
Count = Annotated[StrictInt, Field(ge=0, le=MAX_INT)]


class ExportMetadata(BaseModel):
    """The string metadata of an exported style (`stylenet.export`), decoded."""

    model_config = ConfigDict(extra="allow", frozen=True)

    format: Literal["stylenet.transformer"]
    format_version: Annotated[int, BeforeValidator(lambda v: _pydantic(whole_number, v or "0", "format_version"))] = 0
    arch: Annotated[Any, _json("arch")]
    style_name: StyleName | None = None
    styles: Annotated[list[str], BeforeValidator(lambda v: _pydantic(lambda text, _: style_names({"styles": text}), v, "styles"))] = None
    loss: Annotated[dict[StrictStr, Any], _json("loss")] = None
    dtype: Literal["float16", "bfloat16", "float32", "float64"] = None
    training_steps: Annotated[int, BeforeValidator(lambda v: _pydantic(whole_number, v, "training_steps"))] = None


class TensorHeader(BaseModel):
    """One tensor of a safetensors file, as its header declares it."""

    model_config = ConfigDict(frozen=True)

    dtype: str
    shape: Annotated[list[Annotated[StrictInt, Field(ge=0, le=MAX_SIZE)]], Field(max_length=MAX_DIMS)]


class HyperParameters(BaseModel):
    """What stylenet reads of a checkpoint's `hyper_parameters` (the rest passes, bounded by check_plain)."""

    model_config = ConfigDict(extra="allow", frozen=True)

    model: dict[StrictStr, Any] | None = None  # its values: check_architecture
    style_name: StyleName | None = None
    style_names: StyleNames | None = None
    loss: dict[StrictStr, Any] | None = None
    stylenet_version: Annotated[StrictStr, Field(max_length=MAX_NAME)] | None = None


class Checkpoint(BaseModel):
    """The parts of a Lightning checkpoint stylenet reads: weights, hyper-parameters, step."""

    model_config = ConfigDict(extra="allow", frozen=True, arbitrary_types_allowed=True)

    state_dict: Annotated[dict[Annotated[StrictStr, Field(max_length=MAX_NAME)], torch.Tensor], Field(max_length=MAX_TENSORS)]
    hyper_parameters: HyperParameters | None = None
    global_step: Count = 0


def _first_error(exc: ValidationError, where: str) -> SchemaError:
    """pydantic's first complaint as one sentence naming the field (`arch`, `state_dict[3]`, ...)."""
    error = exc.errors(include_url=False)[0]
    field = ""
    for part in error["loc"]:
        field += f"[{part}]" if isinstance(part, int) else part if part == "[key]" else (f".{part}" if field else str(part))
    if error["type"] == "stylenet":
        return SchemaError(field, error["msg"])
    if error["type"] == "missing":
        return SchemaError(field, f"its {where} has no {field}")
    message = error["msg"][:1].lower() + error["msg"][1:]
    return SchemaError(field, f"{field}={_shown(error.get('input'))} in its {where}: {message}")


def _validate(model: type[BaseModel], data: Any, where: str):
    try:
        return model.model_validate(data)
    except ValidationError as exc:
        raise _first_error(exc, where) from None


# -- the checks modelfile calls ----------------------------------------------------------------
def export_metadata(metadata: dict) -> ExportMetadata:
    """An export's safetensors metadata (str → str), decoded and checked."""
    if len(metadata) > MAX_TENSORS:
        raise SchemaError("metadata", f"its metadata has {len(metadata)} entries")
    for key, value in metadata.items():
        if not isinstance(key, str) or not isinstance(value, str):
            raise SchemaError(str(key), f"metadata {_shown(key)}: {_shown(value)} is not a string")
        if len(value) > MAX_TEXT:
            raise SchemaError(key, f"{key} metadata is {len(value)} characters long (at most {MAX_TEXT})")
    return _validate(ExportMetadata, metadata, "metadata")


def tensor_header(header: dict[str, tuple[str, list[int]]]) -> None:
    """The tensors a safetensors file declares: how many, their names, dtypes and shapes;
    read from the header before any tensor is."""
    if not header:
        raise SchemaError("tensors", "it holds no tensors")
    if len(header) > MAX_TENSORS:
        raise SchemaError("tensors", f"it holds {len(header)} tensors (at most {MAX_TENSORS})")
    for name, (dtype, shape) in header.items():
        if len(name) > MAX_NAME:
            raise SchemaError(name, f"a tensor name is {len(name)} characters long (at most {MAX_NAME})")
        _validate(TensorHeader, {"dtype": dtype, "shape": shape}, f"tensor {name!r}")
        if dtype not in WEIGHT_DTYPES:
            raise SchemaError(name, f"tensor {name!r} is {dtype}, not floating point ({', '.join(WEIGHT_DTYPES)}): not network weights")


def checkpoint(ckpt: Any) -> Checkpoint:
    """A checkpoint's unpickled dict: bounded plain data, then the fields stylenet reads typed."""
    if not isinstance(ckpt, dict) or "state_dict" not in ckpt:
        raise SchemaError("state_dict", "is not a Lightning checkpoint (no state_dict)")
    check_plain(ckpt, "", string_keys=False, tensors=True)
    for key in ("state_dict", "hyper_parameters"):  # the parts stylenet reads: string keys throughout
        if isinstance(ckpt.get(key), dict):
            check_plain(ckpt[key], key, tensors=key == "state_dict")
    return _validate(Checkpoint, ckpt, "checkpoint")


def weights(state: dict, where: str = "weight") -> None:
    """A network's tensors: dense floating point on the CPU, with at most MAX_DIMS dimensions."""
    if len(state) > MAX_TENSORS:
        raise SchemaError("tensors", f"it holds {len(state)} tensors (at most {MAX_TENSORS})")
    allowed = set(WEIGHT_DTYPES.values())
    for key, value in state.items():
        if not isinstance(key, str):
            raise SchemaError(str(key), f"it has a {where} named {_shown(key)} ({type(key).__name__}), not a string")
        if not isinstance(value, torch.Tensor):
            raise SchemaError(key, f"its entry {key!r} is a {type(value).__name__}, not a tensor")
        if value.layout != torch.strided or value.is_quantized or value.device.type != "cpu":
            raise SchemaError(key, f"{where} {key} is a {value.layout} {value.device.type} tensor, not a dense one in memory")
        if value.dtype not in allowed:
            raise SchemaError(key, f"{where} {key} is {str(value.dtype).removeprefix('torch.')}, not floating point "
                                   "(float16, bfloat16, float32, float64): not network weights")
        if value.dim() > MAX_DIMS:
            raise SchemaError(key, f"{where} {key} has {value.dim()} dimensions")


def style_names(metadata: dict) -> list[str] | None:
    """The `styles` metadata as a list of distinct names (None: a single-style file)."""
    if "styles" not in metadata:
        return None
    try:
        names = parse_json(metadata["styles"], "styles")
    except SchemaError:
        names = None
    if not isinstance(names, list) or not names or len(names) > MAX_STYLES \
            or not all(isinstance(n, str) and 0 < len(n) <= MAX_NAME for n in names) or len(set(names)) != len(names):
        raise SchemaError("styles", f"its 'styles' metadata is {_shown(metadata['styles'], 80)}, not a JSON list of distinct style names")
    return names


__all__ = ["Checkpoint", "ExportMetadata", "HyperParameters", "SchemaError", "checkpoint", "check_plain", "export_metadata",
           "json_depth", "parse_json", "style_names", "tensor_header", "weights", "whole_number"]
