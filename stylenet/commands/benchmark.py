"""`stylenet-benchmark mode=train|data|infer|gatys|quality|video [key=value ...]` (also
`python scripts/benchmark.py ...`): the benchmarks of `stylenet.bench`, each printing a table.

`mode` is a Hydra config group (stylenet/configs/tools/mode/<mode>.yaml under the primary
tools/benchmark.yaml): Hydra picks the benchmark's options, and `cfg.mode` its module.
"""

from __future__ import annotations

import importlib
import sys

from . import app


def benchmark(cfg) -> int:
    from hydra.core.global_hydra import GlobalHydra

    from ..bench import environment

    if not cfg.get("mode"):
        modes = GlobalHydra.instance().config_loader().get_group_options("mode")
        app.fail(f"pick a benchmark: python scripts/benchmark.py mode={'|'.join(modes)} [key=value ...] (mode=X --help: its options)")
    bench = importlib.import_module(f"stylenet.bench.{cfg.mode}")
    if cfg.get("threads"):
        import torch

        torch.set_num_threads(int(cfg["threads"]))
    print(environment(), flush=True)  # every table says which machine it came from
    bench.run(cfg)  # returns its rows for callers in Python; the command's exit code is 0
    return 0


def main(argv: list[str] | None = None) -> int:
    return app.run("benchmark", benchmark, argv, config_dir=app.TOOLS_DIR, errors=(FileNotFoundError,))


if __name__ == "__main__":
    sys.exit(main())
