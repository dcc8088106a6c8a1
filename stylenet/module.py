"""LightningModule: the transformation network trained against perceptual losses.

It holds the training objective and what the objective needs: the network, the frozen loss
network (rebuilt from config, never saved in checkpoints), the loss weights, the optimiser,
and the style targets (Gram matrices of the style image, computed once and kept as buffers
so every DDP rank and every resumed run uses the same ones). How a step is sped up
(memory format, bf16, compilation) is `stylenet.speed`'s business.

Several styles in one network (`style_names`, docs/multistyle.md): the network has a
conditional instance norm per style, the Gram buffers hold one target per trained style
(S,C,C), and every image of a batch is paired with a style of its own (`StyleSet`).
With `train_only="norm"` only the γ, β of the styles being added are trained (`AddedStyles`).
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Mapping, Sequence

import pytorch_lightning as pl
import torch
import torch.nn.functional as F
from torch import nn

from . import __version__
from .losses import distill_loss, perceptual_loss, perceptual_weights, temporal_loss
from .lossnet import LossNetwork
from .speed import StepPlan, eager_plan, prepare
from .stability import move, moved_copy
from .transformer import ConditionalInstanceNorm2d, TransformerNet

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


class AddedStyles(nn.Module):
    """`train_only="norm"`: the γ, β rows of the styles being added, the only trained tensors.

    The network (shared weights and the existing styles' γ, β) is frozen and stays out of the
    optimiser: its forward runs with these rows spliced into its conditional norms
    (`torch.func.functional_call`), and `sync` copies them into the network after every
    optimiser step, so checkpoints, exports and the sample grid see the network as trained.
    """

    def __init__(self, net: TransformerNet, first: int):
        super().__init__()
        self.first = first
        self.paths = [name for name, m in net.named_modules() if isinstance(m, ConditionalInstanceNorm2d)]
        self.gamma = nn.ParameterList([nn.Parameter(torch.empty(0)) for _ in self.paths])
        self.beta = nn.ParameterList([nn.Parameter(torch.empty(0)) for _ in self.paths])
        object.__setattr__(self, "net", net)  # not a child: its tensors stay under transformer.* only
        self.reset()

    @classmethod
    def appended(cls, net: TransformerNet, styles: StyleSet) -> AddedStyles:
        """The trained styles must be the network's last ones, after at least one existing style;
        the network itself is frozen."""
        first = min(styles.trained)
        if styles.trained != list(range(first, len(styles.names))) or first == 0:
            raise ValueError("train_only=norm trains the styles appended last, after at least one existing style")
        return cls(net.requires_grad_(False), first)

    @torch.no_grad()
    def reset(self) -> None:
        """Take the new rows from the network (after its weights were loaded)."""
        for path, gamma, beta in zip(self.paths, self.gamma, self.beta):
            norm = self.net.get_submodule(path)
            gamma.data = norm.weight[self.first:].detach().clone()
            beta.data = norm.bias[self.first:].detach().clone()

    def forward(self, x: torch.Tensor, style=None) -> torch.Tensor:
        from torch.func import functional_call

        params = {}
        for path, gamma, beta in zip(self.paths, self.gamma, self.beta):
            norm = self.net.get_submodule(path)
            params[f"{path}.weight"] = torch.cat([norm.weight[: self.first], gamma.to(norm.weight)])
            params[f"{path}.bias"] = torch.cat([norm.bias[: self.first], beta.to(norm.bias)])
        return functional_call(self.net, params, (x, style), strict=False)

    @torch.no_grad()
    def sync(self) -> None:
        for path, gamma, beta in zip(self.paths, self.gamma, self.beta):
            norm = self.net.get_submodule(path)
            norm.weight[self.first:] = gamma
            norm.bias[self.first:] = beta


class StyleSet:
    """The styles of the network and the ones a run trains: `names` in the network's order,
    `trained` (indices into `names`, default all) and `scales`, each trained style's preset
    weight (`losses.style_scale`). `multi`: a multi-style network (a conditional norm per
    style, a style per image); else one style, whose weight is already in the loss weights."""

    def __init__(self, names: Sequence[str], trained: Sequence[int] | None = None,
                 scales: Sequence[float] | None = None, multi: bool = False):
        self.names, self.multi = list(names), multi
        self.trained = list(range(len(self.names)) if trained is None else trained)
        self.scales = [float(w) for w in (scales or [1.0] * len(self.trained))]
        if len(set(self.names)) != len(self.names):
            raise ValueError(f"style names must be unique: {self.names}")
        if len(self.scales) != len(self.trained) or not all(0 <= i < len(self.names) for i in self.trained):
            raise ValueError("trained_styles must index style_names, with one style scale each")

    def hparams(self, train_only: str | None) -> dict:
        """What a multi-style checkpoint records about its styles (a single-style one: nothing)."""
        if not self.multi:
            return {}
        return {"style_names": self.names, "trained_styles": self.trained, "style_scales": self.scales, "train_only": train_only}

    def sample(self, batch: int) -> torch.Tensor:
        """A style per image (indices into the trained styles): a fresh random order of the
        styles, repeated over the batch. Every step's gradient then covers min(B, T) styles
        (the shared weights never chase one style at a time) and every style's γ, β are
        updated at almost every step; over time each style gets the same number of images."""
        n = len(self.trained)
        return torch.randperm(n).repeat(-(-batch // n))[:batch]

    def one_hot(self, styles: torch.Tensor, device) -> torch.Tensor:
        """(B,) indices into the trained styles → one-hot weights (B, S) over the network's styles."""
        index = torch.tensor(self.trained, device=device)[styles.to(device)]
        return F.one_hot(index, len(self.names)).float()

    def scale(self, styles: torch.Tensor, device) -> torch.Tensor:
        """(B,) indices into the trained styles → each image's style weight (B,)."""
        return torch.tensor(self.scales, device=device)[styles.to(device)]


class Teacher(nn.Module):
    """Distillation (`distill.teacher=`, single style): a trained network, frozen and always in
    eval mode, whose outputs the trained network also imitates: `weight` × the pixel MSE. Kept
    out of checkpoints like the loss network (`teacher.*`)."""

    def __init__(self, net: nn.Module, weight: float):
        super().__init__()
        self.net = net.eval().requires_grad_(False)
        self.weight = float(weight)

    def train(self, mode: bool = True):
        return super().train(False)  # Lightning switches every submodule to train mode at fit start

    def forward(self, content: torch.Tensor, stylized: torch.Tensor) -> torch.Tensor:
        with torch.no_grad():
            taught = self.net(content)
        return self.weight * distill_loss(stylized, taught)


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
        style_names: Sequence[str] | None = None,
        trained_styles: Sequence[int] | None = None,
        style_scales: Sequence[float] | None = None,
        style_images: Sequence[torch.Tensor] | None = None,
        train_only: str | None = None,
        teacher: nn.Module | None = None,
        distill: Mapping | None = None,
    ):
        """One style (`style_image`) as always; or a multi-style network holding `style_names`,
        trained on `trained_styles` (indices into them; default all) with one Gram target each
        (`style_images`) and each its own style weight (`style_scales`, the presets' style.weight).
        `train_only="norm"`: only the trained styles' γ, β are learned (adding styles).
        `teacher` (single style): a trained network whose outputs the network also imitates,
        `distill["weight"]` × the pixel MSE (distillation; `distill` is recorded as given)."""
        super().__init__()
        model, loss, optim, speed = _plain(model), _plain(loss), _plain(optim), _plain(speed or {})
        loss.pop("layers", None)  # the per-network table: already resolved into the fields
        self.style_set = StyleSet(style_names or [style_name], trained_styles, style_scales, multi=style_names is not None)
        if self.style_set.multi:
            model = {**model, "num_styles": len(self.style_set.names)}
        if teacher is not None and self.style_set.multi:
            raise ValueError("distillation (a teacher network) trains single-style networks only")
        self.save_hyperparameters({
            "model": model, "loss": loss, "optim": optim, "speed": speed, "style_name": style_name, "batch_size": batch_size,
            "image_size": image_size, "stylenet_version": __version__, **self.style_set.hparams(train_only),
            **({"distill": _plain(distill or {})} if teacher is not None else {})})
        self.transformer = TransformerNet(**model)
        self.teacher = Teacher(teacher, (distill or {}).get("weight", 1.0)) if teacher is not None else None
        # train_only=norm (checked by train.run_styles): only the appended styles' γ, β learn
        self.added_styles = AddedStyles.appended(self.transformer, self.style_set) if train_only == "norm" else None
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
        if style_images is not None:
            self.set_styles(style_images)

    @property
    def style_names(self) -> list[str]:
        return self.style_set.names

    @property
    def trained_styles(self) -> list[int]:
        return self.style_set.trained

    @property
    def multi_style(self) -> bool:
        return self.style_set.multi

    @property
    def network(self) -> nn.Module:
        """What training runs and optimises: the transformer, or with train_only=norm the
        transformer with the new styles' γ, β spliced in (`AddedStyles`)."""
        return self.added_styles if self.added_styles is not None else self.transformer

    # -- style targets -------------------------------------------------------------------
    def set_style(self, style_image: torch.Tensor) -> None:
        """Compute the style's Gram targets once, from a (1,3,H,W) image in [0,1]."""
        for name, target in self.lossnet.style_grams(style_image, self.style_layers).items():
            setattr(self, GRAM_PREFIX + name, target)

    def set_styles(self, style_images: Sequence[torch.Tensor]) -> None:
        """One Gram target per trained style: buffers (T,C,C), in `trained_styles` order."""
        if len(style_images) != len(self.trained_styles):
            raise ValueError(f"{len(style_images)} style images for {len(self.trained_styles)} trained styles")
        grams = [self.lossnet.style_grams(image, self.style_layers) for image in style_images]
        for name in self.style_layers:
            setattr(self, GRAM_PREFIX + name, torch.cat([g[name] for g in grams]))

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
        checkpoint["state_dict"] = {k: v for k, v in checkpoint["state_dict"].items() if not k.startswith(("lossnet.", "teacher."))}

    def on_load_checkpoint(self, checkpoint: dict) -> None:
        state = checkpoint["state_dict"]
        for name in ("lossnet", "teacher"):
            if (part := getattr(self, name)) is not None:
                for key, value in part.state_dict().items():
                    state.setdefault(f"{name}.{key}", value)

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
    def forward(self, content: torch.Tensor, style=None) -> torch.Tensor:
        return self.transformer(content, style)

    def compute_losses(self, content: torch.Tensor, plan: StepPlan | None = None,
                       styles: torch.Tensor | None = None) -> dict[str, torch.Tensor]:
        """The training objective of one batch: stylize it and score it (what every training
        step, the compile trial step and the throughput benchmark run). `plan`: how to run
        the networks (default: the one `setup_speed` made, else eager for the batch's device).
        `styles` (multi-style only): each image's style, an index into the trained styles
        (default: 0, 1, ..., cycling; training passes `StyleSet.sample`)."""
        if plan is None:
            plan = self.step_plan
            if plan is None or plan.device != content.device.type:
                plan = self.step_plan = eager_plan(self, content.device)
        speed = plan.switches
        if speed["channels_last"]:
            content = content.contiguous(memory_format=torch.channels_last)
        targets, scale, network = self.target_grams, None, plan.transformer
        if self.multi_style:
            if styles is None:
                styles = torch.arange(content.shape[0]) % len(self.trained_styles)
            styles = styles.to(content.device)
            weights = self.style_set.one_hot(styles, content.device)
            targets = {name: g[styles] for name, g in targets.items()}
            scale = self.style_set.scale(styles, content.device)
            network = lambda x: plan.transformer(x, weights)  # noqa: E731
        stylized = network(content)
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
        terms = perceptual_loss(output_features, content_features, targets, stylized, style_scale=scale, **self.loss_weights)
        if self.teacher is not None and self.teacher.weight > 0:
            terms["distill"] = self.teacher(content, stylized)
            terms["loss"] = terms["loss"] + terms["distill"]
        if self.temporal_weight > 0:
            terms["temporal"] = self.temporal_weight * self.stability(content, stylized, network)
            terms["loss"] = terms["loss"] + terms["temporal"]
        return terms

    def stability(self, content: torch.Tensor, stylized: torch.Tensor, network) -> torch.Tensor:
        """The unweighted stability term: the batch under a small random camera motion is
        stylized too (by `network`, each image in its style); its output must equal the first
        output moved the same way."""
        moved, theta, inside = moved_copy(content, self.temporal_motion)
        moved_output, _ = move(stylized, theta)
        return temporal_loss(moved_output, network(moved), inside)

    def training_step(self, batch: torch.Tensor, batch_idx: int) -> torch.Tensor:
        if not self.has_style:
            raise RuntimeError("style targets are not set: call set_style(style_image) before training")
        styles = self.style_set.sample(batch.shape[0]) if self.multi_style else None
        terms = self.compute_losses(batch, styles=styles)
        per_image = terms.pop("style_per_image", None)
        self.log("train/loss", terms["loss"], prog_bar=True)
        self.log_dict({f"train/{k}": v for k, v in terms.items() if k != "loss"})
        if styles is not None and per_image is not None:
            # each style's term, averaged over its images (counts from the CPU indices: no device sync)
            counts, on_device = torch.bincount(styles, minlength=len(self.trained_styles)), styles.to(per_image.device)
            for j, index in enumerate(self.trained_styles):
                if counts[j] > 0:
                    value = (per_image * (on_device == j)).sum() / int(counts[j])
                    self.log(f"train/style/{self.style_names[index]}", value, batch_size=int(counts[j]))
        return terms["loss"]

    def optimizer_step(self, *args, **kwargs):
        super().optimizer_step(*args, **kwargs)
        if self.added_styles is not None:
            self.added_styles.sync()  # before any callback (checkpoint, sample grid) reads the network

    def effective_lr(self) -> float:
        """Base lr (`optim.norm_lr` when only new styles' γ, β learn) scaled with the global batch
        (batch × devices × nodes × accumulation)."""
        optim = self.hparams.optim
        world = self.trainer.world_size * self.trainer.accumulate_grad_batches if self._trainer is not None else 1
        ratio = self.hparams.batch_size * world / float(optim.get("reference_batch_size", 4))
        power = {"none": 0.0, "linear": 1.0, "sqrt": 0.5}[str(optim.get("scale_lr", "none"))]
        base = optim.get("norm_lr") if self.hparams.get("train_only") == "norm" and optim.get("norm_lr") else optim["lr"]
        return float(base) * math.pow(ratio, power)

    def schedule_options(self) -> dict:
        """`optim`, with train_only=norm's own warm-up (`optim.norm_warmup_steps`) where it applies."""
        optim = dict(self.hparams.optim)
        if self.hparams.get("train_only") == "norm" and optim.get("norm_warmup_steps") is not None:
            optim["warmup_steps"] = optim["norm_warmup_steps"]
        return optim

    def configure_optimizers(self):
        """Adam; with `optim.warmup_steps` a linear warm-up, then `optim.schedule` (constant |
        cosine down to `optim.min_lr_ratio` × lr at the run's last step), stepped per batch."""
        optim = self.schedule_options()
        params = [p for p in self.network.parameters() if p.requires_grad]  # train_only=norm: the new γ, β only
        adam = torch.optim.Adam(params, lr=self.effective_lr(), betas=tuple(optim.get("betas", (0.9, 0.999))))
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
