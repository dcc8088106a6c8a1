"""`python scripts/gatys.py mode=...`: the composed config (configs/gatys.yaml, configs/mode/)
→ one pixel optimisation (or a sweep of them) → an image file, with the numbers printed.

Every mode builds its objective from `stylenet.preimage` on the same loss network, losses
and style presets as training; `stylenet.optimize` does the optimising.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from pathlib import Path

import torch
from omegaconf import DictConfig, OmegaConf

from . import preimage
from .device import pick_device
from .imageio import load_tensor, save_image
from .losses import perceptual_weights
from .lossnet import LOGITS, LossNetwork
from .optimize import OptimizeError, Result, blur_every, initial_image, jitter, optimize_multiscale
from .styles import resolve_style_image

MODES = ("style", "invert", "texture", "dream", "maximize", "sweep")


class Job:
    """One run's shared pieces: config, device, seeded generator, output folder."""

    def __init__(self, cfg: DictConfig, run_dir: Path):
        self.cfg, self.run_dir = cfg, Path(run_dir)
        self.device = pick_device(cfg.device)
        self.generator = torch.Generator().manual_seed(int(cfg.seed))
        torch.manual_seed(int(cfg.seed))

    def lossnet(self, layers) -> LossNetwork:
        return LossNetwork(self.cfg.loss.network, list(layers), self.cfg.loss.weights).to(self.device)

    def content(self) -> torch.Tensor:
        if not self.cfg.content:
            raise OptimizeError(f"mode={self.cfg.mode} needs a photo: content=PATH")
        return load_tensor(self.cfg.content, int(self.cfg.size)).to(self.device)

    def style_image(self) -> torch.Tensor:
        return load_tensor(resolve_style_image(self.cfg.style, mirrors=self.cfg.get("style_mirrors")), int(self.cfg.style.size)).to(self.device)

    def start(self, content: torch.Tensor | None) -> torch.Tensor:
        size = tuple(content.shape[-2:]) if content is not None else (int(self.cfg.size),) * 2
        return initial_image(str(self.cfg.init), size, content, self.generator, float(self.cfg.noise)).to(self.device)

    def optimize(self, start: torch.Tensor, make_objective: Callable, tag: str | None = None, post_step=()) -> Result:
        cfg = self.cfg
        every, tag = int(cfg.snapshot_every), tag or cfg.mode

        def snapshot(step: int, image: torch.Tensor, _terms) -> None:
            if every > 0 and step % every == 0:
                save_image(image, self.run_dir / "snapshots" / f"{tag}_{step:05d}.png")

        result = optimize_multiscale(
            start, make_objective, scales=list(cfg.scales), steps=int(cfg.steps), optimizer=str(cfg.optimizer),
            lr=float(cfg.lr), lbfgs=OmegaConf.to_container(cfg.lbfgs), clamp=str(cfg.clamp), post_step=post_step,
            callback=snapshot, progress=bool(cfg.progress),
        )
        # the option ranges (configs/constraints.yaml) keep each weight finite; their product times a
        # loss term can still overflow float32, and an inf objective leaves the start image unchanged
        terms = {**(result.history[0] if result.history else {}), **result.final}
        if bad := {k: v for k, v in terms.items() if not math.isfinite(float(v))}:
            raise OptimizeError(f"the objective is not finite ({_fmt(bad)}): the loss weights overflow; "
                                "lower loss.style_weight, style.weight or the layer weights")
        return result


def _fmt(terms) -> str:
    return " ".join(f"{k}={v:.4g}" for k, v in terms.items())


def _loss_weights(cfg: DictConfig, **overrides) -> dict:
    return perceptual_weights({**OmegaConf.to_container(cfg.loss, resolve=True), **overrides})


def _style_transfer(job: Job, content: torch.Tensor, weights: dict, lossnet: LossNetwork, targets, tag=None) -> Result:
    make = lambda size: preimage.style_transfer(lossnet, preimage.resize(content, size), targets, weights)  # noqa: E731
    return job.optimize(job.start(content), make, tag)


def run_style(job: Job) -> tuple[torch.Tensor, str]:
    content, weights = job.content(), _loss_weights(job.cfg)
    net = job.lossnet([weights["content_layer"], *weights["style_layers"]])
    targets = net.style_grams(job.style_image(), list(weights["style_layers"]))
    result = _style_transfer(job, content, weights, net, targets)
    first = result.history[0]
    return result.image, f"start: {_fmt(first)}\nfinal: {_fmt(result.final)}  ({len(result.history)} iterations, {result.seconds:.1f}s)"


def run_invert(job: Job) -> tuple[torch.Tensor, str]:
    c, content = job.cfg.invert, job.content()
    net = job.lossnet([c.layer])

    def make(size):
        with torch.no_grad():
            target = net(preimage.resize(content, size))[c.layer]
        return preimage.inversion(net, c.layer, target, tv_weight=float(c.tv_weight), tv_beta=float(c.tv_beta),
                                  alpha_weight=float(c.alpha_weight), alpha=float(c.alpha))

    result = job.optimize(job.start(content), make)
    psnr = preimage.psnr(result.image, preimage.resize(content, tuple(result.image.shape[-2:])))
    return result.image, f"layer {c.layer}: final {_fmt(result.final)}; PSNR vs the photo {psnr:.2f} dB"


def run_texture(job: Job) -> tuple[torch.Tensor, str]:
    weights = _loss_weights(job.cfg)
    layers = weights["style_layers"]
    net = job.lossnet(layers)
    targets = net.style_grams(job.style_image(), list(layers))
    make = lambda size: preimage.texture(net, targets, layers, weights["style_weight"], float(job.cfg.texture.tv_weight))  # noqa: E731
    start = job.start(None)
    before = preimage.gram_error(net, start, targets, layers)
    result = job.optimize(start, make)
    after = preimage.gram_error(net, result.image, targets, layers)
    return result.image, f"Gram error (unweighted style loss) {before:.4g} → {after:.4g} (÷{before / max(after, 1e-30):.3g})"


def run_dream(job: Job) -> tuple[torch.Tensor, str]:
    c, content = job.cfg.dream, job.content()
    net = job.lossnet([c.layer])
    measure = preimage.dream(net, c.layer)
    start = job.start(content)
    result = job.optimize(start, lambda size: jitter(measure, int(c.jitter), job.generator))
    with torch.no_grad():
        before, after = float(measure(start)["energy"]), float(measure(result.image)["energy"])
    return result.image, f"layer {c.layer} mean squared activation {before:.4g} → {after:.4g} (×{after / max(before, 1e-30):.3g})"


def run_maximize(job: Job) -> tuple[torch.Tensor, str]:
    c = job.cfg.maximize
    net = job.lossnet([c.layer])
    measure = preimage.maximize(net, c.layer, int(c.channel), l2_weight=float(c.l2_weight), tv_weight=float(c.tv_weight),
                                log_softmax=c.class_score == "log_softmax")
    start = job.start(None)
    post = [blur_every(int(c.blur_every), float(c.blur_sigma))]
    result = job.optimize(start, lambda size: jitter(measure, int(c.jitter), job.generator), post_step=post)
    with torch.no_grad():
        before, after = float(measure(start)["activation"]), float(measure(result.image)["activation"])
    text = f"{c.layer}[{c.channel}] activation {before:.4g} → {after:.4g}"
    if c.layer == LOGITS:
        with torch.no_grad():
            scores = net(result.image)[LOGITS][0]
        text += f"; class rank {int((scores > scores[int(c.channel)]).sum()) + 1} of {scores.numel()}"
    return result.image, text


def sweep_columns(groups, cumulative: bool) -> list[list[str]]:
    groups = [list(g) for g in groups]
    return [sum(groups[: k + 1], []) for k in range(len(groups))] if cumulative else groups


def sweep_style_weights(cfg: DictConfig, layers: list[str], targets, base: dict) -> dict:
    """Style weights for one column. `sweep.normalize`: each layer's Gram error relative to
    its target's energy, averaged over the column — Gram magnitudes differ by orders of
    magnitude between layers, and unnormalised a deep column would look unstyled only
    because its numbers are small. Else the loss config's layer weights (1 if absent)."""
    if not cfg.sweep.normalize:
        return {"style_layers": {n: float(base["style_layers"].get(n, 1.0)) for n in layers}}
    energy = {n: float(targets[n].pow(2).mean().clamp_min(1e-30)) for n in layers}
    return {"style_layers": {n: 1.0 / (len(layers) * energy[n]) for n in layers},
            "style_weight": float(cfg.sweep.style_weight) * float(cfg.loss.style_scale)}


def run_sweep(job: Job) -> tuple[torch.Tensor, str]:
    cfg, content = job.cfg, job.content()
    columns = sweep_columns(cfg.sweep.groups, bool(cfg.sweep.cumulative))
    base = _loss_weights(cfg)
    layers = dict.fromkeys([*cfg.sweep.content_layers, *(n for col in columns for n in col)])
    net = job.lossnet(layers)
    targets = net.style_grams(job.style_image(), [n for col in columns for n in col])
    images, labels, lines = [], [], []
    for content_layer in cfg.sweep.content_layers:
        for col in columns:
            weights = {**base, "content_layer": content_layer, **sweep_style_weights(cfg, col, targets, base)}
            tag = f"{content_layer}__{'+'.join(col)}"
            result = _style_transfer(job, content, weights, net, targets, tag=tag)
            images.append(result.image.cpu())
            label = f"S {'+'.join(col) if len(col) < 4 else col[0] + '..' + col[-1]} | C {content_layer}"
            labels.append(label)
            lines.append(f"{label}: {_fmt(result.final)}")
    return preimage.contact_sheet(images, labels, nrow=len(columns)), "\n".join(lines)


RUNNERS = {"style": run_style, "invert": run_invert, "texture": run_texture, "dream": run_dream,
           "maximize": run_maximize, "sweep": run_sweep}


def default_output(cfg: DictConfig, run_dir: Path) -> Path:
    what = {"invert": cfg.invert.layer, "dream": cfg.dream.layer, "maximize": f"{cfg.maximize.layer}_{cfg.maximize.channel}"}
    from .outputs import safe_name

    return Path(run_dir) / f"{cfg.mode}_{safe_name(what.get(cfg.mode, cfg.style.name))}.png"


def run(cfg: DictConfig, run_dir: Path) -> Path:
    """Run the configured mode; write and return the output image's path."""
    if cfg.mode not in RUNNERS:
        raise OptimizeError(f"unknown mode {cfg.mode!r}; use one of {', '.join(MODES)}")
    image, summary = RUNNERS[cfg.mode](Job(cfg, run_dir))
    from .outputs import output_file

    out = save_image(image.cpu(), output_file(cfg.output) if cfg.output else default_output(cfg, run_dir))
    print(summary)
    print(f"output: {out}")
    return out
