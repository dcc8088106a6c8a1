"""A light `key=value` command line (Hydra's override syntax, without Hydra).

The inference scripts and benchmarks use it so they import fast and run where only torch
is installed (an exported style must run anywhere). Values are parsed as YAML:
`batch_sizes=[4,8]`, `fp16=true`, `output=out.png`.
"""

from __future__ import annotations

import sys
from collections.abc import Mapping, Sequence

import yaml


class UsageError(ValueError):
    """A bad command line: unknown key, missing required key, malformed argument."""


def parse_overrides(argv: Sequence[str], defaults: Mapping, required: Sequence[str] = (), usage: str = "") -> dict:
    """Merge `key=value` arguments over `defaults`; unknown keys and missing required ones fail."""
    if any(a in ("-h", "--help", "help") for a in argv):
        print(usage.strip() or "usage: key=value ...")
        print("\noptions (defaults):")
        for key, value in defaults.items():
            print(f"  {key}={yaml.safe_dump(value, default_flow_style=True).strip().removesuffix('...').strip()}")
        sys.exit(0)
    cfg = dict(defaults)
    for arg in argv:
        key, sep, raw = arg.partition("=")
        key = key.lstrip("+")
        if not sep or not key:
            raise UsageError(f"bad argument {arg!r}: expected key=value (keys: {', '.join(defaults)})")
        if key not in defaults:
            raise UsageError(f"unknown option {key!r}; options: {', '.join(defaults)}")
        try:
            cfg[key] = yaml.safe_load(raw) if raw != "" else None
        except yaml.YAMLError:
            cfg[key] = raw
    missing = [k for k in required if cfg.get(k) in (None, "")]
    if missing:
        raise UsageError(f"missing {', '.join(f'{k}=...' for k in missing)}")
    return cfg
