"""`python scripts/gatys.py mode=style|invert|texture|dream|maximize|sweep ...` / `stylenet-gatys`:
optimisation over pixels with the training losses (configs/gatys.yaml, docs/gatys.md)."""

from __future__ import annotations

import os
import sys
from pathlib import Path

# Idle OpenMP threads sleep instead of spinning: on a shared CPU, spinning threads of
# concurrent jobs starve each other (measured: 12x slower per L-BFGS iteration at load 8
# on 2 cores). Takes effect when this module imports torch first; an explicit value wins.
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

from . import app  # noqa: E402


def gatys(cfg) -> None:
    from hydra.core.hydra_config import HydraConfig

    from ..gatys import run

    run(cfg, Path(HydraConfig.get().runtime.output_dir))


def main(argv: list[str] | None = None) -> int:
    return app.run("gatys", gatys, argv, errors=(FileNotFoundError,))


if __name__ == "__main__":
    sys.exit(main())
