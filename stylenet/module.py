"""LightningModule: the transformation network trained against perceptual losses.

The module owns the style targets (Gram matrices of the style image, computed once and
kept as buffers so every DDP rank and every resumed run uses the same ones). The frozen
loss network is rebuilt from config, never saved in checkpoints.
"""

from __future__ import annotations

import contextlib
import math
import warnings
from collections.abc import Mapping

import pytorch_lightning as pl
import torch

from . import __version__
from .losses import gram, perceptual_loss, perceptual_weights
from .lossnet import LossNetwork
from .speed import _uncompile, is_compiled, resolve_speed
from .transformer import TransformerNet

GRAM_PREFIX = "target_gram_"


def _plain(cfg) -> dict:
    """OmegaConf → plain dict (checkpoints hold only builtins: safe to load weights_only)."""
    try:
        from omegaconf import OmegaConf

        if OmegaConf.is_config(cfg):
            return OmegaConf.to_container(cfg, resolve=True)
    except ImportError:  # pragma: no cover
        pass
    return dict(cfg)


def lr_schedule(optimizer: torch.optim.Optimizer, optim: Mapping, total_steps: int):
    """torch's LinearLR warm-up followed by a constant or cosine phase; None for a plain constant lr."""
    from torch.optim import lr_scheduler

    warmup = int(optim.get("warmup_steps", 0) or 0)
    kind = str(optim.get("schedule", "constant"))
    if kind not in ("constant", "cosine"):
        raise ValueError(f"optim.schedule={kind!r}: use constant or cosine")
    if kind == "constant" and warmup <= 0:
        return None
    phases = []
    if warmup > 0:
        phases.append(lr_scheduler.LinearLR(optimizer, start_factor=float(optim.get("warmup_start", 0.01)), total_iters=warmup))
    if kind == "cosine" and total_steps > warmup:
        group = optimizer.param_groups[0]  # LinearLR already lowered "lr": the base is "initial_lr"
        floor = group.get("initial_lr", group["lr"]) * float(optim.get("min_lr_ratio", 0.0))
        phases.append(lr_scheduler.CosineAnnealingLR(optimizer, T_max=total_steps - warmup, eta_min=floor))
    else:
        phases.append(lr_scheduler.ConstantLR(optimizer, factor=1.0, total_iters=0))
    return phases[0] if len(phases) == 1 else lr_scheduler.SequentialLR(optimizer, phases, milestones=[warmup])


class StyleTransferModule(pl.LightningModule):
    def __init__(
        self,
        model: Mapping,
        loss: Mapping,
        optim: Mapping,
        speed: Mapping | None = None,
        style_name: str = "style",
        style_image: torch.Tensor | None = None,
        batch_size: int = 4,
        image_size: int = 256,
    ):
        super().__init__()
        model, loss, optim = _plain(model), _plain(loss), _plain(optim)
        speed = _plain(speed or {})
        loss.pop("layers", None)  # the per-network table: already resolved into the fields
        self.save_hyperparameters(
            {"model": model, "loss": loss, "optim": optim, "speed": speed, "style_name": style_name,
             "batch_size": batch_size, "image_size": image_size, "stylenet_version": __version__}
        )
        self.transformer = TransformerNet(**model)
        self.loss_weights = perceptual_weights(loss)
        self.style_layers: dict[str, float] = self.loss_weights["style_layers"]
        self.content_layer: str = self.loss_weights["content_layer"]
        self.lossnet = LossNetwork(loss["network"], [self.content_layer, *self.style_layers], loss.get("weights"))
        for name in self.style_layers:
            self.register_buffer(GRAM_PREFIX + name, torch.zeros(0))
        if style_image is not None:
            self.set_style(style_image)

    # -- style targets -------------------------------------------------------------------
    @torch.no_grad()
    def set_style(self, style_image: torch.Tensor) -> None:
        """Compute the style's Gram targets once, from a (1,3,H,W) image in [0,1]."""
        features = self.lossnet(style_image.to(self.device, self.lossnet.mean.dtype))  # bf16 under speed.lossnet_half
        for name in self.style_layers:
            setattr(self, GRAM_PREFIX + name, gram(features[name]))

    @property
    def target_grams(self) -> dict[str, torch.Tensor]:
        return {name: getattr(self, GRAM_PREFIX + name) for name in self.style_layers}

    @property
    def has_style(self) -> bool:
        """Whether `set_style` (or a checkpoint) filled the Gram targets: they start empty."""
        grams = self.target_grams
        return bool(grams) and all(g.numel() > 0 for g in grams.values())

    def load_state_dict(self, state_dict, strict: bool = True, assign: bool = False):
        # buffers are registered empty until the style is set: take the checkpoint's shapes
        for name in self.style_layers:
            key = GRAM_PREFIX + name
            if key in state_dict:
                setattr(self, key, torch.empty_like(state_dict[key], device=self.device))
        return super().load_state_dict(state_dict, strict=strict, assign=assign)

    # -- checkpoints: the frozen loss network stays out ------------------------------------
    def on_save_checkpoint(self, checkpoint: dict) -> None:
        checkpoint["state_dict"] = {k: v for k, v in checkpoint["state_dict"].items() if not k.startswith("lossnet.")}

    def on_load_checkpoint(self, checkpoint: dict) -> None:
        state = checkpoint["state_dict"]
        for key, value in self.lossnet.state_dict().items():
            state.setdefault(f"lossnet.{key}", value)

    # -- speed switches (resolved per device; applied by setup_speed at fit start) ---------
    def speed_switches(self, device: torch.device | str | None = None) -> dict:
        """`hparams.speed` with `auto` decided for `device` (default: the module's device)."""
        kind = torch.device(device if device is not None else self.device).type
        cached = getattr(self, "_speed_cache", None)
        if cached is None or cached[0] != kind:
            cached = self._speed_cache = (kind, resolve_speed(self.hparams.speed, kind))
        return cached[1]

    def setup_speed(self, step_context=None) -> dict:
        """Apply the speed switches for the module's current device; idempotent.

        Memory format and loss-network dtype are set here; with `compile`, both networks
        (and the truncated content pass) are compiled in place and one trial step on a
        batch of the training shape runs at once, inside `step_context()` (the trainer's
        autocast), so that a compiler failure falls back to eager with a warning instead
        of failing the run at its first step. Returns the resolved switches.
        """
        speed = self.speed_switches()
        fmt = torch.channels_last if speed["channels_last"] else torch.contiguous_format
        self.transformer.to(memory_format=fmt)
        self.lossnet.to(memory_format=fmt)
        self.lossnet.to(torch.bfloat16 if speed["lossnet_half"] else torch.float32)
        compiled = is_compiled(self.transformer)
        if speed["compile"] and not compiled:
            self._compile(speed, step_context)
        elif compiled and not speed["compile"]:
            self._drop_compiled()
        return speed

    def _compile(self, speed: dict, step_context=None) -> None:
        # static shapes: training batches all share one shape (drop_last); the sample grid's
        # other shape gets its own graph instead of turning the training graph dynamic
        options = {"backend": speed["compile_backend"], "mode": speed["compile_mode"], "dynamic": False}
        try:
            self.transformer.compile(**options)
            self.lossnet.compile(**options)
            self._content_pass_compiled = torch.compile(self._content_features, **options)
            self._trial_step(step_context)
        except Exception as exc:  # noqa: BLE001 - any compiler/backend failure means: run eager
            self._drop_compiled()
            first = (str(exc).strip().splitlines() or [exc.__class__.__name__])[0][:300]
            warnings.warn(
                f"torch.compile failed ({exc.__class__.__name__}: {first}); training continues without "
                "compilation (set speed.compile=false to skip the attempt)", RuntimeWarning, stacklevel=2,
            )

    def _drop_compiled(self) -> None:
        _uncompile(self.transformer)
        _uncompile(self.lossnet)
        self._content_pass_compiled = None

    def _trial_step(self, step_context=None) -> None:
        """One forward+backward on a batch of the training shape: compiles now, changes nothing."""
        if not self.has_style:
            return  # no style yet: compilation errors (if any) surface at the first step
        size = int(self.hparams.image_size)
        generator = torch.Generator().manual_seed(0)  # leaves the global RNG (data order) alone
        batch = torch.rand(int(self.hparams.batch_size), 3, size, size, generator=generator).to(self.device)
        was_training = self.training
        self.train()
        try:
            with torch.enable_grad(), (step_context() if step_context else contextlib.nullcontext()):
                loss = self.compute_losses(batch)["loss"]
            loss.backward()
        finally:
            for p in self.transformer.parameters():
                p.grad = None
            self.train(was_training)

    def _content_features(self, content: torch.Tensor) -> dict[str, torch.Tensor]:
        """The loss network cut after the content layer (the content batch needs nothing deeper)."""
        return self.lossnet(content, layers=[self.content_layer])

    def _content_pass(self, content: torch.Tensor) -> dict[str, torch.Tensor]:
        compiled = getattr(self, "_content_pass_compiled", None)
        return (compiled or self._content_features)(content)

    # -- training --------------------------------------------------------------------------
    def forward(self, content: torch.Tensor) -> torch.Tensor:
        return self.transformer(content)

    def compute_losses(self, content: torch.Tensor) -> dict[str, torch.Tensor]:
        """One training objective evaluation: stylize the batch and score it."""
        speed = self.speed_switches(content.device)
        if speed["channels_last"]:
            content = content.contiguous(memory_format=torch.channels_last)
        stylized = self.transformer(content)
        dtype = self.lossnet.mean.dtype  # bf16 under speed.lossnet_half (Grams are still fp32)
        if speed["single_pass"]:
            # one pass over 2B images; its backward also runs over all 2B (see docs/speed.md)
            features = self.lossnet(torch.cat([content.to(dtype), stylized.to(dtype)]))
            b = content.shape[0]
            content_features = {k: v[:b].detach() for k, v in features.items()}
            output_features = {k: v[b:] for k, v in features.items()}
        else:
            with torch.no_grad():
                content_pass = self._content_pass if speed["truncate_content"] else self.lossnet
                content_features = content_pass(content.to(dtype))
            output_features = self.lossnet(stylized.to(dtype))
        return perceptual_loss(output_features, content_features, self.target_grams, stylized, **self.loss_weights)

    def training_step(self, batch: torch.Tensor, batch_idx: int) -> torch.Tensor:
        if not self.has_style:
            raise RuntimeError("style targets are not set: call set_style(style_image) before training")
        terms = self.compute_losses(batch)
        self.log("train/loss", terms["loss"], prog_bar=True)
        self.log_dict({f"train/{k}": v for k, v in terms.items() if k != "loss"})
        self.log("global_step", float(self.global_step), logger=False)  # for ModelCheckpoint's top-k
        return terms["loss"]

    def effective_lr(self) -> float:
        """Base lr scaled with the global batch (batch × devices × nodes × accumulation)."""
        optim = self.hparams.optim
        world = self.trainer.world_size * self.trainer.accumulate_grad_batches if self._trainer is not None else 1
        ratio = self.hparams.batch_size * world / float(optim.get("reference_batch_size", 4))
        power = {"none": 0.0, "linear": 1.0, "sqrt": 0.5}[str(optim.get("scale_lr", "none"))]
        return float(optim["lr"]) * math.pow(ratio, power)

    def configure_optimizers(self):
        """Adam; with `optim.warmup_steps` a linear warm-up, then `optim.schedule` (constant |
        cosine down to `optim.min_lr_ratio` × lr at the run's last step), stepped per batch."""
        optim = self.hparams.optim
        adam = torch.optim.Adam(self.transformer.parameters(), lr=self.effective_lr(), betas=tuple(optim.get("betas", (0.9, 0.999))))
        schedule = lr_schedule(adam, optim, total_steps=int(self.trainer.estimated_stepping_batches) if self._trainer else 0)
        if schedule is None:
            return adam
        return {"optimizer": adam, "lr_scheduler": {"scheduler": schedule, "interval": "step"}}

    def on_train_start(self) -> None:
        t = self.trainer
        print(f"[rank {t.global_rank}/{t.world_size}] training on {self.device}, "
              f"{t.num_training_batches} batches of {self.hparams.batch_size} per epoch", flush=True)

    def on_fit_start(self) -> None:
        precision = self.trainer.precision_plugin
        self.setup_speed(step_context=precision.train_step_context)
        if self.trainer.is_global_zero and self.effective_lr() != float(self.hparams.optim["lr"]):
            warnings.warn(f"learning rate scaled to {self.effective_lr():.3g} for the global batch", stacklevel=1)
