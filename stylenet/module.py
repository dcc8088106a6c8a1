"""LightningModule: the transformation network trained against perceptual losses.

It holds the training objective and what the objective needs: the network, the frozen loss
network (rebuilt from config, never saved in checkpoints), the loss weights, the optimiser,
and the style targets (Gram matrices of the style image, computed once and kept as buffers
so every DDP rank and every resumed run uses the same ones). How a step is sped up
(memory format, bf16, compilation) is `stylenet.speed`'s business.
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Mapping

import pytorch_lightning as pl
import torch

from . import __version__
from .losses import perceptual_loss, perceptual_weights, temporal_loss
from .lossnet import LossNetwork
from .speed import StepPlan, eager_plan, prepare
from .stability import move, moved_copy
from .transformer import TransformerNet

#: checkpoint buffers `target_gram_<layer>`: the style's Gram matrix at each style layer
GRAM_PREFIX = "target_gram_"


def target_grams_in(state_dict: Mapping[str, torch.Tensor], layers) -> dict[str, torch.Tensor] | None:
    """The style targets a checkpoint's state_dict holds for `layers`; None if any is missing or empty."""
    grams = {name: state_dict.get(GRAM_PREFIX + name) for name in layers}
    return grams if all(g is not None and g.numel() for g in grams.values()) else None


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
        # the stability term (loss.temporal_weight, docs/video.md): off by default
        self.temporal_weight = float(loss.get("temporal_weight") or 0.0)
        self.temporal_motion: dict = dict(loss.get("temporal") or {})
        self.lossnet = LossNetwork(loss["network"], [self.content_layer, *self.style_layers], loss.get("weights"))
        for name in self.style_layers:
            self.register_buffer(GRAM_PREFIX + name, torch.zeros(0))
        self.step_plan: StepPlan | None = None  # set by setup_speed (on_fit_start), else eager per device
        if style_image is not None:
            self.set_style(style_image)

    # -- style targets -------------------------------------------------------------------
    def set_style(self, style_image: torch.Tensor) -> None:
        """Compute the style's Gram targets once, from a (1,3,H,W) image in [0,1]."""
        for name, target in self.lossnet.style_grams(style_image, self.style_layers).items():
            setattr(self, GRAM_PREFIX + name, target)

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

    # -- how the step runs (stylenet.speed) ------------------------------------------------
    def setup_speed(self, step_context=None) -> StepPlan:
        """Apply the speed switches for the module's current device (`speed.prepare`): the
        plan `compute_losses` then runs with (compiled networks included); idempotent."""
        self.step_plan = prepare(self, step_context)
        return self.step_plan

    def content_features(self, content: torch.Tensor) -> dict[str, torch.Tensor]:
        """The loss network cut after the content layer (the content batch needs nothing deeper)."""
        return self.lossnet(content, layers=[self.content_layer])

    # -- training --------------------------------------------------------------------------
    def forward(self, content: torch.Tensor) -> torch.Tensor:
        return self.transformer(content)

    def compute_losses(self, content: torch.Tensor, plan: StepPlan | None = None) -> dict[str, torch.Tensor]:
        """The training objective of one batch: stylize it and score it (what every training
        step, the compile trial step and the throughput benchmark run). `plan`: how to run
        the networks (default: the one `setup_speed` made, else eager for the batch's device)."""
        if plan is None:
            plan = self.step_plan
            if plan is None or plan.device != content.device.type:
                plan = self.step_plan = eager_plan(self, content.device)
        speed = plan.switches
        if speed["channels_last"]:
            content = content.contiguous(memory_format=torch.channels_last)
        stylized = plan.transformer(content)
        dtype = self.lossnet.mean.dtype  # bf16 under speed.lossnet_half (Grams are still fp32)
        if speed["single_pass"]:
            # one pass over 2B images; its backward also runs over all 2B (see docs/speed.md)
            features = plan.lossnet(torch.cat([content.to(dtype), stylized.to(dtype)]))
            b = content.shape[0]
            content_features = {k: v[:b].detach() for k, v in features.items()}
            output_features = {k: v[b:] for k, v in features.items()}
        else:
            with torch.no_grad():
                content_features = plan.content_pass(content.to(dtype))
            output_features = plan.lossnet(stylized.to(dtype))
        terms = perceptual_loss(output_features, content_features, self.target_grams, stylized, **self.loss_weights)
        if self.temporal_weight > 0:
            terms["temporal"] = self.temporal_weight * self.stability(content, stylized, plan)
            terms["loss"] = terms["loss"] + terms["temporal"]
        return terms

    def stability(self, content: torch.Tensor, stylized: torch.Tensor, plan: StepPlan) -> torch.Tensor:
        """The unweighted stability term: the batch under a small random camera motion is
        stylized too; its output must equal the first output moved the same way."""
        moved, theta, inside = moved_copy(content, self.temporal_motion)
        moved_output, _ = move(stylized, theta)
        return temporal_loss(moved_output, plan.transformer(moved), inside)

    def training_step(self, batch: torch.Tensor, batch_idx: int) -> torch.Tensor:
        if not self.has_style:
            raise RuntimeError("style targets are not set: call set_style(style_image) before training")
        terms = self.compute_losses(batch)
        self.log("train/loss", terms["loss"], prog_bar=True)
        self.log_dict({f"train/{k}": v for k, v in terms.items() if k != "loss"})
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
