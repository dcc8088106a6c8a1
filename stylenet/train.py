"""The composed training config (configs/train.yaml) → a Lightning run: trainer, module, data."""

from __future__ import annotations

import logging
from pathlib import Path

import pytorch_lightning as pl
import torch
from hydra.utils import instantiate
from omegaconf import DictConfig, OmegaConf

from .callbacks import SampleGrid
from .data import StyleDataModule
from .imageio import load_tensor
from .modelfile import ModelLoadError
from .module import StyleTransferModule
from .speed import resolve_precision, resolve_speed
from .styles import resolve_style_image

log = logging.getLogger("stylenet")


def build_logger(cfg: DictConfig, run_dir: Path):
    """configs/logger/<kind>.yaml built in the run dir (False for logger=none), given the whole
    run's config as hyper-parameters (wandb's config, csv's hparams.yaml), on rank 0 only."""
    if not cfg.get("logger"):
        return False
    logger = instantiate(cfg.logger, save_dir=str(run_dir))
    logger.log_hyperparams(OmegaConf.to_container(cfg, resolve=True))
    return logger


def init_transformer(module: StyleTransferModule, source: str) -> None:
    """Start from another style's network (`init_from=hokusai` or a file): the same
    architecture is required; the style targets, optimiser and step counter start fresh."""
    from .modelfile import build_network, read_model_file, resolve_model

    model = read_model_file(resolve_model(source))
    want = {"class": "TransformerNet", **module.hparams.model}
    if model.arch != want:
        raise ModelLoadError(f"init_from={source}: its network {model.arch} differs from this run's model {want}; "
                             "pick a model= that matches it, or drop init_from")
    module.transformer.load_state_dict(build_network(model).state_dict())
    print(f"initialised the network from {model.path} ({model.style_name}, {model.metadata.get('training_steps', '?')} steps)")


def build(cfg: DictConfig, run_dir: Path):
    """Everything `fit` needs, built from config: (trainer, module, datamodule)."""
    pl.seed_everything(cfg.seed, workers=True)
    # a process-wide flag: set from the switch either way (reference = cuDNN's default heuristics)
    torch.backends.cudnn.benchmark = resolve_speed(cfg.speed, "cuda")["cudnn_benchmark"]
    style_path = resolve_style_image(cfg.style, mirrors=cfg.get("style_mirrors"))
    style_image = load_tensor(style_path, size=cfg.style.size)
    loss = OmegaConf.to_container(cfg.loss, resolve=True)  # includes style_scale: the preset's style.weight
    if loss.get("weights") and Path(str(loss["weights"])).expanduser().is_file():
        # recorded in checkpoints and exports: absolute, so the benchmarks find it from any folder
        loss["weights"] = str(Path(str(loss["weights"])).expanduser().resolve())
    module = StyleTransferModule(
        model=cfg.model, loss=loss, optim=cfg.optim, speed=cfg.speed,
        style_name=cfg.style.name, style_image=style_image, batch_size=cfg.data.batch_size, image_size=cfg.data.image_size,
    )
    if cfg.get("init_from") and not cfg.get("ckpt_path"):
        init_transformer(module, cfg.init_from)
    datamodule = StyleDataModule(cfg.data, sample_count=cfg.samples.num_images, sample_size=cfg.samples.size)
    datamodule.setup("fit")
    callbacks = [instantiate(c) for c in cfg.get("callbacks", {}).values()]
    trainer_kwargs = OmegaConf.to_container(cfg.trainer, resolve=True)
    trainer_kwargs["precision"] = resolve_precision(cfg.trainer, cfg.speed)
    if (trainer_kwargs.get("max_steps") or -1) > 0:
        trainer_kwargs["max_epochs"] = -1  # an explicit step budget wins over the epoch default
    trainer = pl.Trainer(**trainer_kwargs, logger=build_logger(cfg, run_dir), callbacks=callbacks, default_root_dir=str(run_dir))
    return trainer, module, datamodule


def run(cfg: DictConfig, run_dir: Path) -> Path:
    """Train; return the path of the last checkpoint."""
    trainer, module, datamodule = build(cfg, run_dir)
    ckpt_path = cfg.get("ckpt_path")
    if ckpt_path and not Path(ckpt_path).is_file():
        raise FileNotFoundError(f"checkpoint to resume from not found: {ckpt_path}")
    # weights_only: resuming never unpickles code from the checkpoint file
    trainer.fit(module, datamodule=datamodule, ckpt_path=ckpt_path, weights_only=True if ckpt_path else None)
    last = Path(cfg.checkpoint_dir) / "last.ckpt"
    trainer.save_checkpoint(last, weights_only=False)  # the final state, whatever the step count (all ranks)
    if trainer.is_global_zero:
        grid = next((c.last_path for c in trainer.callbacks if isinstance(c, SampleGrid)), None)
        print(f"checkpoint: {last}")
        if grid:
            print(f"samples:    {grid}")
        if cfg.get("export_at_end"):
            try:
                from .export import export_checkpoint
            except ImportError:
                pass
            else:
                print(f"exported:   {export_checkpoint(last)}")
    return last
