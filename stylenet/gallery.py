"""A gallery: style paintings across the top, photos down the side, every cell stylized.

The picture a user looks at first (docs/gallery.jpg): one image, one style per column (a
multi-style file gives a column per style, and blends of its styles columns of their own).
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw, ImageOps

from .imageio import atomic_write, load_image, tensor_to_pil, pil_to_tensor

BACKGROUND = (255, 255, 255)


def square_thumbnail(image: Image.Image, size: int) -> Image.Image:
    """Centre crop to a square and resize: every cell of the grid has the same shape."""
    return ImageOps.fit(image.convert("RGB"), (size, size), Image.Resampling.LANCZOS)


def compose(paintings: Sequence[Image.Image], photos: Sequence[Image.Image], cells: Sequence[Sequence[Image.Image]],
            labels: Sequence[str], cell: int = 256, gap: int = 4, label_height: int = 18) -> Image.Image:
    """The grid: row 0 = paintings (with `labels`), column 0 = photos, cells[i][j] = photo i in
    style j (cell × cell images, as `stylize_cells` returns them)."""
    cols, rows = len(paintings) + 1, len(photos) + 1
    step = cell + gap
    sheet = Image.new("RGB", (cols * step + gap, rows * step + gap + label_height), BACKGROUND)
    draw = ImageDraw.Draw(sheet)
    for j, (painting, label) in enumerate(zip(paintings, labels, strict=True), start=1):
        sheet.paste(square_thumbnail(painting, cell), (gap + j * step, gap))
        draw.text((gap + j * step + 2, gap + cell + 3), label, fill=(0, 0, 0))
    for i, photo in enumerate(photos, start=1):
        top = gap + i * step + label_height
        sheet.paste(square_thumbnail(photo, cell), (gap, top))
        for j, picture in enumerate(cells[i - 1], start=1):
            sheet.paste(picture, (gap + j * step, top))  # stylize_cells made it cell × cell already
    return sheet


def stylize_cells(stylizers, photos: Sequence[Image.Image], cell: int, styles: Sequence | None = None) -> list[list[Image.Image]]:
    """Each photo (square-cropped to the cell size first, as it is shown) through each network;
    `styles[j]`: the `style=` of column j (a multi-style network's style or blend; None: default)."""
    squares = [square_thumbnail(p, cell) for p in photos]
    styles = list(styles) if styles is not None else [None] * len(stylizers)
    return [[tensor_to_pil(s.stylize_tensor(pil_to_tensor(sq), **({"style": st} if st is not None else {})))
             for s, st in zip(stylizers, styles, strict=True)] for sq in squares]


def mix_paintings(paintings: Sequence[Image.Image], weights: Sequence[float], cell: int) -> Image.Image:
    """The header of a blend's column: the paintings' square thumbnails averaged with the blend's weights."""
    stack = np.stack([np.asarray(square_thumbnail(p, cell), dtype=np.float64) for p in paintings])
    mixed = np.tensordot(np.asarray(weights, dtype=np.float64) / sum(weights), stack, axes=1)
    return Image.fromarray(mixed.round().clip(0, 255).astype(np.uint8), "RGB")


def save_jpeg(image: Image.Image, path: str | Path, max_bytes: int | None = None, quality: int = 92) -> Path:
    """Write a JPEG atomically, lowering the quality until it fits `max_bytes` (if given)."""
    import io

    while True:
        buffer = io.BytesIO()
        image.save(buffer, format="JPEG", quality=quality, optimize=True, progressive=True)
        if max_bytes is None or buffer.tell() <= max_bytes or quality <= 40:
            break
        quality -= 4
    data = buffer.getvalue()
    return atomic_write(path, lambda tmp: Path(tmp).write_bytes(data))


def load_photos(paths: Sequence[str | Path]) -> list[Image.Image]:
    return [load_image(p) for p in paths]
