"""`python scripts/gallery.py models=[hokusai,...] content=[a.jpg,...] output=docs/gallery.jpg` /
`stylenet-gallery`: paintings across the top, photos down the side, each cell the photo
through that style's network (configs/gallery.yaml); a multi-style file gives a column per
style, and `blends=[{a: 0.5, b: 0.5}]` adds columns of its blends."""

from __future__ import annotations

import sys

from . import app


def gallery(cfg) -> None:
    from omegaconf import OmegaConf

    from .. import gallery
    from ..imageio import load_image
    from ..inference import Stylizer
    from ..outputs import output_file, readable

    # the sheet never replaces one of its own photos; checked before any model loads
    output = output_file(cfg.output, sources=[readable(p, "content") for p in app.as_list(cfg.content)])
    stylizers = [Stylizer.load(m, device=cfg.device) for m in cfg.models]
    # one column per style: a multi-style file gives one for each of its styles
    columns = [(s, name if len(s.styles) > 1 else None, name) for s in stylizers for name in s.styles]
    styles = list(cfg.styles) if cfg.styles else [label for _, _, label in columns]
    if len(styles) != len(columns):
        raise ValueError(f"styles= names {len(styles)} paintings for {len(columns)} styles of the models")
    paintings = [load_image(app.style_image(s)) for s in styles]
    for blend in cfg.get("blends") or []:
        blend = OmegaConf.to_container(blend, resolve=True) if OmegaConf.is_config(blend) else blend
        if not isinstance(blend, dict) or not blend:
            raise ValueError(f"blends= takes style weights like {{hokusai: 0.5, the_scream: 0.5}}, got {blend!r}")
        owner = next((s for s in stylizers if len(s.styles) > 1 and set(map(str, blend)) <= set(s.styles)), None)
        if owner is None:
            raise ValueError(f"blend {blend}: no multi-style model among models= holds all of {', '.join(map(str, blend))}")
        weights = owner.style_weights(blend)
        shown = [(paintings[[c[0] is owner and c[2] == n for c in columns].index(True)], float(w))
                 for n, w in zip(owner.styles, weights) if w > 0]
        columns.append((owner, blend, owner.label(blend)))
        paintings.append(gallery.mix_paintings([p for p, _ in shown], [w for _, w in shown], int(cfg.cell)))
    photos = gallery.load_photos(cfg.content)
    cells = gallery.stylize_cells([c[0] for c in columns], photos, int(cfg.cell), styles=[c[1] for c in columns])
    sheet = gallery.compose(paintings, photos, cells, labels=[c[2] for c in columns], cell=int(cfg.cell))
    out = gallery.save_jpeg(sheet, output, max_bytes=int(cfg.max_kb) * 1024 or None)
    print(f"gallery: {out} ({out.stat().st_size // 1024} KB, {len(photos)} photos × {len(columns)} styles)")


def main(argv: list[str] | None = None) -> int:
    return app.run("gallery", gallery, argv, errors=(ValueError,))


if __name__ == "__main__":
    sys.exit(main())
