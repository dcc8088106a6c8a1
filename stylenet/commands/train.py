"""`python train.py style=hokusai ...` / `stylenet-train`: configs/train.yaml → a Lightning run (README)."""

from __future__ import annotations

import sys
from pathlib import Path

from . import app


def train(cfg) -> None:
    import warnings

    from hydra.core.hydra_config import HydraConfig

    from ..train import run

    warnings.filterwarnings("ignore", message=".*does not have many workers.*")
    warnings.filterwarnings("ignore", message=".*module\\(s\\) in eval mode.*")  # the frozen loss network, on purpose
    run(cfg, Path(HydraConfig.get().runtime.output_dir))


def main(argv: list[str] | None = None) -> int:
    return app.run("train", train, argv, errors=(FileNotFoundError,))


if __name__ == "__main__":
    sys.exit(main())
