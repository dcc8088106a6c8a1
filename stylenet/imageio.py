"""Load, convert and save images: every odd input becomes RGB, every failure a clear error."""

from __future__ import annotations

import os
import tempfile
from collections.abc import Callable
from pathlib import Path

import numpy as np
import torch
from PIL import Image, ImageOps, UnidentifiedImageError

from .errors import UserError

IMAGE_EXTENSIONS = (".jpg", ".jpeg", ".png", ".bmp", ".gif", ".tif", ".tiff", ".webp", ".ppm", ".pgm")


class ImageError(UserError, ValueError):
    """An image file is missing, unreadable or not an image."""


def find_images(root: str | os.PathLike) -> list[Path]:
    """Every image file under the folder `root`, recursively, sorted (training data, a folder to
    stylize, benchmark photos); empty if there are none or `root` is not a folder."""
    root = Path(root).expanduser()
    return sorted(p for p in root.rglob("*") if p.suffix.lower() in IMAGE_EXTENSIONS and p.is_file())


def to_rgb(image: Image.Image) -> Image.Image:
    """Apply EXIF orientation, then convert grayscale/CMYK/palette/alpha modes to RGB.

    Transparent pixels are composited on white: what a viewer shows for them.
    """
    image = ImageOps.exif_transpose(image)
    if image.mode == "RGB":
        return image
    if image.mode in ("RGBA", "LA", "PA") or (image.mode == "P" and "transparency" in image.info):
        rgba = image.convert("RGBA")
        background = Image.new("RGBA", rgba.size, (255, 255, 255, 255))
        return Image.alpha_composite(background, rgba).convert("RGB")
    if image.mode in ("I;16", "I;16B", "I;16L", "I"):
        arr = np.asarray(image, dtype=np.float64)
        arr = (arr / max(arr.max(), 1.0) * 255.0).astype(np.uint8)
        return Image.fromarray(arr, "L").convert("RGB")
    return image.convert("RGB")


def load_image(path: str | os.PathLike) -> Image.Image:
    """Read an image file fully (decoding errors surface here, not later) as RGB."""
    path = Path(path)
    if not path.exists():
        raise ImageError(f"image not found: {path}")
    if path.is_dir():
        raise ImageError(f"expected an image file, got a folder: {path}")
    try:
        with Image.open(path) as image:
            image.load()
            return to_rgb(image)
    except (UnidentifiedImageError, OSError, SyntaxError, ValueError) as exc:
        raise ImageError(f"cannot read image {path}: {exc}") from None


def pil_to_tensor(image: Image.Image) -> torch.Tensor:
    """PIL RGB → float tensor (3,H,W) in [0,1]."""
    arr = np.asarray(to_rgb(image), dtype=np.uint8)
    return torch.from_numpy(arr.copy()).permute(2, 0, 1).float().div_(255.0)


def tensor_to_pil(tensor: torch.Tensor) -> Image.Image:
    """Float tensor (3,H,W) or (1,3,H,W) in [0,1] → PIL RGB (values clamped)."""
    if tensor.dim() == 4:
        if tensor.shape[0] != 1:
            raise ValueError(f"expected one image, got a batch of {tensor.shape[0]}")
        tensor = tensor[0]
    arr = tensor.detach().float().clamp(0, 1).mul(255).round().byte().permute(1, 2, 0).cpu().numpy()
    return Image.fromarray(arr, "RGB")


def load_tensor(path: str | os.PathLike, size: int | None = None) -> torch.Tensor:
    """Load an image as (1,3,H,W) in [0,1], optionally resized so its short side is `size`."""
    image = load_image(path)
    if size:
        image = resize_short_side(image, size)
    return pil_to_tensor(image).unsqueeze(0)


def resize_short_side(image: Image.Image, size: int) -> Image.Image:
    w, h = image.size
    scale = size / min(w, h)
    return image.resize((max(1, round(w * scale)), max(1, round(h * scale))), Image.BICUBIC)


def current_umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


class AtomicFile:
    """A temp file beside `out` that becomes `out` on `commit()` (one rename) or vanishes on `discard()`.

    Readers never see half a file and a crash leaves the old file intact; the result gets
    the permissions a plain `open` would have given it (mkstemp's 0600 is for the temp file).
    The temp name keeps `out`'s suffix, for writers that pick a format from it (OpenCV).
    """

    def __init__(self, out: str | os.PathLike):
        self.out = Path(out)
        self.out.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=self.out.parent, prefix=f".{self.out.name}.", suffix=self.out.suffix or ".tmp")
        os.close(fd)
        self.tmp = Path(tmp)

    def commit(self) -> Path:
        os.chmod(self.tmp, 0o666 & ~current_umask())
        os.replace(self.tmp, self.out)
        return self.out

    def discard(self) -> None:
        self.tmp.unlink(missing_ok=True)

    def __enter__(self) -> AtomicFile:
        return self

    def __exit__(self, exc_type, *_) -> None:
        if exc_type is None:
            self.commit()
        else:
            self.discard()


def atomic_write(out: str | os.PathLike, write: Callable[[str], None]) -> Path:
    """Call `write(temp_path)` on an `AtomicFile` beside `out`, then rename it into place."""
    with AtomicFile(out) as f:
        write(str(f.tmp))
    return f.out


def save_image(image: Image.Image | torch.Tensor, path: str | os.PathLike) -> Path:
    """Write an image atomically: a crash never leaves half a PNG."""
    if isinstance(image, torch.Tensor):
        image = tensor_to_pil(image)
    path = Path(path)
    fmt = Image.registered_extensions().get(path.suffix.lower())
    if fmt is None:
        raise ImageError(f"unknown image format for {path}; use .png or .jpg")
    return atomic_write(path, lambda tmp: image.save(tmp, format=fmt))
