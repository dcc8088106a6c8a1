"""`python scripts/stylize.py model=... input=... output=...` / `stylenet-stylize`: a picture, a
folder or a video through a trained style (configs/tools/stylize.yaml, docs/inference.md)."""

from __future__ import annotations

import sys
from pathlib import Path

from . import app


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
        dst = dst / f"{src.stem}_{stylizer.label(options.get('style'))}.png"
    if dst.suffix.lower() == ".npy":
        y = stylizer.stylize_tensor(pil_to_tensor(load_image(src)), **options).permute(1, 2, 0).float().numpy()
        return atomic_write(dst, lambda tmp: np.save(tmp, y))
    image_format(dst)
    image = Image.fromarray(stylizer.stylize(np.array(load_image(src)), **options), "RGB")
    return save_image(image, dst)


def stylize_folder(stylizer, src: Path, dst: Path, options: dict, progress: bool, video: dict) -> tuple[int, list[str]]:
    """Every image and video under `src` → the same relative path under `dst`; unreadable ones
    are listed, not fatal. `video`: keyword arguments of `stylize_one_video`."""
    from PIL import Image
    from tqdm.auto import tqdm

    from ..imageio import IMAGE_EXTENSIONS, ImageError, find_images
    from ..video import VIDEO_EXTENSIONS, VideoError, is_video_path

    images = find_images(src)
    videos = sorted(p for p in src.rglob("*") if p.is_file() and is_video_path(p))
    if not images and not videos:
        raise ValueError(f"no images ({', '.join(IMAGE_EXTENSIONS)}) or videos ({', '.join(VIDEO_EXTENSIONS)}) in {src}")
    writable = Image.registered_extensions()
    failed = []
    for path in tqdm(images, unit="image", disable=not progress, dynamic_ncols=True):
        out = dst / path.relative_to(src)
        if out.suffix.lower() not in writable or out.suffix.lower() == ".gif":
            # x.gif → x.png; x.gif.png where x.png is in the folder too (one would overwrite the other)
            out = out.with_name(out.name + ".png") if path.with_suffix(".png").exists() else out.with_suffix(".png")
        try:
            stylize_image(stylizer, path, out, options)
        except ImageError as exc:
            failed.append(str(exc))
    for path in videos:
        try:
            stylize_one_video(stylizer, path, video_output(dst / path.relative_to(src)), options, progress=progress, **video)
        except VideoError as exc:
            failed.append(str(exc))
    return len(images) + len(videos) - len(failed), failed


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
    from ..inference import Stylizer
    from ..video import is_video_path

    src, dst = Path(str(cfg.input)), Path(str(cfg.output))
    if str(cfg.output).endswith(("/", "\\")):  # a folder to write into (Path drops the trailing slash)
        dst.mkdir(parents=True, exist_ok=True)
    options = {"strength": app.number(cfg, "strength"), "preserve_color": bool(cfg.preserve_color), "tile": cfg.tile,
               "style": style_option(cfg.style)}
    if not src.exists():
        raise ValueError(f"input not found: {src}")
    sizes = {key: app.number(cfg, key, int) for key in ("batch_size", "tile_size", "max_pixels")}
    stylizer = Stylizer.load(str(cfg.model), device=cfg.device, precision=cfg.precision, compile=bool(cfg.compile), **sizes,
                              **app.render_options(cfg))
    stylizer.style_weights(options["style"])  # an unknown style name: the error before any file is read
    video = {"batch_size": sizes["batch_size"], "stabilize": dict(cfg.stabilizer) if cfg.stabilize else None,
             "keep_host_memory": bool(cfg.get("keep_host_memory", True))}
    if src.is_dir():
        done, failed = stylize_folder(stylizer, src, dst, options, bool(cfg.progress), video)
        for message in failed:
            print(f"skipped: {message}", file=sys.stderr)
        print(f"wrote {done} files to {dst}")
        return 1 if failed else 0
    if is_video_path(src):
        stylize_one_video(stylizer, src, dst, options, progress=bool(cfg.progress), **video)
        return 0
    print(f"wrote {stylize_image(stylizer, src, dst, options)}")
    return 0


def main(argv: list[str] | None = None) -> int:
    return app.run("stylize", stylize, argv, config_dir=app.TOOLS_DIR, errors=(ValueError, OSError))


if __name__ == "__main__":
    sys.exit(main())
