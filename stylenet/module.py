"""LightningModule: the transformation network trained against perceptual losses.

The module owns the style targets (Gram matrices of the style image, computed once and
kept as buffers so every DDP rank and every resumed run uses the same ones). The frozen
loss network is rebuilt from config, never saved in checkpoints.
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Mapping

import pytorch_lightning as pl
import torch

from . import __version__
from .losses import gram, perceptual_loss
from .lossnet import LossNetwork
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
        self.style_layers: dict[str, float] = {k: float(v) for k, v in loss["style_layers"].items()}
        self.content_layer: str = loss["content_layer"]
        self.lossnet = LossNetwork(loss["network"], [self.content_layer, *self.style_layers], loss.get("weights"))
        for name in self.style_layers:
            self.register_buffer(GRAM_PREFIX + name, torch.zeros(0))
        if style_image is not None:
            self.set_style(style_image)

    # -- style targets -------------------------------------------------------------------
    @torch.no_grad()
    def set_style(self, style_image: torch.Tensor) -> None:
        """Compute the style's Gram targets once, from a (1,3,H,W) image in [0,1]."""
        features = self.lossnet(style_image.to(self.device, torch.float32))
        for name in self.style_layers:
            setattr(self, GRAM_PREFIX + name, gram(features[name]))

    @property
    def target_grams(self) -> dict[str, torch.Tensor]:
        return {name: getattr(self, GRAM_PREFIX + name) for name in self.style_layers}

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

    # -- training --------------------------------------------------------------------------
    def forward(self, content: torch.Tensor) -> torch.Tensor:
        return self.transformer(content)

    def compute_losses(self, content: torch.Tensor) -> dict[str, torch.Tensor]:
        """One training objective evaluation: stylize the batch and score it."""
        speed = self.hparams.speed
        if speed.get("channels_last"):
            content = content.contiguous(memory_format=torch.channels_last)
        stylized = self.transformer(content)
        if speed.get("single_pass", True):
            features = self.lossnet(torch.cat([content, stylized.to(content.dtype)]))
            b = content.shape[0]
            content_features = {k: v[:b].detach() for k, v in features.items()}
            output_features = {k: v[b:] for k, v in features.items()}
        else:
            with torch.no_grad():
                content_features = self.lossnet(content)
            output_features = self.lossnet(stylized)
        loss = self.hparams.loss
        return perceptual_loss(
            output_features, content_features, self.target_grams, stylized,
            content_layer=self.content_layer, style_layers=self.style_layers,
            content_weight=float(loss["content_weight"]),
            style_weight=float(loss["style_weight"]) * float(loss.get("style_scale", 1.0)),
            tv_weight=float(loss["tv_weight"]),
        )

    def training_step(self, batch: torch.Tensor, batch_idx: int) -> torch.Tensor:
        if not self.target_grams or next(iter(self.target_grams.values())).numel() == 0:
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
        optim = self.hparams.optim
        return torch.optim.Adam(self.transformer.parameters(), lr=self.effective_lr(), betas=tuple(optim.get("betas", (0.9, 0.999))))

    def on_fit_start(self) -> None:
        if self.hparams.speed.get("channels_last"):
            self.transformer.to(memory_format=torch.channels_last)
            self.lossnet.to(memory_format=torch.channels_last)
        if self.trainer.is_global_zero and self.effective_lr() != float(self.hparams.optim["lr"]):
            warnings.warn(f"learning rate scaled to {self.effective_lr():.3g} for the global batch", stacklevel=1)
