"""`python scripts/gallery.py models=[hokusai,...] content=[a.jpg,...] output=docs/gallery.jpg` /
`stylenet-gallery`: paintings across the top, photos down the side, each cell the photo
through that style's network (configs/gallery.yaml)."""

from __future__ import annotations

import sys

from . import app


def gallery(cfg) -> None:
    from .. import gallery
    from ..imageio import load_image
    from ..inference import Stylizer
    from ..styles import style_image_path

    stylizers = [Stylizer.load(m, device=cfg.device) for m in cfg.models]
    styles = list(cfg.styles) if cfg.styles else [s.name for s in stylizers]
    if len(styles) != len(stylizers):
        raise ValueError(f"styles= names {len(styles)} paintings for {len(stylizers)} models")
    paintings = [load_image(style_image_path(s)) for s in styles]
    photos = gallery.load_photos(cfg.content)
    cells = gallery.stylize_cells(stylizers, photos, int(cfg.cell))
    sheet = gallery.compose(paintings, photos, cells, labels=[s.name for s in stylizers], cell=int(cfg.cell))
    out = gallery.save_jpeg(sheet, cfg.output, max_bytes=int(cfg.max_kb) * 1024 or None)
    print(f"gallery: {out} ({out.stat().st_size // 1024} KB, {len(photos)} photos × {len(stylizers)} styles)")


def main(argv: list[str] | None = None) -> int:
    return app.run("gallery", gallery, argv, errors=(ValueError,))


if __name__ == "__main__":
    sys.exit(main())
