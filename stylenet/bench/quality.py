"""`python scripts/benchmark.py mode=quality model=EXPORT`: how good is a trained network,
in Gatys iterations (Johnson et al. 2016, Fig. 5).

For each photo not seen in training (default: ../shared/data/content), centre-cropped to
`size`², the network's objective is scored under the loss config recorded in the model
file (its own Gram targets for a .ckpt, the style image for an export). Then L-BFGS over
pixels, started from the photo itself, minimises the same objective; "matched
iterations" is the first iteration whose (clipped) image scores at or below the
network's. A network that returns its input matches at 0; Johnson's 40k-step networks
match at 50-100. The last line is the median over photos.

`gatys_init=noise` starts L-BFGS from white noise instead (seeded, one draw per photo), as
Johnson et al.'s baseline did: a far weaker start (its content term is large), so the
counts are higher and not comparable with the photo-started ones.

`model` may also be a folder of checkpoints (`checkpoints/hokusai`: every `step_*.ckpt`,
and `last.ckpt` unless it is the last of those again) or a list: then each is scored on the same photos and the run
ends with the quality-per-training-step curve, a table and, with `plot=PNG`, a chart. Checkpoints
from several run folders (`model=[checkpoints/a,checkpoints/b]`) give one curve per run, so
two recipes can be compared on one chart.
"""

from __future__ import annotations

import statistics

import torch

from stylenet.errors import UserError

from .gatys import _content_paths, scored_model, square

#: where the Gatys baseline starts (`gatys_init`), as the header line names it
GATYS_INITS = {"photo": "the photo", "noise": "white noise"}


class _Reached(Exception):
    pass


def gatys_match(objective, x0: torch.Tensor, target: float, max_iterations: int, history_size: int = 100):
    """L-BFGS from x0 on `objective` until its (clipped) image scores ≤ target.

    Returns (k, image): k is the number of iterations that got there (0: x0 itself already
    does), None if `max_iterations` did not; image is that iterate, clipped.
    """
    from stylenet.optimize import optimize

    with torch.no_grad():
        if float(objective(x0.clamp(0, 1))["loss"]) <= target:
            return 0, x0.clamp(0, 1)
    found = {"k": None, "image": x0, "previous": x0}

    def callback(step, image, values):
        # `values` are the objective of the iterate before this step's update: after step - 1 iterations
        if values["loss"] <= target:
            found["k"], found["image"] = step - 1, found["previous"]
            raise _Reached
        found["previous"] = image.clone()

    try:
        result = optimize(x0, objective, steps=max_iterations, optimizer="lbfgs", lr=1.0, clamp="straight_through",
                          lbfgs={"history_size": history_size}, callback=callback)
    except _Reached:
        return found["k"], found["image"].clamp(0, 1)
    return (max_iterations if result.final["loss"] <= target else None), result.image


def run(cfg) -> list[dict]:
    """The benchmark: one model's rows per photo, or for several models the curve rows."""
    models = model_paths(cfg["model"])
    if len(models) == 1:
        return score(cfg, models[0])
    curve, runs = [], list(dict.fromkeys(path.parent.name for path in models))
    for path in models:
        rows = score(cfg, path)
        curve.append({"run": path.parent.name, "model": path.name, "steps": rows[0]["steps"] if rows else 0,
                      "median": median_matched(rows, int(cfg["max_iterations"])),
                      "objective": statistics.median(r["loss"] for r in rows) if rows else float("nan")})
        print()
    curve.sort(key=lambda r: (runs.index(r["run"]), r["steps"]))
    print(format_curve(curve))
    if cfg.get("plot"):
        print(f"curve: {plot_curve(curve, cfg['plot'], int(cfg['max_iterations']), str(cfg.get('gatys_init', 'photo')))}")
    return curve


def model_paths(spec) -> list:
    """A model file or preset name, a list of them, or a folder of checkpoints (step order)."""
    from pathlib import Path

    from stylenet.modelfile import ModelLoadError
    from stylenet.presets import resolve_model

    specs = [spec] if isinstance(spec, (str, Path)) else list(spec)
    paths = []
    for item in specs:
        folder = Path(str(item))
        if folder.is_dir():
            found = sorted(folder.glob("step_*.ckpt")) + sorted(folder.glob("last.ckpt"))
            if len(found) > 1 and found[-1].name == "last.ckpt" and _same_step(found[-2], found[-1]):
                found.pop()  # last.ckpt is the final step_*.ckpt again: one point, not two
            if not found:
                raise ModelLoadError(f"no step_*.ckpt or last.ckpt in {folder}")
            paths += found
        else:
            paths.append(resolve_model(str(item)))
    return paths


def _same_step(step_file, last) -> bool:
    """Whether last.ckpt was saved at the step in step_file's name (step_002000.ckpt → 2000)."""
    from stylenet.modelfile import ModelLoadError, load_checkpoint

    try:
        return int(step_file.stem.removeprefix("step_")) == int(load_checkpoint(last).get("global_step", -1))
    except (ValueError, TypeError, ModelLoadError):  # a bad last.ckpt stays, to be reported when scored
        return False


def score(cfg, model_path) -> list[dict]:
    """One model: one row per photo (also printed), then the median line."""
    from stylenet.imageio import load_tensor, save_image
    from stylenet.preimage import contact_sheet, style_transfer

    init = str(cfg.get("gatys_init", "photo"))
    if init not in GATYS_INITS:  # before the model and the loss network are loaded
        raise UserError(f"gatys_init={init!r}: use gatys_init=photo or gatys_init=noise")
    if cfg["threads"]:
        torch.set_num_threads(int(cfg["threads"]))
    stylizer, loss, weights, lossnet, targets, source = scored_model(cfg, model_path, "fp32")
    device = stylizer.device
    size, cap = int(cfg["size"]), int(cfg["max_iterations"])
    steps = stylizer.metadata.get("training_steps", "")
    print(f"model {model_path} ({stylizer.name}, {steps} training steps); objective {loss['network']} "
          f"(normalize={weights['normalize']}); {source}; {size}² photos{_scaled(stylizer)}; Gatys: L-BFGS from "
          f"{GATYS_INITS[init]}, at most {cap} iterations")
    generator = torch.Generator().manual_seed(int(cfg.get("seed", 0)))

    rows, tiles, labels = [], [], []
    for path in _content_paths(cfg["content"])[: int(cfg["max_images"])]:
        x = square(load_tensor(path), size).to(device)
        objective = style_transfer(lossnet, x, targets, weights)
        with torch.no_grad():
            y = stylizer.stylize_tensor(x).float().clamp(0, 1)
            terms = {k: float(v) for k, v in objective(y).items()}
            photo = float(objective(x)["loss"])
        x0 = x if init == "photo" else torch.rand(x.shape, generator=generator).to(device)
        matched, image = gatys_match(objective, x0, terms["loss"], cap, int(cfg["lbfgs_history"]))
        rows.append({"image": path.name, "steps": int(steps or 0), "photo": photo, **terms, "matched": matched})
        print(format_row(rows[-1], cap), flush=True)
        tiles += [x.cpu(), y.cpu(), image.detach().clamp(0, 1).cpu()]
        labels += [path.stem, f"network {terms['loss']:.4g}", f"gatys {_matched_text(matched, cap)} it"]
    print(format_table(rows, cap))
    if cfg["output"]:
        print(f"side by side: {save_image(contact_sheet(tiles, labels, nrow=3), cfg['output'])}")
    print(f"median Gatys iterations matched: {median_matched(rows, cap)}")
    return rows


def _scaled(stylizer) -> str:
    scale = stylizer.scale
    return "" if scale == 1 else f" (network at {scale:g}x, {stylizer.upsample['mode']} upsampling)"


def format_curve(curve: list[dict]) -> str:
    several = len({r["run"] for r in curve}) > 1
    run = (lambda r: f"{r['run'][:24]:<24} ") if several else (lambda r: "")
    head = f"{'run':<24} " * several + f"{'model':<22} {'steps':>7} {'median objective':>17} {'median matched':>15}"
    lines = [head, "-" * len(head)]
    lines += [f"{run(r)}{r['model'][:22]:<22} {r['steps']:>7} {r['objective']:>17.4g} {r['median']:>15}" for r in curve]
    return "\n".join(lines)


def plot_curve(curve: list[dict], path, cap: int, init: str = "photo"):
    """Median matched Gatys iterations against training steps, as a PNG (matplotlib); the axis
    names where the Gatys baseline started (`gatys_init`)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from stylenet.imageio import atomic_write

    fig, ax = plt.subplots(figsize=(6, 3.6), dpi=100)
    runs = list(dict.fromkeys(r["run"] for r in curve))
    for run in runs:  # one line per run folder
        points = [r for r in curve if r["run"] == run]
        steps = [r["steps"] for r in points]
        matched = [cap + 1 if r["median"].startswith(">") else float(r["median"]) for r in points]
        ax.plot(steps, matched, marker="o", label=run)
        for x, y, r in zip(steps, matched, points):
            ax.annotate(r["median"], (x, y), textcoords="offset points", xytext=(0, 6), ha="center", fontsize=8)
    if len(runs) > 1:
        ax.legend(fontsize=8)
    ax.set_xlabel("training steps")
    ax.set_ylabel(f"median Gatys iterations matched\n(L-BFGS from {GATYS_INITS.get(init, init)})", fontsize=9)
    ax.grid(alpha=0.3)
    fig.tight_layout()
    out = atomic_write(path, lambda tmp: fig.savefig(tmp, format="png"))
    plt.close(fig)
    return out


def _matched_text(matched: int | None, cap: int) -> str:
    return f">{cap}" if matched is None else str(matched)


def median_matched(rows: list[dict], cap: int) -> str:
    """Median over photos; a photo not matched within the cap counts as cap + 1 (shown as >cap)."""
    values = [cap + 1 if r["matched"] is None else r["matched"] for r in rows]
    median = statistics.median(values) if values else 0
    return f">{cap}" if median > cap else f"{median:g}"


def format_row(r: dict, cap: int) -> str:
    return (f"{r['image'][:22]:<22} {r['photo']:>10.4g} {r['content']:>10.4g} {r['style']:>10.4g} {r['tv']:>9.3g} "
            f"{r['loss']:>10.4g} {_matched_text(r['matched'], cap):>8}")


def format_table(rows: list[dict], cap: int) -> str:
    head = f"{'photo':<22} {'photo obj':>10} {'content':>10} {'style':>10} {'tv':>9} {'objective':>10} {'matched':>8}"
    return "\n".join([head, "-" * len(head), *(format_row(r, cap) for r in rows)])
