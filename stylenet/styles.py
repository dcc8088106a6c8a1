"""Style presets → a verified local image: downloaded once into the user cache, sha256-checked."""

from __future__ import annotations

import hashlib
import os
import shutil
import socket
from pathlib import Path

from platformdirs import user_cache_dir

from .errors import UserError
from .imageio import atomic_write
from .resources import CONFIG_DIR

DOWNLOAD_TIMEOUT_S = 10


class StyleError(UserError, ValueError):
    """A style image cannot be found, downloaded or verified."""


def cache_root() -> Path:
    """stylenet's cache folder: the user cache dir, or `STYLENET_CACHE`."""
    return Path(os.environ.get("STYLENET_CACHE") or user_cache_dir("stylenet"))


def cache_dir() -> Path:
    """Where downloaded style images live."""
    return cache_root() / "styles"


def preset_names() -> list[str]:
    return sorted(p.stem for p in (CONFIG_DIR / "style").glob("*.yaml") if p.stem != "custom")


def sha256_of(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def cached_path(name: str, url: str) -> Path:
    return cache_dir() / f"{name}{Path(url).suffix or '.jpg'}"


def _download(url: str, dest: Path, sha256: str | None) -> None:
    """torch.hub's download: into a temp file, sha256-checked, then moved into place."""
    from torch.hub import download_url_to_file

    old = socket.getdefaulttimeout()
    socket.setdefaulttimeout(DOWNLOAD_TIMEOUT_S)  # urlopen without a timeout would hang offline
    try:
        dest.parent.mkdir(parents=True, exist_ok=True)
        download_url_to_file(url, str(dest), hash_prefix=sha256, progress=False)
    except Exception as exc:  # noqa: BLE001 - URLError, timeouts, HTTP errors: all "could not download"
        if "invalid hash value" in str(exc):
            raise StyleError(f"downloaded {url} but {exc}; the file changed upstream") from None
        raise StyleError(
            f"could not download style image {url} ({exc.__class__.__name__}: {exc}); "
            f"offline? pass a local file with style.image=PATH, or put it at {dest}"
        ) from None
    finally:
        socket.setdefaulttimeout(old)


def _from_mirror(mirrors, name: str, sha256: str, dest: Path) -> bool:
    """Copy a byte-identical (sha256-verified) local copy of a preset into the cache."""
    for folder in mirrors or ():
        folder = Path(str(folder)).expanduser()
        for candidate in sorted(folder.glob(f"{name}.*")) if folder.is_dir() else ():
            if candidate.is_file() and sha256_of(candidate) == sha256:
                atomic_write(dest, lambda tmp, src=candidate: shutil.copyfile(src, tmp))
                return True
    return False


def resolve_style_image(style, mirrors=()) -> Path:
    """The local file for a style config: `style.image` if set, else the verified preset.

    A preset is looked up in the cache, then in local `mirrors` folders (a file named like
    the preset whose sha256 matches), and only then downloaded.
    """
    image = style.get("image")
    if image:
        path = Path(str(image)).expanduser()
        if not path.is_file():
            raise StyleError(f"style image not found: {path}; presets: {', '.join(preset_names())}")
        return path
    url, sha256, name = style.get("url"), style.get("sha256"), style.get("name")
    if not url:
        raise StyleError(f"style {name!r} names no image; set style.image=PATH or use a preset: {', '.join(preset_names())}")
    dest = cached_path(name, url)
    if dest.is_file():
        if not sha256 or sha256_of(dest) == sha256:
            return dest
        dest.unlink()  # stale or corrupt cache entry: fetch again
    if sha256 and _from_mirror(mirrors, name, sha256, dest):
        return dest
    _download(url, dest, sha256)
    return dest


def style_image_path(spec: str | os.PathLike, preset=None, mirrors=()) -> Path:
    """A style image from a file path, else from `preset`: the style config of the preset named
    `spec`, as the caller's config edge composed it (its `style_mirrors` passed as `mirrors`)."""
    path = Path(str(spec)).expanduser()
    if path.is_file():
        return path
    if preset is None:
        raise StyleError(f"style {spec!r} is neither an image file nor a preset ({', '.join(preset_names())})")
    return resolve_style_image(preset, mirrors=mirrors)
