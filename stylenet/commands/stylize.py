"""`python scripts/stylize.py model=... input=... output=...` / `stylenet-stylize`: a picture, a
folder or a video through a trained style (configs/tools/stylize.yaml, docs/inference.md)."""

from __future__ import annotations

import sys
from pathlib import Path

from . import app


def stylize_image(stylizer, src: Path, dst: Path, options: dict) -> Path:
    """One image file → `dst` (a folder gets `<name>_<style>.png`; `.npy` keeps the exact float32 RGB)."""
    import numpy as np

    from ..imageio import load_image, pil_to_tensor, save_image

    if dst.is_dir() or str(dst).endswith(("/", "\\")):
        dst = dst / f"{src.stem}_{stylizer.name}.png"
    y = stylizer.stylize_tensor(pil_to_tensor(load_image(src)), **options)
    if dst.suffix.lower() == ".npy":
        dst.parent.mkdir(parents=True, exist_ok=True)
        np.save(dst, y.permute(1, 2, 0).float().numpy())
        return dst
    return save_image(y, dst)


def stylize_folder(stylizer, src: Path, dst: Path, options: dict, progress: bool) -> tuple[int, list[str]]:
    """Every image under `src` → the same relative path under `dst`; unreadable ones are listed, not fatal."""
    from PIL import Image
    from tqdm.auto import tqdm

    from ..imageio import IMAGE_EXTENSIONS, ImageError, find_images

    files = find_images(src)
    if not files:
        raise ValueError(f"no images ({', '.join(IMAGE_EXTENSIONS)}) in {src}")
    writable = Image.registered_extensions()
    failed = []
    for path in tqdm(files, unit="image", disable=not progress, dynamic_ncols=True):
        out = dst / path.relative_to(src)
        if out.suffix.lower() not in writable or out.suffix.lower() == ".gif":
            out = out.with_suffix(".png")
        try:
            stylize_image(stylizer, path, out, options)
        except ImageError as exc:
            failed.append(str(exc))
    return len(files) - len(failed), failed


def stylize(cfg) -> int:
    from ..inference import Stylizer
    from ..video import AUDIO_NOTE, is_video_path, stylize_video

    src, dst = Path(str(cfg.input)), Path(str(cfg.output))
    options = {"strength": float(cfg.strength), "preserve_color": bool(cfg.preserve_color), "tile": cfg.tile}
    if not src.exists():
        raise ValueError(f"input not found: {src}")
    stylizer = Stylizer.load(str(cfg.model), device=cfg.device, precision=cfg.precision, compile=bool(cfg.compile),
                             batch_size=int(cfg.batch_size), tile_size=int(cfg.tile_size), max_pixels=int(cfg.max_pixels))
    if src.is_dir():
        done, failed = stylize_folder(stylizer, src, dst, options, bool(cfg.progress))
        for message in failed:
            print(f"skipped: {message}", file=sys.stderr)
        print(f"wrote {done} images to {dst}")
        return 1 if failed else 0
    if is_video_path(src):
        stats = stylize_video(stylizer, src, dst, batch_size=int(cfg.batch_size), progress=bool(cfg.progress), **options)
        print(AUDIO_NOTE, file=sys.stderr)
        print(f"wrote {dst}: {stats.frames} frames, {stats.size[0]}x{stats.size[1]} at {stats.fps:g} fps "
              f"({stats.frames / max(stats.seconds, 1e-9):.1f} frames/s)")
        return 0
    print(f"wrote {stylize_image(stylizer, src, dst, options)}")
    return 0


def main(argv: list[str] | None = None) -> int:
    return app.run("stylize", stylize, argv, config_dir=app.TOOLS_DIR, errors=(ValueError, OSError))


if __name__ == "__main__":
    sys.exit(main())
