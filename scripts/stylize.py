#!/usr/bin/env python
"""Stylize a picture, a folder or a video: `python scripts/stylize.py model=PATH|PRESET input=PATH output=PATH`.

model:  an export (checkpoints/<style>/<style>.safetensors), a Lightning .ckpt, or a preset
        name whose export exists under checkpoints/ (model=hokusai).
input:  an image file → output image file (.png/.jpg, or .npy for the exact float32 RGB result);
        a folder → output folder (same relative paths); a video → output video (.mp4/.avi;
        same frame rate and size, audio dropped).
"""

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from stylenet.cli import UsageError, parse_overrides  # noqa: E402

DEFAULTS = {
    "model": None, "input": None, "output": None,
    "strength": 1.0,          # 0 = the photo, 1 = fully stylized
    "preserve_color": False,  # luminance-only transfer: keep the photo's colours
    "device": "auto", "precision": "auto", "compile": False,
    "tile": "auto",           # auto (above max_pixels) | true | false | tile size in px
    "tile_size": 1024, "max_pixels": 4_000_000, "batch_size": 4,
    "progress": True,
}
USAGE = __doc__


def stylize_image(stylizer, src: Path, dst: Path, options: dict) -> Path:
    import numpy as np

    from stylenet.imageio import load_image, pil_to_tensor, save_image

    if dst.is_dir() or str(dst).endswith(("/", "\\")):
        dst = dst / f"{src.stem}_{stylizer.name}.png"
    y = stylizer.stylize_tensor(pil_to_tensor(load_image(src)), **options)
    if dst.suffix.lower() == ".npy":
        dst.parent.mkdir(parents=True, exist_ok=True)
        np.save(dst, y.permute(1, 2, 0).float().numpy())
        return dst
    return save_image(y, dst)


def stylize_folder(stylizer, src: Path, dst: Path, options: dict, progress: bool) -> tuple[int, list[str]]:
    from PIL import Image
    from tqdm.auto import tqdm

    from stylenet.imageio import IMAGE_EXTENSIONS, ImageError

    files = sorted(p for p in src.rglob("*") if p.suffix.lower() in IMAGE_EXTENSIONS and p.is_file())
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


def main(argv: list[str]) -> int:
    try:
        cfg = parse_overrides(argv, DEFAULTS, required=("model", "input", "output"), usage=USAGE)
    except UsageError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    from stylenet.imageio import ImageError
    from stylenet.inference import ModelLoadError, Stylizer
    from stylenet.video import AUDIO_NOTE, VideoError, is_video_path, stylize_video

    src, dst = Path(str(cfg["input"])), Path(str(cfg["output"]))
    options = {"strength": float(cfg["strength"]), "preserve_color": bool(cfg["preserve_color"]), "tile": cfg["tile"]}
    try:
        if not src.exists():
            raise ValueError(f"input not found: {src}")
        stylizer = Stylizer.load(str(cfg["model"]), device=cfg["device"], precision=cfg["precision"],
                                 compile=bool(cfg["compile"]), batch_size=int(cfg["batch_size"]),
                                 tile_size=int(cfg["tile_size"]), max_pixels=int(cfg["max_pixels"]))
        if src.is_dir():
            done, failed = stylize_folder(stylizer, src, dst, options, bool(cfg["progress"]))
            for message in failed:
                print(f"skipped: {message}", file=sys.stderr)
            print(f"wrote {done} images to {dst}")
            return 1 if failed else 0
        if is_video_path(src):
            stats = stylize_video(stylizer, src, dst, batch_size=int(cfg["batch_size"]),
                                  progress=bool(cfg["progress"]), **options)
            print(AUDIO_NOTE, file=sys.stderr)
            print(f"wrote {dst}: {stats.frames} frames, {stats.size[0]}x{stats.size[1]} at {stats.fps:g} fps "
                  f"({stats.frames / max(stats.seconds, 1e-9):.1f} frames/s)")
            return 0
        print(f"wrote {stylize_image(stylizer, src, dst, options)}")
        return 0
    except (ModelLoadError, ImageError, VideoError, ValueError, OSError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
