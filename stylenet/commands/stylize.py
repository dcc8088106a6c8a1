"""`python scripts/stylize.py model=... input=... output=...` / `stylenet-stylize`: a picture, a
folder or a video through a trained style (configs/tools/stylize.yaml, docs/inference.md).

Every output is planned before the model loads or anything is written (stylenet.outputs):
a folder run's whole mapping is checked for collisions, for outputs onto inputs and for
files already there (`overwrite=true` replaces those); empty paths and inputs that are not
regular files (a FIFO, a device) are errors (docs/reliability.md)."""

from __future__ import annotations

import os
import sys
from collections import Counter
from pathlib import Path

from . import app


def named_output(folder: Path, src: Path, label: str) -> Path:
    """Where `output=DIR/` puts one picture: DIR/<photo>_<style>.png. The style's name comes
    from the model file, so it is sanitised (`outputs.safe_name`): no `../`, no separator."""
    from ..outputs import fit_name, safe_name

    return folder / fit_name(f"{src.stem}_{safe_name(label)}", ".png")


def stylize_image(stylizer, src: Path, dst: Path, options: dict) -> Path:
    """One image file → `dst` (a folder gets `<name>_<style>.png`; `.npy` keeps the exact float32 RGB).

    Both are written atomically (a temp file renamed into place). Pictures go through
    `Stylizer.stylize` as uint8 arrays: a photo above max_pixels stays uint8 end to end, and
    neither the decoded input nor the result is held twice.
    """
    import numpy as np
    from PIL import Image

    from ..imageio import atomic_write, image_format, load_image, pil_to_tensor, save_image

    if dst.is_dir() or str(dst).endswith(("/", "\\")):
        dst = named_output(dst, src, stylizer.label(options.get("style")))
    if dst.suffix.lower() == ".npy":
        y = stylizer.stylize_tensor(pil_to_tensor(load_image(src)), **options).permute(1, 2, 0).float().numpy()
        return atomic_write(dst, lambda tmp: np.save(tmp, y))
    image_format(dst)
    image = Image.fromarray(stylizer.stylize(np.array(load_image(src)), **options), "RGB")
    return save_image(image, dst)


def folder_plan(src: Path, dst: Path, overwrite: bool = False) -> tuple[list[tuple[Path, Path]], list[str]]:
    """Every image and video under `src` → the same relative path under `dst`, checked as a whole
    before anything is written (`outputs.plan`: no two inputs onto one output, none onto an
    input, nothing outside `dst`, no existing file replaced unless `overwrite`). Entries that are
    not regular files (a FIFO, a socket, a broken link) come back as skip messages.

    A picture PIL cannot write, or a GIF, becomes .png; a video in a container PyAV cannot write
    (.mpg, .wmv, .flv) becomes .mp4; where that name is another input's output too (x.gif
    beside x.png, x.mpg beside x.mp4) it keeps its own suffix before the new one (x.gif.png).
    """
    from PIL import Image

    from ..imageio import IMAGE_EXTENSIONS
    from ..outputs import OutputError, nested, not_regular, plan
    from ..videofile import CONTAINERS, VIDEO_EXTENSIONS, is_video_path

    if dst.exists() and not dst.is_dir():
        raise OutputError(f"output={dst} is a file: a folder input=... needs an output folder")
    if nested(dst, src):
        raise OutputError(f"output={dst} is inside input={src} (or is it): the results would replace the photos or be "
                          "read as inputs by the next run; pick an output folder outside the input")
    writable = Image.registered_extensions()
    found, skipped = [], []
    for path in sorted(src.rglob("*")):
        suffix = path.suffix.lower()
        image = suffix in IMAGE_EXTENSIONS
        if not (image or is_video_path(path)) or path.is_dir():
            continue
        if kind := not_regular(path):
            skipped.append(f"{path} is {kind}, not a file")
            continue
        if not path.is_file():
            skipped.append(f"{path} is a broken link")
            continue
        keep = (suffix in writable and suffix != ".gif") if image else suffix in CONTAINERS
        found.append((path, path.relative_to(src), None if keep else ".png" if image else ".mp4"))
    if not found and not skipped:
        raise ValueError(f"no images ({', '.join(IMAGE_EXTENSIONS)}) or videos ({', '.join(VIDEO_EXTENSIONS)}) in {src}")
    natural = [rel if new is None else rel.with_suffix(new) for _, rel, new in found]
    claims = Counter(os.path.normcase(out) for out in natural)
    mapping = [(path, dst / (rel.with_name(rel.name + new) if new and claims[os.path.normcase(out)] > 1 else out))
               for (path, rel, new), out in zip(found, natural)]
    return plan(mapping, dst, overwrite=overwrite), skipped


def stylize_folder(stylizer, mapping: list[tuple[Path, Path]], options: dict, progress: bool, video: dict) -> tuple[int, list[str]]:
    """Every input → its planned output (`folder_plan`); unreadable ones are listed, not fatal.
    Returns how many files were written and why the others were not. `video`: keyword
    arguments of `stylize_one_video`."""
    from tqdm.auto import tqdm

    from ..imageio import ImageError
    from ..videofile import VideoError, is_video_path

    images = [(src, out) for src, out in mapping if not is_video_path(src)]
    videos = [(src, out) for src, out in mapping if is_video_path(src)]
    done, failed = 0, []
    for src, out in tqdm(images, unit="image", disable=not progress or not images, dynamic_ncols=True):
        try:
            stylize_image(stylizer, src, out, options)
            done += 1
        except ImageError as exc:
            failed.append(str(exc))
    for src, out in videos:
        try:
            stylize_one_video(stylizer, src, out, options, progress=progress, **video)
            done += 1
        except VideoError as exc:
            failed.append(str(exc))
    return done, failed


def video_output(path: Path) -> Path:
    """Where a video goes: the same name, as .mp4 where PyAV cannot write that container (.wmv, .flv, .mpg)."""
    from ..videofile import CONTAINERS

    return path if path.suffix.lower() in CONTAINERS else path.with_suffix(".mp4")


def stylize_one_video(stylizer, src: Path, dst: Path, options: dict, *, batch_size: int, progress: bool, stabilize,
                      keep_host_memory: bool = True) -> None:
    """One video file, with its audio; `stabilize`: a `temporal.Stabilizer` config, or None."""
    from ..temporal import Stabilizer
    from ..videofile import stylize_video

    stabilizer = Stabilizer.from_config(stabilize) if stabilize else None
    if keep_host_memory:
        from ..allocator import keep_freed_memory

        keep_freed_memory()  # every batch of frames allocates the same blocks: reuse them (docs/inference.md)
    stats = stylize_video(stylizer, src, dst, batch_size=batch_size, progress=progress, stabilizer=stabilizer, **options)
    print(f"wrote {stats.output}: {stats.frames} frames, {stats.size[0]}x{stats.size[1]} at {stats.fps:g} fps, {stats.codec}, "
          f"audio {stats.audio}{', stabilised' if stabilizer else ''} ({stats.frames / max(stats.seconds, 1e-9):.1f} frames/s)")


def style_option(value):
    """`style=`: null, a name, an index, or a blend `{hokusai:0.7,the_scream:0.3}` (a Hydra dict) → plain Python."""
    from omegaconf import OmegaConf

    return OmegaConf.to_container(value, resolve=True) if OmegaConf.is_config(value) else value


def stylize(cfg) -> int:
    from ..imageio import image_format
    from ..inference import Stylizer
    from ..outputs import output_file, plan, readable, require_path
    from ..videofile import is_video_path

    src, dst = readable(cfg.input, "input"), require_path(cfg.output, "output")
    overwrite = bool(cfg.get("overwrite", False))
    into_folder = str(cfg.output).endswith(("/", "\\")) or dst.is_dir()  # a folder to write into (Path drops the slash)
    options = {"strength": app.number(cfg, "strength"), "preserve_color": bool(cfg.preserve_color), "tile": cfg.tile,
               "style": style_option(cfg.style)}
    # the outputs are checked before the model loads: a collision or a bad name costs nothing
    mapping, skipped = folder_plan(src, dst, overwrite) if src.is_dir() else (None, [])
    if mapping is None and not into_folder:
        if not is_video_path(src) and dst.suffix.lower() != ".npy":
            image_format(dst)
        output_file(dst, sources=[src], replace_input=overwrite)
    sizes = {key: app.number(cfg, key, int) for key in ("batch_size", "tile_size", "max_pixels")}
    stylizer = Stylizer.load(str(cfg.model), variant=cfg.get("variant"), device=cfg.device, precision=cfg.precision,
                             compile=bool(cfg.compile), **sizes, **app.render_options(cfg))
    print(f"model: {stylizer.source}", flush=True)
    stylizer.style_weights(options["style"])  # an unknown style name: the error before any file is read
    video = {"batch_size": sizes["batch_size"], "stabilize": dict(cfg.stabilizer) if cfg.stabilize else None,
             "keep_host_memory": bool(cfg.get("keep_host_memory", True))}
    if mapping is not None:
        done, failed = stylize_folder(stylizer, mapping, options, bool(cfg.progress), video)
        for message in skipped + failed:
            print(f"skipped: {message}", file=sys.stderr)
        print(f"wrote {done} files to {dst}")
        return 1 if skipped or failed else 0
    if into_folder:  # the name is ours, from the model's style name: planned like a folder run's
        out = dst / video_output(Path(src.name)) if is_video_path(src) else named_output(dst, src, stylizer.label(options["style"]))
        ((_, dst),) = plan([(src, out)], dst, overwrite=overwrite)
    if is_video_path(src):
        stylize_one_video(stylizer, src, dst, options, progress=bool(cfg.progress), **video)
        return 0
    print(f"wrote {stylize_image(stylizer, src, dst, options)}")
    return 0


def main(argv: list[str] | None = None) -> int:
    return app.run("stylize", stylize, argv, config_dir=app.TOOLS_DIR, errors=(ValueError, OSError))


if __name__ == "__main__":
    sys.exit(main())
