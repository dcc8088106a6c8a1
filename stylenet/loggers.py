"""Where training metrics go: the Weights & Biases logger, offline when there is no API key.

configs/logger/*.yaml name what to build (`_target_`): `wandb` → `wandb_logger` here, `csv`
→ Lightning's CSVLogger, `none` → nothing; `stylenet.train` instantiates it with the run dir.
"""

from __future__ import annotations

import netrc
import os
import sys
from pathlib import Path


def wandb_has_key() -> bool:
    """An API key in WANDB_API_KEY or ~/.netrc (what `wandb login` writes)."""
    if os.environ.get("WANDB_API_KEY"):
        return True
    try:
        return netrc.netrc().authenticators("api.wandb.ai") is not None
    except (FileNotFoundError, netrc.NetrcParseError, OSError):
        return False


def wandb_logger(save_dir: str, project: str = "stylenet", entity: str | None = None, mode: str = "auto",
                 log_model: bool = False, name: str | None = None):
    """Lightning's WandbLogger in `save_dir`, run named `<name>-<run dir>`. `mode=auto`: online
    with an API key, else offline into the run dir (and says so); it never prompts."""
    from pytorch_lightning.loggers import WandbLogger

    offline = mode == "offline" or (mode == "auto" and not wandb_has_key())
    if offline:
        print(f"wandb: no API key found, logging offline to {save_dir}/wandb (upload later with `wandb sync`)", file=sys.stderr)
    run_name = Path(save_dir).name
    return WandbLogger(project=project, entity=entity, save_dir=save_dir, offline=offline, log_model=log_model,
                       name=f"{name}-{run_name}" if name else run_name, settings={"silent": True} if offline else None)
