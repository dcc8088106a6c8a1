"""The composed training config (configs/train.yaml) → a Lightning run: trainer, module, data."""

from __future__ import annotations

import logging
import netrc
import os
import sys
from pathlib import Path

import pytorch_lightning as pl
import torch
from omegaconf import DictConfig, OmegaConf

from .callbacks import SampleGrid
from .data import StyleDataModule
from .imageio import load_tensor
from .modelfile import ModelLoadError
from .module import StyleTransferModule
from .speed import resolve_precision, resolve_speed
from .styles import resolve_style_image

log = logging.getLogger("stylenet")


def wandb_has_key() -> bool:
    if os.environ.get("WANDB_API_KEY"):
        return True
    try:
        return netrc.netrc().authenticators("api.wandb.ai") is not None
    except (FileNotFoundError, netrc.NetrcParseError, OSError):
        return False


def build_logger(cfg, run_dir: Path):
    kind = cfg.logger.kind
    if kind == "none":
        return False
    if kind == "csv":
        return pl.loggers.CSVLogger(save_dir=str(run_dir), name="csv", version="")
    if kind == "wandb":
        mode = cfg.logger.get("mode", "auto")
        offline = mode == "offline" or (mode == "auto" and not wandb_has_key())
        if offline:
            print(f"wandb: no API key found, logging offline to {run_dir}/wandb (upload later with `wandb sync`)", file=sys.stderr)
        return pl.loggers.WandbLogger(
            project=cfg.logger.project, entity=cfg.logger.get("entity"), save_dir=str(run_dir), offline=offline,
            log_model=cfg.logger.get("log_model", False), name=f"{cfg.style.name}-{run_dir.name}",
            config=OmegaConf.to_container(cfg, resolve=True), settings={"silent": True} if offline else None,
        )
    raise ValueError(f"unknown logger.kind {kind!r}; use logger=wandb, logger=csv or logger=none")


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
    loss_cfg = OmegaConf.to_container(cfg.loss, resolve=True)
    loss_cfg["style_scale"] = float(cfg.style.get("weight", 1.0))
    module = StyleTransferModule(
        model=cfg.model, loss=loss_cfg, optim=cfg.optim, speed=cfg.speed, style_name=cfg.style.name,
        style_image=style_image, batch_size=cfg.data.batch_size, image_size=cfg.data.image_size,
    )
    if cfg.get("init_from") and not cfg.get("ckpt_path"):
        init_transformer(module, cfg.init_from)
    datamodule = StyleDataModule(cfg.data, sample_count=cfg.samples.num_images, sample_size=cfg.samples.size)
    datamodule.setup("fit")
    callbacks = [
        pl.callbacks.ModelCheckpoint(
            dirpath=cfg.checkpoint_dir, filename="step_{step:06d}", auto_insert_metric_name=False,
            every_n_train_steps=cfg.checkpoint.every_n_train_steps, save_top_k=cfg.checkpoint.keep,
            monitor="step", mode="max", save_last=True,  # `step`: Lightning offers it to every checkpoint callback
        ),
        SampleGrid(datamodule.sample_batch(), run_dir / "samples", every_n_steps=cfg.samples.every_n_train_steps),
    ]
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
