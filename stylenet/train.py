"""The composed training config (configs/train.yaml) → a Lightning run: trainer, module, data.

Several styles in one network (docs/multistyle.md): `styles=[a,b,...]` (what the command
line's `style=[a,b,...]` and `style=all` become) trains them together, each preset composed
by Hydra under `style_presets.<name>` (`commands.app.hydra_overrides`); `init_from=MULTI_EXPORT
train_only=norm` appends the run's style(s) to an exported network and learns only their γ, β.
"""

from __future__ import annotations

import hashlib
import logging
from dataclasses import dataclass, field
from pathlib import Path

import pytorch_lightning as pl
import torch
from hydra.utils import instantiate
from omegaconf import DictConfig, OmegaConf

from .callbacks import SampleGrid
from .data import StyleDataModule
from .errors import UserError
from .imageio import ensure_writable, load_tensor
from .modelfile import ModelFile, ModelLoadError, check_finite, load_checkpoint
from .module import StyleTransferModule
from .speed import resolve_precision, resolve_speed
from .losses import style_scale
from .styles import StyleError, resolve_style_image
from .transformer import append_styles

#: longest multi-style run name, in bytes, kept as the joined style names (folders and the export file)
MAX_RUN_NAME = 96

log = logging.getLogger("stylenet")


def build_logger(cfg: DictConfig, run_dir: Path):
    """configs/logger/<kind>.yaml built in the run dir (False for logger=none), given the whole
    run's config as hyper-parameters (wandb's config, csv's hparams.yaml), on rank 0 only."""
    if not cfg.get("logger"):
        return False
    logger = instantiate(cfg.logger, save_dir=str(run_dir))
    logger.log_hyperparams(OmegaConf.to_container(cfg, resolve=True))
    return logger


@dataclass
class RunStyles:
    """The styles of a run. `presets`: the style configs trained (targets computed from them);
    `names`: every style the network holds, in order (None: a single-style network, as
    always); `trained`: the indices of `presets` in `names`; `base`: with train_only=norm,
    the model file the new styles are appended to."""

    presets: list
    names: list[str] | None = None
    trained: list[int] = field(default_factory=list)
    base: ModelFile | None = None

    @property
    def run_name(self) -> str:
        """What a multi-style run's folders and export are named: its styles joined by '-'. A
        long list (a file name may have 255 bytes, the atomic write's temporary name adds ~30,
        and adding styles grows it) keeps the first two names, the count of the others and a
        hash of the whole list, so different lists still get different folders."""
        if not self.names:
            return str(self.presets[0].name)
        joined = "-".join(self.names)
        if len(joined.encode()) <= MAX_RUN_NAME:
            return joined
        digest = hashlib.sha1(joined.encode()).hexdigest()[:8]
        return f"{self.names[0]}-{self.names[1]}-and-{len(self.names) - 2}-more-{digest}"


def run_styles(cfg: DictConfig, base: ModelFile | None = None) -> RunStyles:
    """The styles a run trains (`style`, or `styles=[...]`: their presets as the command line
    composed them, `style_presets.<name>`) and the network's style list (with
    train_only=norm: the `init_from` file's styles + the new ones). The one place the
    `train_only` option is checked."""
    from .modelfile import read_model_file
    from .presets import resolve_model

    listed = [str(n) for n in cfg.get("styles") or []]
    train_only = cfg.get("train_only")
    if train_only not in (None, "norm"):
        raise UserError(f"train_only={train_only!r}: use null (train the whole network) or norm (only the new styles' γ, β)")
    if len(set(listed)) != len(listed):
        raise StyleError(f"styles={listed}: a style is listed twice")
    if listed:
        composed = cfg.get("style_presets") or {}
        if missing := [n for n in listed if n not in composed]:
            raise StyleError(f"styles={listed}: no composed preset for {', '.join(missing)}; list the styles on the command "
                             f"line as style=[{','.join(listed)}] (each is then composed from stylenet/configs/style/)")
        presets = [composed[n] for n in listed]
        first = composed.get(str(cfg.style.name))
        if first is not None and OmegaConf.to_container(cfg.style, resolve=True) != OmegaConf.to_container(first, resolve=True):
            raise StyleError("style.KEY=... overrides do not reach a multi-style run: each style is its preset, "
                             "stylenet/configs/style/<name>.yaml; edit a copy of the preset under a new name and list that")
        if unset := [str(p.name) for p in presets if OmegaConf.is_missing(p, "image")]:
            raise StyleError(f"style {unset[0]!r} needs style.image=PATH, which a multi-style run cannot take; add "
                             "stylenet/configs/style/<name>.yaml for the painting (copy stylenet/configs/style/custom.yaml)")
    else:
        presets = [cfg.style]
    if train_only == "norm":
        if not cfg.get("init_from"):
            raise UserError("train_only=norm adds styles to a trained network: name it with init_from=MULTI_EXPORT")
        base = base or read_model_file(resolve_model(cfg.init_from))
        old = base.styles
        new = [str(p.name) for p in presets]
        if clash := [n for n in new if n in old]:
            raise StyleError(f"init_from={cfg.init_from} already holds {', '.join(clash)} (it holds {', '.join(old)}); "
                             "name the new style differently (style.name=NAME)")
        return RunStyles(presets, old + new, list(range(len(old), len(old) + len(new))), base)
    if len(presets) > 1:
        return RunStyles(presets, [str(p.name) for p in presets], list(range(len(presets))))
    return RunStyles(presets)


def run_model(cfg: DictConfig, styles: RunStyles) -> dict:
    """The run's `model` hyper-parameters: cfg.model, plus num_styles for a multi-style network."""
    model = OmegaConf.to_container(cfg.model, resolve=True)
    return {**model, "num_styles": len(styles.names)} if styles.names else model


def init_transformer(module: StyleTransferModule, source: str, base: ModelFile | None = None) -> None:
    """Start from another style's network (`init_from=hokusai` or a file): the same
    architecture is required; the style targets, optimiser and step counter start fresh.
    With train_only=norm (`module.added_styles`) the file's styles are kept and the new
    styles' γ, β start as the mean of theirs."""
    from .modelfile import build_network, read_model_file
    from .presets import resolve_model

    model = base or read_model_file(resolve_model(source))
    net = build_network(model)
    adding = module.added_styles is not None
    # compared as built, every option filled in: a file written before an option existed
    # records no value for it and means its default. Adding styles grows num_styles.
    mine, theirs = module.transformer.arch(), net.arch()
    if differ := ", ".join(f"{k}={theirs[k]} (this run: {mine[k]})" for k in theirs
                           if theirs[k] != mine[k] and not (adding and k == "num_styles")):
        hint = ("pick the model= it was trained with (model=slim, model=johnson or model.width=...)" if adding else
                "pick a model= (and styles) that match it, or drop init_from; to add a style to a "
                "multi-style file, use train_only=norm")
        raise ModelLoadError(f"init_from={source}: its network differs from this run's model in {differ}; {hint}")
    if adding:
        added = len(module.style_names) - net.num_styles
        module.transformer.load_state_dict(append_styles(net.state_dict(), added))
        module.added_styles.reset()
        print(f"adding {', '.join(module.style_names[net.num_styles:])} to {model.path} "
              f"({', '.join(model.styles)}): only their γ, β are trained")
        return
    module.transformer.load_state_dict(net.state_dict())
    print(f"initialised the network from {model.path} ({model.style_name}, {model.metadata.get('training_steps', '?')} steps)")


def load_teacher(cfg: DictConfig, styles: RunStyles):
    """`distill.teacher=`: the trained network (an export, a .ckpt or a preset name) whose
    outputs a single-style run also imitates; it must hold the style the run trains."""
    from .modelfile import build_network, read_model_file
    from .presets import resolve_model

    source = (cfg.get("distill") or {}).get("teacher")
    if not source:
        return None
    if styles.names is not None:
        raise UserError("distill.teacher= teaches single-style runs only; drop it, or train one style")
    model = read_model_file(resolve_model(str(source)))
    if model.styles != [styles.run_name]:
        raise UserError(f"distill.teacher={source} holds {', '.join(model.styles)}, this run trains {styles.run_name}; "
                        f"name a teacher trained on {styles.run_name} (e.g. checkpoints/{styles.run_name}/{styles.run_name}.safetensors)")
    print(f"distilling {model.path} ({model.metadata.get('training_steps', '?')} steps) into this run's network, "
          f"weight {float(cfg.distill.weight):g}")
    return build_network(model)


def build(cfg: DictConfig, run_dir: Path):
    """Everything `fit` needs, built from config: (trainer, module, datamodule)."""
    pl.seed_everything(cfg.seed, workers=True)
    # a process-wide flag: set from the switch either way (reference = cuDNN's default heuristics)
    torch.backends.cudnn.benchmark = resolve_speed(cfg.speed, "cuda")["cudnn_benchmark"]
    styles = run_styles(cfg)
    images = [load_tensor(resolve_style_image(p, mirrors=cfg.get("style_mirrors")), size=p.size) for p in styles.presets]
    loss = OmegaConf.to_container(cfg.loss, resolve=True)
    scales = [style_scale(p) for p in styles.presets]  # each preset's style.weight, the one route to the loss
    # one style: its weight scales loss.style_weight (recorded in the checkpoint's loss); several: each image's own
    loss["style_scale"] = scales[0] if styles.names is None else 1.0
    if loss.get("weights") and Path(str(loss["weights"])).expanduser().is_file():
        # recorded in checkpoints and exports: absolute, so the benchmarks find it from any folder
        loss["weights"] = str(Path(str(loss["weights"])).expanduser().resolve())
    common = dict(model=cfg.model, optim=cfg.optim, speed=cfg.speed, batch_size=cfg.data.batch_size, image_size=cfg.data.image_size)
    if styles.names is None:
        teacher = load_teacher(cfg, styles)
        distill = OmegaConf.to_container(cfg.distill, resolve=True) if teacher is not None else None
        module = StyleTransferModule(loss=loss, style_name=styles.run_name, style_image=images[0],
                                     teacher=teacher, distill=distill, **common)
    else:
        module = StyleTransferModule(
            loss=loss, style_name=styles.run_name, style_names=styles.names, trained_styles=styles.trained,
            style_scales=scales, style_images=images,
            train_only=cfg.get("train_only"), **common,
        )
    if styles.base is not None:
        # the base network is loaded even when resuming: Lightning then overwrites it from the checkpoint
        init_transformer(module, cfg.init_from, styles.base)
    elif cfg.get("init_from") and not cfg.get("ckpt_path"):
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
    ours = run_model(cfg, run_styles(cfg))
    if theirs != ours:
        raise ModelLoadError(f"{path} was trained with model {theirs}, this run's model is {ours}: resume with the same "
                             f"model= (or start from its weights with init_from={path} and a matching model=)")
    check_finite(path, ckpt["state_dict"])
    return ckpt


def check_fits(module: StyleTransferModule, ckpt: dict, path) -> None:
    """The checkpoint's tensors are the ones this run's module has (same loss network, same shapes)."""
    frozen = ("lossnet.", "teacher.")  # rebuilt from config, never in checkpoints
    ours = {k: tuple(v.shape) for k, v in module.state_dict().items() if not k.startswith(frozen)}
    theirs = {k: tuple(v.shape) for k, v in ckpt["state_dict"].items() if not k.startswith(frozen)}
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
