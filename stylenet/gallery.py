"""A gallery: style paintings across the top, photos down the side, every cell stylized.

The picture a user looks at first (docs/gallery.jpg): one image, one network per column.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

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


def stylize_cells(stylizers, photos: Sequence[Image.Image], cell: int) -> list[list[Image.Image]]:
    """Each photo (square-cropped to the cell size first, as it is shown) through each network."""
    squares = [square_thumbnail(p, cell) for p in photos]
    return [[tensor_to_pil(s.stylize_tensor(pil_to_tensor(sq))) for s in stylizers] for sq in squares]


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
