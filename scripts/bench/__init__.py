"""Benchmarks behind `scripts/benchmark.py mode=...`: each module's `run(cfg)` prints its table.

Tools of this repository, not library code: they import `stylenet` and time its real code
paths (the training step of `StyleTransferModule`, the training loader, `Stylizer`).
"""

from stylenet.commands.app import CONFIG_DIR


def model_config(name: str) -> dict:
    """configs/model/<name>.yaml: the transformation network's arguments, as training reads them."""
    from omegaconf import OmegaConf

    path = CONFIG_DIR / "model" / f"{name}.yaml"
    if not path.is_file():
        from stylenet.errors import UserError

        raise UserError(f"unknown model {name!r}; configs/model has {sorted(p.stem for p in path.parent.glob('*.yaml'))}")
    return OmegaConf.to_container(OmegaConf.load(path))
