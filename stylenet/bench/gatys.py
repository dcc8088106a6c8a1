"""`python scripts/benchmark.py mode=gatys model=EXPORT`: Gatys optimisation vs one pass of a
trained network (Johnson et al. 2016, Table 1 and Fig. 5).

For each content image (centre-cropped to a square) and size, the trained network runs
once (timed, median of `repeats` after a warm-up), and L-BFGS over pixels runs
max(iterations) iterations on the *same* objective: the loss config recorded in the
model file (network, layers, content/style/TV weights × style scale) and the checkpoint's
own Gram targets (a .ckpt) or the style image (an export). The Gatys results at each
listed iteration count are snapshots of that one run, so their times are cumulative.
Objective values are of the saved (clamped) images. Prints a table, writes a PNG.
"""

from __future__ import annotations

import json
import os
import time
from pathlib import Path

# see scripts/gatys.py: spinning OpenMP threads make timings meaningless on a shared CPU
# (takes effect when this module is what first imports torch, as from scripts/benchmark.py)
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")
import torch  # noqa: E402
from torch.utils.benchmark import Measurement, Timer  # noqa: E402

from stylenet.commands.app import as_list  # noqa: E402

def _content_paths(spec) -> list[Path]:
    """`content=`: an image, a folder of images, or a list of either."""
    from stylenet.imageio import ImageError, find_images

    paths: list[Path] = []
    for item in as_list(spec):
        p = Path(str(item))
        if p.is_dir():
            paths += find_images(p)
        elif p.is_file():
            paths.append(p)
        else:
            raise ImageError(f"content image not found: {p}")
    if not paths:
        raise ImageError(f"no images in {spec}")
    return paths


def square(image: torch.Tensor, size: int) -> torch.Tensor:
    """Centre crop to a square, then resize to size × size (Johnson's 256², 512² inputs)."""
    from stylenet.preimage import resize

    h, w = image.shape[-2:]
    s = min(h, w)
    top, left = (h - s) // 2, (w - s) // 2
    return resize(image[..., top:top + s, left:left + s], (size, size))


def _style_targets(cfg, model_path: Path, metadata: dict, lossnet, layers, index: int | None = None,
                   count: int = 1) -> tuple[dict, str]:
    """The Gram targets: the checkpoint's own buffers (row `index` of a multi-style one's `count`
    rows; a run that added styles keeps only theirs), else computed from the style image."""
    if model_path.suffix == ".ckpt":
        from stylenet.module import target_grams_in

        state = torch.load(model_path, map_location="cpu", weights_only=True).get("state_dict", {})
        grams = target_grams_in(state, layers)
        if grams is not None and (index is None or all(g.shape[0] == count for g in grams.values())):
            if index is not None:
                grams = {k: g[index:index + 1] for k, g in grams.items()}
            return grams, "checkpoint Gram targets"
    from stylenet.imageio import load_tensor
    from stylenet.commands.app import style_image
    from stylenet.styles import StyleError

    spec = cfg["style"] or metadata.get("style_name")
    if not spec:
        raise StyleError(f"{model_path} names no style; pass style=PRESET|IMAGE")
    path = style_image(spec)
    return lossnet.style_grams(load_tensor(path, int(cfg["style_size"])), layers), f"style image {path}"


def _network_seconds(stylizer, x: torch.Tensor, repeats: int) -> tuple[torch.Tensor, float]:
    """The network's output and its median seconds per pass (after a warm-up: allocator, oneDNN primitives)."""
    y = stylizer.stylize_tensor(x)
    timer = Timer(stmt="stylizer.stylize_tensor(x)", globals={"stylizer": stylizer, "x": x}, num_threads=torch.get_num_threads())
    (times,) = Measurement.merge([timer.timeit(1) for _ in range(max(1, repeats))])
    return y.float().clamp(0, 1), times.median


def gatys_run(objective, x0: torch.Tensor, iterations: list[int], history_size: int, target: float):
    """One L-BFGS run to max(iterations) → ({n: (seconds, image)}, reach, trace).

    Pixels are kept valid straight-through (`stylenet.optimize`), so `trace[k]`, the
    objective after k iterations (trace[0]: the start), is that of the clipped image a
    user would save; `reach` is the first k ≥ 1 with trace[k] ≤ target, else None.
    Seconds count only the optimiser, not the snapshot copies.
    """
    from stylenet.device import synchronize
    from stylenet.optimize import optimize

    wanted, snaps, clock = set(iterations), {}, {"timed": 0.0, "mark": 0.0}

    def callback(step, image, _terms):
        synchronize(image.device)
        clock["timed"] += time.perf_counter() - clock["mark"]
        if step in wanted:
            snaps[step] = (clock["timed"], image.clamp(0, 1))
        clock["mark"] = time.perf_counter()

    clock["mark"] = time.perf_counter()
    result = optimize(x0, objective, steps=max(iterations), optimizer="lbfgs", lr=1.0, clamp="straight_through",
                      lbfgs={"history_size": history_size}, callback=callback)
    trace = [h["loss"] for h in result.history] + [result.final["loss"]]
    reach = next((k for k, v in enumerate(trace) if k > 0 and v <= target), None)
    return snaps, reach, trace


def scored_model(cfg, model_path, precision: str):
    """A trained network and the objective it was trained on, ready to score images with:
    (stylizer, loss config, perceptual_loss weights, loss network, Gram targets, where they came from)."""
    from stylenet.inference import Stylizer
    from stylenet.losses import perceptual_weights
    from stylenet.lossnet import LossNetwork
    from stylenet.optimize import OptimizeError
    from stylenet.upsample import options

    stylizer = Stylizer.load(model_path, device=cfg["device"], precision=precision,
                             scale=float(cfg.get("scale", 1.0)), upsample=options(cfg.get("upsample")))
    loss = json.loads(stylizer.metadata.get("loss") or "{}")
    if not loss:
        raise OptimizeError(f"{model_path} records no loss config; cannot score its results")
    if cfg["loss_weights"]:
        loss["weights"] = cfg["loss_weights"]
    index = None
    if stylizer.net.num_styles > 1:  # one of its styles, scored as that preset's single-style run would be
        if cfg.get("style") not in stylizer.styles:
            raise OptimizeError(f"{model_path} holds the styles {', '.join(stylizer.styles)}: pass style=NAME to score one of them")
        index = stylizer.styles.index(cfg["style"])
        loss["style_scale"] = preset_weight(cfg["style"])
        stylizer = OneStyle(stylizer, cfg["style"])
    weights = perceptual_weights(loss)
    lossnet = LossNetwork(loss["network"], [weights["content_layer"], *weights["style_layers"]], loss.get("weights")).to(stylizer.device)
    targets, source = _style_targets(cfg, model_path, stylizer.metadata, lossnet, list(weights["style_layers"]), index,
                                     len(stylizer.styles))
    return stylizer, loss, weights, lossnet, {k: v.to(stylizer.device) for k, v in targets.items()}, source


def preset_weight(name: str) -> float:
    """A preset's style weight (`losses.style_scale` of `style=<name>`, composed by Hydra): a
    multi-style file scales each image's style term by its own preset's weight, so one style
    is scored with that weight; 1 for a name that is no preset."""
    from stylenet.losses import style_scale
    from stylenet.styles import preset_names

    from . import training_group

    return style_scale(training_group("style", name)) if name in preset_names() else 1.0


class OneStyle:
    """A multi-style Stylizer seen as one of its styles: what the objective of that style scores."""

    def __init__(self, stylizer, style: str):
        self._stylizer, self.style = stylizer, style

    def __getattr__(self, name):
        return getattr(self._stylizer, name)

    @property
    def name(self) -> str:
        return self.style

    def stylize_tensor(self, x, **kwargs):
        return self._stylizer.stylize_tensor(x, style=self.style, **kwargs)


def run(cfg) -> list[dict]:
    """The benchmark; returns the table rows (also printed) and writes cfg['output']."""
    from stylenet.imageio import load_tensor, save_image
    from stylenet.presets import resolve_model
    from stylenet.optimize import OptimizeError, initial_image
    from stylenet.preimage import contact_sheet, resize, style_transfer

    if cfg["threads"]:
        torch.set_num_threads(int(cfg["threads"]))
    sizes, iterations = [int(s) for s in as_list(cfg["sizes"])], sorted(int(n) for n in as_list(cfg["iterations"]))
    if not sizes or not iterations or min(iterations) < 1:
        raise OptimizeError("sizes and iterations must be non-empty lists of positive numbers")
    model_path = resolve_model(str(cfg["model"]))
    stylizer, loss, weights, lossnet, targets, source = scored_model(cfg, model_path, cfg["precision"])
    device = stylizer.device
    print(f"model {model_path} ({stylizer.name}); objective: {loss['network']} content {weights['content_layer']}×{weights['content_weight']:g}, "
          f"style {'+'.join(weights['style_layers'])}×{weights['style_weight']:g}, tv×{weights['tv_weight']:g}; {source}; "
          f"Gatys: L-BFGS from {cfg['init']}; device {device}, {torch.get_num_threads()} threads")

    rows, tiles, labels = [], [], []
    show = min(256, min(sizes))
    for path in _content_paths(cfg["content"])[: int(cfg["max_images"])]:
        photo = load_tensor(path)
        for size in sizes:
            x = square(photo, size).to(device)
            objective = style_transfer(lossnet, x, targets, weights)
            y, net_s = _network_seconds(stylizer, x, int(cfg["repeats"]))
            with torch.no_grad():
                net_terms = {k: float(v) for k, v in objective(y).items()}
            gen = torch.Generator().manual_seed(int(cfg["seed"]))
            x0 = initial_image(cfg["init"], (size, size), x, gen).to(device)
            snaps, reach, trace = gatys_run(objective, x0, iterations, int(cfg["lbfgs_history"]), net_terms["loss"])
            base = {"image": path.name, "size": size}
            rows.append({**base, "method": "network", "iters": "-", "seconds": net_s, "speedup": 1.0, **net_terms})
            tiles += [resize(x.cpu(), (show, show)), resize(y.cpu(), (show, show))]
            labels += [f"{path.stem} {size}px", f"network {net_terms['loss']:.4g}"]
            for n in iterations:
                seconds, image = snaps[n]
                with torch.no_grad():
                    terms = {k: float(v) for k, v in objective(image).items()}
                rows.append({**base, "method": "gatys", "iters": n, "seconds": seconds, "speedup": seconds / net_s, **terms})
                tiles.append(resize(image.cpu(), (show, show)))
                labels.append(f"gatys {n} it {terms['loss']:.4g}")
            reach_text = f"reaches it after {reach} iterations" if reach is not None else f"does not reach it within {max(iterations)} iterations"
            marks = sorted({k for k in (0, 10, 50, 100) if k < len(trace)} | {len(trace) - 1})
            print(f"{path.name} {size}²: network objective {net_terms['loss']:.4g}; Gatys {reach_text} "
                  f"(Gatys objective after {'/'.join(map(str, marks))} iterations: {'/'.join(f'{trace[k]:.4g}' for k in marks)})",
                  flush=True)
    print(format_table(rows))
    out = save_image(contact_sheet(tiles, labels, nrow=2 + len(iterations)), cfg["output"])
    print(f"side by side: {out}")
    return rows


def format_table(rows: list[dict]) -> str:
    head = f"{'image':<16} {'size':>5} {'method':<8} {'iters':>5} {'seconds':>9} {'speedup':>9} {'content':>10} {'style':>10} {'tv':>9} {'objective':>10}"
    lines = [head, "-" * len(head)]
    for r in rows:
        lines.append(f"{r['image'][:16]:<16} {r['size']:>5} {r['method']:<8} {r['iters']!s:>5} {r['seconds']:>9.3f} "
                     f"{r['speedup']:>9.1f} {r['content']:>10.4g} {r['style']:>10.4g} {r['tv']:>9.3g} {r['loss']:>10.4g}")
    return "\n".join(lines)
