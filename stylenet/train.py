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
from .imageio import ensure_writable, load_tensor
from .modelfile import ModelLoadError, check_finite, load_checkpoint
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


def resumable_checkpoint(cfg: DictConfig) -> dict:
    """The `ckpt_path=` checkpoint, read safely and checked before anything is built: a file
    Lightning cannot resume from fails here with what it is, not later with a traceback."""
    path = Path(str(cfg.ckpt_path))
    if not path.is_file():
        raise FileNotFoundError(f"checkpoint to resume from not found: {path}")
    ckpt = load_checkpoint(path)
    if missing := [k for k in ("optimizer_states", "loops", "global_step") if k not in ckpt]:
        raise ModelLoadError(f"{path} cannot be resumed: it has no {', '.join(missing)} (a weights-only checkpoint?); "
                             f"resume from checkpoints/<style>/last.ckpt, or start from its weights with init_from={path}")
    theirs = (ckpt.get("hyper_parameters") or {}).get("model")
    ours = OmegaConf.to_container(cfg.model, resolve=True)
    if theirs != ours:
        raise ModelLoadError(f"{path} was trained with model {theirs}, this run's model is {ours}: resume with the same "
                             f"model= (or start from its weights with init_from={path} and a matching model=)")
    check_finite(path, ckpt["state_dict"])
    return ckpt


def check_fits(module: StyleTransferModule, ckpt: dict, path) -> None:
    """The checkpoint's tensors are the ones this run's module has (same loss network, same shapes)."""
    ours = {k: tuple(v.shape) for k, v in module.state_dict().items() if not k.startswith("lossnet.")}
    theirs = {k: tuple(v.shape) for k, v in ckpt["state_dict"].items() if not k.startswith("lossnet.")}
    if ours != theirs:
        odd = sorted(set(ours) ^ set(theirs)) or [k for k in sorted(ours) if ours[k] != theirs[k]]
        raise ModelLoadError(f"{path} does not fit this run ({', '.join(odd[:3])} differ: another loss network or model?); "
                             "resume with the options it was trained with, or start fresh")


def run(cfg: DictConfig, run_dir: Path) -> Path:
    """Train; return the path of the last checkpoint.

    Everything a run needs at its end is checked before its first step: the folders it will
    write (checkpoints and the export, the run dir's logs and samples) and the checkpoint it resumes.
    """
    ensure_writable(cfg.checkpoint_dir, "checkpoint_dir")
    ensure_writable(run_dir, "hydra.run.dir")
    ckpt_path = cfg.get("ckpt_path")
    resume = resumable_checkpoint(cfg) if ckpt_path else None
    trainer, module, datamodule = build(cfg, run_dir)
    if resume is not None:
        check_fits(module, resume, ckpt_path)
        del resume
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
