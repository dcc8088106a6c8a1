"""`stylenet-benchmark mode=...`: runs the repository's `scripts/benchmark.py`.

The benchmarks are tools of a source checkout (scripts/bench/), not library code, so this
entry point only exists to be found on PATH next to the other commands.
"""

from __future__ import annotations

import runpy
from pathlib import Path
import sys

from .app import CONFIG_DIR, fail

SCRIPTS = Path(__file__).resolve().parents[2] / "scripts"


def main() -> None:
    script = SCRIPTS / "benchmark.py"
    if not script.is_file():
        fail(f"the benchmarks ship with the source checkout (scripts/benchmark.py), not found at {script}")
    sys.path.insert(0, str(SCRIPTS))  # what `python scripts/benchmark.py` does: its folder holds bench/
    sys.argv[0] = str(script)
    runpy.run_path(str(script), run_name="__main__")


if __name__ == "__main__":
    main()
