"""Option types and ranges, checked on the composed config before a command runs.

One declarative table, `stylenet/configs/constraints.yaml`, says for each option what it
takes (`size: {type: int, ge: 16, le: 16384}`); pydantic checks the values against it, and
the first violation is a UserError naming the option, the value and what it takes. So no
command meets `size=abc`, `data.batch_size=0` or `max_frames=-1` deep inside (a traceback,
or exit 0 with nothing written), and a style weight of 1e308 cannot overflow to inf.
"""

from __future__ import annotations

import functools
from typing import Annotated, Any, Literal

from pydantic import BeforeValidator, Field, StrictBool, StrictStr, TypeAdapter, ValidationError

from ..errors import UserError
from ..resources import CONFIG_DIR

CONSTRAINTS = CONFIG_DIR / "constraints.yaml"
BOUNDS = ("ge", "gt", "le", "lt")


class OptionError(UserError, ValueError):
    """An option's value has the wrong type or is out of its range."""


@functools.cache
def table() -> dict[str, dict[str, dict]]:
    """The constraints file: {section: {dotted key: spec}} (anchors resolved by the YAML loader)."""
    import yaml

    with open(CONSTRAINTS, encoding="utf-8") as f:
        return {name: section for name, section in yaml.safe_load(f).items() if name != "limits"}


def constraints(config_name: str, mode: str | None = None) -> dict[str, dict]:
    """The specs that apply to a command's config: `all`, then its own section over it, then
    the section of its `mode` (`benchmark/gatys`: config benchmark, mode=gatys)."""
    sections = table()
    return {**sections.get("all", {}), **sections.get(config_name, {}), **(sections.get(f"{config_name}/{mode}", {}) if mode else {})}


def _no_bool(value):
    if isinstance(value, bool):
        raise ValueError("a bool is not a number")
    return value


@functools.cache
def _adapter(spec: tuple) -> TypeAdapter:
    spec = dict(spec)
    kind = str(spec.get("type", "str"))
    outer, _, inner = kind.partition("[")
    inner = inner.rstrip("]") if inner else outer
    bounds = {k: spec[k] for k in BOUNDS if k in spec}
    base: Any
    if spec.get("choices"):
        base = Literal[tuple(spec["choices"])]
    elif inner == "int":
        base = Annotated[int, BeforeValidator(_no_bool), Field(**bounds)]
    elif inner == "float":
        base = Annotated[float, BeforeValidator(_no_bool), Field(allow_inf_nan=False, **bounds)]
    elif inner == "bool":
        base = StrictBool
    else:
        base = Annotated[StrictStr, Field(pattern=spec["pattern"])] if "pattern" in spec else StrictStr
    if outer == "list":
        length = {"min_length": spec["length"], "max_length": spec["length"]} if "length" in spec else {}
        base = Annotated[list[base], Field(**length)]
    elif outer == "dict":
        base = dict[StrictStr, base]
    return TypeAdapter(base | None if spec.get("nullable") else base)


def _freeze(spec: dict) -> tuple:
    return tuple(sorted((k, tuple(v) if isinstance(v, list) else v) for k, v in spec.items()))


def _range(spec: dict) -> str:
    if "ge" in spec and "le" in spec:
        return f"between {spec['ge']:g} and {spec['le']:g}"
    words = {"ge": "at least", "gt": "greater than", "le": "at most", "lt": "less than"}
    return " and ".join(f"{words[k]} {spec[k]:g}" for k in BOUNDS if k in spec) or "a finite number"


def explain(key: str, value: Any, spec: dict, error: dict) -> str:
    """One pydantic error as the user reads it: the option, its value, and what it takes."""
    where = key + "".join(f"[{p}]" if isinstance(p, int) else f".{p}" for p in error["loc"] if p not in ("[key]",))
    got = error.get("input", value)
    kind, inner = str(spec.get("type", "str")), error["type"]
    shown = repr(got) if isinstance(got, str) else got
    if inner in ("int_parsing", "int_type", "int_from_float", "value_error") and "int" in kind:
        return f"{where}={shown} is not a whole number"
    if inner in ("float_parsing", "float_type", "value_error") and "float" in kind:
        return f"{where}={shown} is not a number"
    if inner in ("finite_number", "greater_than", "greater_than_equal", "less_than", "less_than_equal"):
        return f"{where} must be {_range(spec)}, got {got}"
    if inner == "literal_error":
        return f"{where}={shown} is not one of {', '.join(map(str, spec['choices']))}"
    if inner.startswith("bool"):
        return f"{where}={shown} is not true or false"
    if inner in ("string_pattern_mismatch", "string_type") and "like" in spec:
        return f"{where}={shown} is not {spec['like']}"
    if inner == "string_pattern_mismatch":
        return f"{where}={shown} does not match {spec['pattern']}"
    if inner in ("too_short", "too_long"):
        return f"{where} takes {spec['length']} values, got {len(got) if hasattr(got, '__len__') else got}"
    if inner in ("list_type", "dict_type"):
        return f"{where}={shown} is not a {'list like [1,2]' if inner == 'list_type' else 'mapping like {a: 1}'}"
    if inner in ("none_required",) or got is None:
        return f"{where} needs a value, got null"
    return f"{where}={shown}: {error['msg'][:1].lower()}{error['msg'][1:]}"


def check(cfg, config_name: str) -> None:
    """Every option of `cfg` that the table constrains, in table order; the first violation
    raises OptionError. Keys the config lacks are skipped (a section serves several modes)."""
    from omegaconf import OmegaConf

    absent = object()
    mode = OmegaConf.select(cfg, "mode", default=None)
    for key, spec in constraints(config_name, mode if isinstance(mode, str) else None).items():
        value = OmegaConf.select(cfg, key, default=absent)
        if value is absent:
            continue
        if OmegaConf.is_config(value):
            value = OmegaConf.to_container(value, resolve=True)
        try:
            _adapter(_freeze(spec)).validate_python(value)
        except ValidationError as exc:
            raise OptionError(explain(key, value, spec, exc.errors(include_url=False)[0])) from None

