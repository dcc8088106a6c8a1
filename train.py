#!/usr/bin/env python
"""Train a fast style transfer network: `python train.py style=hokusai` (see README)."""

import hydra
from omegaconf import DictConfig

from stylenet import train


@hydra.main(version_base="1.3", config_path="configs", config_name="train")
def main(cfg: DictConfig) -> None:
    train.main(cfg)


if __name__ == "__main__":
    main()
