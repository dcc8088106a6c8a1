#!/usr/bin/env python
"""Benchmarks that print a table: `python scripts/benchmark.py mode=train|data|infer|gatys [key=value ...]`.

Each mode lives in `stylenet/bench/<mode>.py`; `mode=X --help` lists its options.
"""

import importlib
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

MODES = ("train", "data", "infer", "gatys", "quality")


def main(argv: list[str]) -> int:
    modes = [a.partition("=")[2] for a in argv if a.startswith("mode=")]
    if len(modes) != 1 or modes[0] not in MODES:
        print(f"usage: python scripts/benchmark.py mode={{{'|'.join(MODES)}}} [key=value ...]", file=sys.stderr)
        return 2
    rest = [a for a in argv if not a.startswith("mode=")]
    from stylenet.cli import UsageError

    try:
        return importlib.import_module(f"stylenet.bench.{modes[0]}").main(rest) or 0
    except UsageError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
