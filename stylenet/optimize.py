"""Optimisation over image pixels: the engine behind Gatys et al. and the pre-image tools.

An *objective* is any callable `image (1,3,H,W) -> {term: scalar tensor, "loss": total}`
(see `stylenet.preimage`); this module only minimises it. Objectives that want ascent
(DeepDream, activation maximisation) return the negated quantity as `loss`.

L-BFGS is the default because it is what Gatys et al. used and it converges in a few
hundred iterations on a deterministic objective; Adam is there for stochastic ones
(jitter), where L-BFGS's curvature pairs would be meaningless.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import torch
import torch.nn.functional as F
from torchvision.transforms.functional import gaussian_blur
from tqdm.auto import tqdm

from .errors import UserError
from .imageio import load_tensor

Objective = Callable[[torch.Tensor], Mapping[str, torch.Tensor]]
#: called after every iteration with (iteration counted from 1 over all scales, image, terms)
StepCallback = Callable[[int, torch.Tensor, Mapping[str, float]], None]
OPTIMIZERS = ("lbfgs", "adam")
CLAMPS = ("project", "straight_through", "none")


class OptimizeError(UserError, ValueError):
    """A bad optimiser setting (unknown optimiser or init, empty schedule)."""


@dataclass
class Result:
    image: torch.Tensor                 # (1,3,H,W) in [0,1], detached
    history: list[dict[str, float]] = field(default_factory=list)  # terms at each iterate, before its update
    final: dict[str, float] = field(default_factory=dict)          # terms at the returned image
    seconds: float = 0.0


def initial_image(init: str, size: tuple[int, int], content: torch.Tensor | None = None,
                  generator: torch.Generator | None = None, noise: float = 1.0) -> torch.Tensor:
    """The starting pixels: `content` (the photo), `noise` (uniform, blended with mid-gray
    by `noise` ∈ [0,1]), `gray` (mid-gray plus a trace of noise so gradients differ per
    pixel), or a path to an image (resized to `size`)."""
    h, w = size
    if init == "content":
        if content is None:
            raise OptimizeError("init=content needs a content image (content=PATH)")
        return F.interpolate(content, size=(h, w), mode="bilinear", align_corners=False) if content.shape[-2:] != (h, w) else content.clone()
    if init in ("noise", "gray"):
        amount = noise if init == "noise" else 0.02
        rand = torch.rand(1, 3, h, w, generator=generator)
        return 0.5 + amount * (rand - 0.5)
    path = Path(init)
    if path.suffix.lower() in (".png", ".jpg", ".jpeg", ".bmp", ".webp", ".tif", ".tiff") or path.exists():
        image = load_tensor(path)
        return F.interpolate(image, size=(h, w), mode="bilinear", align_corners=False)
    raise OptimizeError(f"unknown init {init!r}: use content, noise, gray or an image path")


def jitter(objective: Objective, pixels: int, generator: torch.Generator | None = None) -> Objective:
    """Evaluate the objective on a randomly shifted (rolled) copy: the result must work at
    every offset, which suppresses the high-frequency patterns ascent otherwise finds."""
    if pixels <= 0:
        return objective

    def shifted(image: torch.Tensor) -> Mapping[str, torch.Tensor]:
        dy, dx = torch.randint(-pixels, pixels + 1, (2,), generator=generator).tolist()
        return objective(torch.roll(image, shifts=(dy, dx), dims=(-2, -1)))

    return shifted


def blur_every(n: int, sigma: float) -> Callable[[int, torch.Tensor], None]:
    """A post-step regulariser (Yosinski et al. 2015): blur the pixels every `n` iterations."""
    kernel = 2 * max(1, round(2 * sigma)) + 1

    def apply(step: int, image: torch.Tensor) -> None:
        if n > 0 and sigma > 0 and step % n == 0:
            image.copy_(gaussian_blur(image, [kernel, kernel], [sigma, sigma]))

    return apply


def _optimizer(name: str, params: list[torch.Tensor], lr: float, lbfgs: Mapping) -> torch.optim.Optimizer:
    if name == "lbfgs":
        # max_iter=1: one step() is one iteration (one objective evaluation without a line
        # search), so progress, snapshots and timings are per iteration; the curvature
        # history lives in the optimiser state across calls.
        return torch.optim.LBFGS(
            params, lr=lr, max_iter=1, history_size=int(lbfgs.get("history_size", 100)),
            line_search_fn=lbfgs.get("line_search"), tolerance_grad=float(lbfgs.get("tolerance_grad", 0.0)),
            tolerance_change=float(lbfgs.get("tolerance_change", 0.0)),
        )
    if name == "adam":
        return torch.optim.Adam(params, lr=lr)
    raise OptimizeError(f"unknown optimizer {name!r}; use one of {', '.join(OPTIMIZERS)}")


def _floats(terms: Mapping[str, torch.Tensor]) -> dict[str, float]:
    return {k: float(v.detach()) for k, v in terms.items()}


def optimize(image: torch.Tensor, objective: Objective, *, steps: int, optimizer: str = "lbfgs", lr: float = 1.0,
             lbfgs: Mapping | None = None, clamp: str = "project", post_step: Sequence[Callable] = (),
             callback: StepCallback | None = None, progress: bool | tqdm = False, first_step: int = 1) -> Result:
    """Minimise `objective(image)["loss"]` over the pixels of `image` for `steps` iterations.

    Keeping pixels in [0,1] (`clamp`): `project` clips them after every iteration — right
    for Adam, wrong for L-BFGS, whose curvature pairs the jumps invalidate (measured: the
    objective shot up after ~400 iterations). `straight_through` lets the objective see the
    clipped image while the gradient passes the clip as identity: every reported value is
    that of a valid image and L-BFGS sees one consistent function (with `none`, clipping
    only the result doubled its style loss). The returned image is always clipped and
    `final` is its objective. `post_step` functions `(step, pixels)` edit the pixels in
    place (blur). `progress` is a bool or an open tqdm bar to advance.
    """
    if steps < 1:
        raise OptimizeError(f"steps must be at least 1, got {steps}")
    if clamp not in CLAMPS:
        raise OptimizeError(f"unknown clamp {clamp!r}; use one of {', '.join(CLAMPS)}")
    x = image.detach().float().clone(memory_format=torch.contiguous_format).requires_grad_(True)
    opt = _optimizer(optimizer, [x], lr, lbfgs or {})
    history: list[dict[str, float]] = []
    bar = progress if isinstance(progress, tqdm) else tqdm(total=steps, disable=not progress, leave=False)
    start = time.perf_counter()
    for i in range(steps):
        terms: dict[str, torch.Tensor] = {}

        def closure() -> torch.Tensor:
            opt.zero_grad(set_to_none=True)
            out = objective(x + (x.clamp(0.0, 1.0) - x).detach() if clamp == "straight_through" else x)
            out["loss"].backward()
            if not terms:  # the first evaluation of this iteration is the iterate's value
                terms.update({k: v.detach() for k, v in out.items()})
            return out["loss"]

        opt.step(closure)
        step = first_step + i
        with torch.no_grad():
            for fn in post_step:
                fn(step, x)
            if clamp == "project":
                x.clamp_(0.0, 1.0)
        values = _floats(terms)
        history.append(values)
        bar.update(1)
        bar.set_postfix({k: f"{v:.4g}" for k, v in values.items()}, refresh=False)
        if callback is not None:
            callback(step, x.detach(), values)
    seconds = time.perf_counter() - start
    if not isinstance(progress, tqdm):
        bar.close()
    result = x.detach().clamp(0.0, 1.0)
    with torch.no_grad():
        final = _floats(objective(result))
    return Result(result, history, final, seconds)


def scaled_size(size: tuple[int, int], scale: float) -> tuple[int, int]:
    return max(8, round(size[0] * scale)), max(8, round(size[1] * scale))


def optimize_multiscale(image: torch.Tensor, make_objective: Callable[[tuple[int, int]], Objective], *,
                        scales: Sequence[float], steps: int, progress: bool = False, **kwargs) -> Result:
    """Coarse-to-fine: optimise at each fraction of the final size in turn, upsampling the
    result as the next start. Coarse scales fix the large structures cheaply (the same
    idea as DeepDream's octaves); `make_objective(size)` builds the objective for a size.

    `steps` iterations per scale; the history and callback's step count run over all scales.
    The result has the size of the last scale (1.0: the size of `image`).
    """
    scales = list(scales) or [1.0]
    if any(s <= 0 for s in scales):
        raise OptimizeError(f"scales must be positive fractions of the size, got {scales}")
    full = tuple(image.shape[-2:])
    x, history, seconds = image, [], 0.0
    with tqdm(total=steps * len(scales), disable=not progress, leave=False) as bar:
        for k, scale in enumerate(scales):
            size = scaled_size(full, scale)
            x = F.interpolate(x, size=size, mode="bilinear", align_corners=False) if x.shape[-2:] != size else x
            bar.set_description(f"{size[1]}x{size[0]}")
            result = optimize(x, make_objective(size), steps=steps, progress=bar, first_step=len(history) + 1, **kwargs)
            x, seconds = result.image, seconds + result.seconds
            history += result.history
    return Result(x, history, result.final, seconds)
