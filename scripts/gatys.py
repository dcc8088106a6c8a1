#!/usr/bin/env python
"""Optimisation over pixels with the training losses: Gatys style transfer and pre-images.

`python scripts/gatys.py style=hokusai content=PATH output=PATH [mode=style|invert|texture|dream|maximize|sweep]`
(options: configs/gatys.yaml; docs/gatys.md).
"""

import os
import sys
from pathlib import Path

# Idle OpenMP threads sleep instead of spinning: on a shared CPU, spinning threads of
# concurrent jobs starve each other (measured: 12x slower per L-BFGS iteration at load 8
# on 2 cores); an explicit OMP_WAIT_POLICY in the environment wins.
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")
sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import hydra  # noqa: E402
from omegaconf import DictConfig  # noqa: E402

from stylenet import gatys  # noqa: E402


@hydra.main(version_base="1.3", config_path="../configs", config_name="gatys")
def main(cfg: DictConfig) -> None:
    gatys.main(cfg)


if __name__ == "__main__":
    main()
