#!/usr/bin/env python
"""Benchmarks that print a table: `python scripts/benchmark.py mode=train|data|infer|gatys|quality|video [key=value ...]`.

Each mode is `scripts/bench/<mode>.py` with its options in `configs/tools/benchmark/<mode>.yaml`
(`mode=X --help` lists them, `--cfg job` prints them). They are tools of this repository,
not part of the `stylenet` package; the same command is `stylenet-benchmark`.
"""

import importlib
import sys

from stylenet.commands import app

MODES = ("train", "data", "infer", "gatys", "quality", "video")


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else list(argv)
    modes = [a.partition("=")[2] for a in argv if a.startswith("mode=")]
    if len(modes) != 1 or modes[0] not in MODES:
        print(f"usage: python scripts/benchmark.py mode={{{'|'.join(MODES)}}} [key=value ...] [--help]", file=sys.stderr)
        return 0 if {"-h", "--help"} & set(argv) else 2
    bench = importlib.import_module(f"bench.{modes[0]}")
    # the mode picks the config; the config itself says `mode: <name>`
    rest = [a for a in argv if not a.startswith("mode=")]
    def task(cfg) -> int:
        from bench import environment

        if cfg.get("threads"):
            import torch

            torch.set_num_threads(int(cfg["threads"]))
        print(environment(), flush=True)  # every table says which machine it came from
        bench.run(cfg)  # returns its rows for callers in Python; the command's exit code is 0
        return 0

    return app.run(f"benchmark/{modes[0]}", task, rest, config_dir=app.TOOLS_DIR, errors=(FileNotFoundError,))


if __name__ == "__main__":
    sys.exit(main())
