"""Lightning callbacks: a grid of stylized validation photos, logged and saved as PNG."""

from __future__ import annotations

from pathlib import Path

import pytorch_lightning as pl
import torch
from torchvision.utils import make_grid

from .imageio import save_image


class SampleGrid(pl.Callback):
    """Every `every_n_steps` (and at the end) stylize fixed photos → `<dir>/step_NNNNNN.png`.

    The grid's top row holds the photos, the rows below their stylized versions: one row,
    or one row per style of a multi-style network (in the network's order). `images`
    default to the datamodule's `sample_batch()` and `out_dir` to `<trainer's root dir>/samples`,
    so the callback can be built from config alone (configs/train.yaml `callbacks.samples`).
    """

    def __init__(self, every_n_steps: int = 100, out_dir: str | Path | None = None, images: torch.Tensor | None = None):
        self.every_n_steps, self.images = every_n_steps, images
        self.out_dir = Path(out_dir) if out_dir else None
        self.last_path: Path | None = None
        self._last_step = -1

    @torch.no_grad()
    def render(self, pl_module: pl.LightningModule) -> torch.Tensor:
        was_training = pl_module.training
        pl_module.eval()
        content = self.images.to(pl_module.device)
        net = pl_module.transformer
        styles = range(net.num_styles) if getattr(net, "num_styles", 1) > 1 else [None]
        rows = [net(content, style).float() for style in styles]
        pl_module.train(was_training)
        return make_grid(torch.cat([content, *rows]).clamp(0, 1).cpu(), nrow=len(content), padding=4, pad_value=1.0)

    def _emit(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        step = trainer.global_step
        if not trainer.is_global_zero or step == self._last_step:
            return
        self._last_step = step
        if self.images is None:
            self.images = trainer.datamodule.sample_batch()
        out_dir = self.out_dir or Path(trainer.default_root_dir) / "samples"
        grid = self.render(pl_module)
        self.last_path = save_image(grid, out_dir / f"step_{step:06d}.png")
        save_image(grid, out_dir / "latest.png")
        for logger in trainer.loggers:
            if hasattr(logger, "log_image"):  # WandbLogger
                logger.log_image(key="samples", images=[grid], step=step, caption=[f"step {step}"])

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx) -> None:
        if self.every_n_steps and trainer.global_step % self.every_n_steps == 0:
            self._emit(trainer, pl_module)

    def on_train_end(self, trainer, pl_module) -> None:
        self._emit(trainer, pl_module)


class FlushLoggers(pl.Callback):
    """Write the loggers' buffered metrics whenever a checkpoint is saved.

    Lightning's CSVLogger writes every 100 steps: a run killed after a checkpoint would resume
    from it with the metrics since the last write gone. Flushed here, what the checkpoint
    covers is on disk too.
    """

    def on_save_checkpoint(self, trainer, pl_module, checkpoint) -> None:
        for logger in trainer.loggers:
            logger.save()
