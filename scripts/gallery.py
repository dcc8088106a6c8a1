#!/usr/bin/env python
"""A gallery of trained styles: `python scripts/gallery.py models=[hokusai,...] content=[a.jpg,...] output=docs/gallery.jpg`.

Paintings across the top, photos down the side, each cell the photo through that style's
network (configs/gallery.yaml holds every option).
"""

import sys

import hydra
from omegaconf import DictConfig


@hydra.main(version_base="1.3", config_path="../configs", config_name="gallery")
def main(cfg: DictConfig) -> None:
    from stylenet import gallery
    from stylenet.imageio import ImageError, load_image
    from stylenet.inference import ModelLoadError, Stylizer
    from stylenet.styles import StyleError, style_image_path

    try:
        stylizers = [Stylizer.load(m, device=cfg.device) for m in cfg.models]
        styles = list(cfg.styles) if cfg.styles else [s.name for s in stylizers]
        if len(styles) != len(stylizers):
            raise ValueError(f"styles= names {len(styles)} paintings for {len(stylizers)} models")
        paintings = [load_image(style_image_path(s)) for s in styles]
        photos = gallery.load_photos(cfg.content)
        cells = gallery.stylize_cells(stylizers, photos, int(cfg.cell))
        sheet = gallery.compose(paintings, photos, cells, labels=[s.name for s in stylizers], cell=int(cfg.cell))
        out = gallery.save_jpeg(sheet, cfg.output, max_bytes=int(cfg.max_kb) * 1024 or None)
    except (ModelLoadError, ImageError, StyleError, ValueError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        sys.exit(2)
    print(f"gallery: {out} ({out.stat().st_size // 1024} KB, {len(photos)} photos × {len(stylizers)} styles)")


if __name__ == "__main__":
    main()
