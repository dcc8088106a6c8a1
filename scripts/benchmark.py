#!/usr/bin/env python
"""Benchmarks that print a table: `python scripts/benchmark.py mode=train|data|infer|gatys|quality|video|web [key=value ...]`.

Each mode is `stylenet/bench/<mode>.py` with its options in `stylenet/configs/tools/mode/<mode>.yaml`
(`mode=X --help` lists them, `--cfg job` prints them); the same command is `stylenet-benchmark`.
"""

import sys

from stylenet.commands.benchmark import main

if __name__ == "__main__":
    sys.exit(main())
