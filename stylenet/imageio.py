"""Load, convert and save images: every odd input becomes RGB, every failure a clear error."""

from __future__ import annotations

import os
import re
import tempfile
import warnings
from collections.abc import Callable
from contextlib import contextmanager
from pathlib import Path

import numpy as np
import torch
from PIL import Image, ImageOps

from .errors import UserError
from .outputs import not_regular

IMAGE_EXTENSIONS = (".jpg", ".jpeg", ".png", ".bmp", ".gif", ".tif", ".tiff", ".webp", ".ppm", ".pgm")
#: the most pixels an image file may declare: PIL's decompression-bomb limit (`Image.MAX_IMAGE_PIXELS`),
#: raised from its 89 MP so that a 12000x12000 photo (144 MP) loads; STYLENET_MAX_IMAGE_PIXELS overrides it
MAX_IMAGE_PIXELS = int(os.environ.get("STYLENET_MAX_IMAGE_PIXELS") or 200_000_000)


#: the EXIF tag saying how the camera was held
ORIENTATION = 0x0112


class ImageError(UserError, ValueError):
    """An image file is missing, unreadable or not an image."""


class WriteError(UserError, OSError):
    """An output file or folder cannot be written (read-only, a file in the way, disk full)."""


class ImageWarning(UserWarning):
    """A readable image with something odd about it (PIL's own warnings, reworded with the file's name)."""


@contextmanager
def open_image(source, name: str | os.PathLike | None = None):
    """`Image.open` with PIL's decompression-bomb check as an error at `MAX_IMAGE_PIXELS`.

    A file declaring 40000x40000 pixels costs a few KB on disk and 4.8 GB decoded: PIL checks
    the declared size when it opens the file; here both its warning (above the limit) and its
    error (above twice the limit) become an ImageError, so nothing is decoded. Every other
    failure to open or decode is an ImageError too, and PIL's warnings come back as one
    ImageWarning naming the file (not PIL's raw source line).
    """
    name = name if name is not None else source
    saved = Image.MAX_IMAGE_PIXELS
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        warnings.simplefilter("error", Image.DecompressionBombWarning)
        Image.MAX_IMAGE_PIXELS = MAX_IMAGE_PIXELS
        try:
            image = Image.open(source)
        except Exception as exc:  # noqa: BLE001 - a decoder on untrusted bytes fails in many classes
            raise _unreadable(name, exc) from None
        finally:
            Image.MAX_IMAGE_PIXELS = saved
        try:
            with image:
                yield image
        except ImageError:
            raise
        except Exception as exc:  # noqa: BLE001 - decoding errors surface while the caller reads pixels
            raise _unreadable(name, exc) from None
    for w in caught:
        warnings.warn(f"{name}: {w.message}", ImageWarning, stacklevel=3)


def _unreadable(name, exc: BaseException) -> ImageError:
    if isinstance(exc, (Image.DecompressionBombError, Image.DecompressionBombWarning)):
        return ImageError(f"{name} declares more than {MAX_IMAGE_PIXELS / 1e6:g} million pixels (a decompression "
                          "bomb, or a huge image); if it is genuine, allow it with STYLENET_MAX_IMAGE_PIXELS=N")
    return ImageError(f"cannot read image {name}: {_reason(exc)}")


def _reason(exc: BaseException) -> str:
    return str(exc).strip().splitlines()[0] if str(exc).strip() else exc.__class__.__name__


def find_images(root: str | os.PathLike) -> list[Path]:
    """Every image file under the folder `root`, recursively, sorted (training data, a folder to
    stylize, benchmark photos); empty if there are none or `root` is not a folder."""
    root = Path(root).expanduser()
    return sorted(p for p in root.rglob("*") if p.suffix.lower() in IMAGE_EXTENSIONS and p.is_file())


def to_rgb(image: Image.Image) -> Image.Image:
    """Apply EXIF orientation, then convert grayscale/CMYK/palette/alpha modes to RGB.

    Transparent pixels are composited on white: what a viewer shows for them.
    """
    try:
        if image.getexif().get(ORIENTATION, 1) != 1:  # exif_transpose would copy even an upright image
            image = ImageOps.exif_transpose(image)
    except Exception as exc:  # noqa: BLE001 - a malformed EXIF block must not cost the picture
        warnings.warn(f"ignored unreadable EXIF orientation ({_reason(exc)})", ImageWarning, stacklevel=2)
    if image.mode == "RGB":
        return image
    if image.mode in ("RGBA", "LA", "PA") or (image.mode == "P" and "transparency" in image.info):
        rgba = image.convert("RGBA")
        background = Image.new("RGBA", rgba.size, (255, 255, 255, 255))
        return Image.alpha_composite(background, rgba).convert("RGB")
    if image.mode.startswith(("I;16", "I", "F")):  # 16-bit, 32-bit integer and float images: scaled by their maximum
        arr = np.nan_to_num(np.asarray(image, dtype=np.float64), nan=0.0, posinf=0.0, neginf=0.0).clip(0, None)
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
    if kind := not_regular(path):  # opening a FIFO would block for ever
        raise ImageError(f"{path} is {kind}, not an image file")
    with open_image(path) as image:
        image.load()
        return to_rgb(image)


def pil_to_tensor(image: Image.Image) -> torch.Tensor:
    """PIL RGB → float tensor (3,H,W) in [0,1]."""
    arr = np.asarray(to_rgb(image), dtype=np.uint8)
    return torch.from_numpy(arr.copy()).permute(2, 0, 1).float().div_(255.0)


def check_pixels(x: torch.Tensor, *, uint8: bool = False) -> torch.Tensor:
    """`x` as the network can take it, or a ValueError saying why not: a (B,3,H,W) strided
    tensor with data (not on the meta device), of at least one pixel, float (or uint8 where
    `uint8`), with no NaN or infinite value (one NaN pixel would make every output pixel NaN:
    instance norm spreads it over the whole picture)."""
    if x.device.type == "meta":
        raise ValueError("the tensor is on the meta device (a shape without data): create it on a real device, e.g. cpu")
    if x.layout != torch.strided:
        raise ValueError(f"a {x.layout} tensor cannot be stylized: pass a dense one (x.to_dense())")
    if not (x.is_floating_point() or uint8 and x.dtype == torch.uint8) or x.is_complex():
        raise ValueError(f"unsupported dtype {x.dtype}: pass a float tensor in [0,1]" + (" or uint8 (0-255)" if uint8 else ""))
    if x.dim() != 4 or x.shape[1] != 3:
        raise ValueError(f"expected a float tensor (B,3,H,W) or (3,H,W) in [0,1], got {tuple(x.shape)} {x.dtype}")
    if x.numel() == 0:
        raise ValueError(f"the image is empty (shape {tuple(x.shape)}): it needs at least one pixel")
    if x.is_floating_point() and not bool(torch.isfinite(x).all()):
        raise ValueError("the image has NaN or infinite values: replace them first (np.nan_to_num, torch.nan_to_num)")
    return x


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


#: resize_short_side keeps the long side within this many times `size`
MAX_ASPECT = 4


def resize_short_side(image: Image.Image, size: int) -> Image.Image:
    """Short side → `size`, but the long side at most MAX_ASPECT × `size`: a 3x4000 sliver
    would otherwise become 512x682667 (4 GB as floats)."""
    w, h = image.size
    scale = min(size / min(w, h), MAX_ASPECT * size / max(w, h))
    return image.resize((max(1, round(w * scale)), max(1, round(h * scale))), Image.BICUBIC)


def current_umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def why_unwritable(folder: str | os.PathLike) -> str | None:
    """Why a file cannot be created in `folder` (made if missing), or None; creates nothing:
    the nearest existing ancestor is probed with a temp file."""
    path = Path(folder).expanduser().absolute()
    while not path.exists():
        if path.is_symlink():
            return f"{path} is a broken link"
        path = path.parent
    if not path.is_dir():
        return f"{path} is a file, not a folder"
    try:
        with tempfile.TemporaryFile(dir=path):
            pass
    except OSError as exc:
        return f"{path}: {exc.strerror or exc}"
    return None


def _temp_pattern(out: Path) -> re.Pattern:
    """AtomicFile's temp names for `out`: .<name>.<writer pid>-<mkstemp's 8 characters><suffix>."""
    return re.compile(rf"\.{re.escape(out.name)}\.(\d+)-[a-z0-9_]{{8}}{re.escape(out.suffix or '.tmp')}")


def _alive(pid: int) -> bool:
    if pid == os.getpid():
        return True
    try:
        os.kill(pid, 0)  # signal 0: only asks whether the process exists
    except ProcessLookupError:
        return False
    except OSError:
        return True  # exists, owned by someone else
    return True


def remove_stale_temps(out: str | os.PathLike) -> list[Path]:
    """Delete the temp files of earlier writes of `out` whose writer no longer runs (killed
    mid-write: a temp is renamed or removed by every writer that gets to finish)."""
    out = Path(out)
    if os.name != "posix" or not out.parent.is_dir():
        return []  # os.kill(pid, 0) is no existence check on Windows
    pattern, removed = _temp_pattern(out), []
    for entry in os.scandir(out.parent):
        match = pattern.fullmatch(entry.name)
        if match and not _alive(int(match.group(1))):
            Path(entry.path).unlink(missing_ok=True)
            removed.append(Path(entry.path))
    return removed


class AtomicFile:
    """A temp file beside `out` that becomes `out` on `commit()` (one rename) or vanishes on `discard()`.

    Readers never see half a file and a crash leaves the old file intact; the result gets
    the permissions a plain `open` would have given it (mkstemp's 0600 is for the temp file).
    The temp name keeps `out`'s suffix, for writers that pick a format from it (OpenCV), and
    the writer's pid, so the next write of `out` removes temps that a killed writer left.
    """

    def __init__(self, out: str | os.PathLike):
        self.out = Path(out)
        try:
            self.out.parent.mkdir(parents=True, exist_ok=True)
            remove_stale_temps(self.out)
            fd, tmp = tempfile.mkstemp(dir=self.out.parent, prefix=f".{self.out.name}.{os.getpid()}-",
                                       suffix=self.out.suffix or ".tmp")
        except OSError as exc:
            reason = why_unwritable(self.out.parent) or exc.strerror or str(exc)
            raise WriteError(f"cannot write {self.out} ({reason}); pick another output path") from None
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
        try:
            write(str(f.tmp))
        except OSError as exc:
            if isinstance(exc, WriteError):
                raise
            raise WriteError(f"cannot write {f.out}: {exc.strerror or exc}") from None
    return f.out


def ensure_writable(folder: str | os.PathLike, option: str) -> Path:
    """Create `folder` and check a file can be written in it, before work that would be lost
    if the first write failed at its end (a training run's checkpoints)."""
    folder = Path(folder)
    try:
        folder.mkdir(parents=True, exist_ok=True)
        with tempfile.TemporaryFile(dir=folder):
            pass
    except OSError as exc:
        reason = why_unwritable(folder) or exc.strerror or str(exc)
        raise WriteError(f"cannot write to {option}={folder} ({reason}); pick a writable folder with {option}=DIR") from None
    return folder


def image_format(path: str | os.PathLike) -> str:
    """PIL's format name for an output file name (checked before the work, not after it)."""
    fmt = Image.registered_extensions().get(Path(path).suffix.lower())
    if fmt is None or fmt not in Image.SAVE:
        raise ImageError(f"unknown image format for {path}; use .png or .jpg")
    return fmt


def save_image(image: Image.Image | torch.Tensor, path: str | os.PathLike) -> Path:
    """Write an image atomically: a crash never leaves half a PNG."""
    fmt = image_format(path)
    if isinstance(image, torch.Tensor):
        image = tensor_to_pil(image)
    return atomic_write(Path(path), lambda tmp: image.save(tmp, format=fmt))
