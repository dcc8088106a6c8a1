"""The optional one-time pre-resize cache (`data.preresize`): training photos resized once.

Decoding a full-size COCO JPEG (~640x480) and resizing it costs several times more than
decoding the 256-px copy; with `data.preresize=256` this is paid once, not every epoch
(docs/speed.md). A folder's copies go to a cache folder, built under a file lock (every DDP
rank asks; one builds, the others reuse) by a process pool; a hub dataset's go through
`datasets.map`, which caches by fingerprint.
"""

from __future__ import annotations

import hashlib
import io
import logging
import os
from pathlib import Path

from filelock import FileLock
from PIL import Image

from .imageio import atomic_write, open_image, to_rgb
from .styles import cache_root

log = logging.getLogger(__name__)


def preresize_cache_root() -> Path:
    return cache_root() / "preresized"


def _open_reduced(image: Image.Image, size: int) -> Image.Image | None:
    """`image` (opened, not loaded) decoded and resized so its short side is `size`, as RGB;
    None when it is not larger than that already."""
    if min(image.size) <= size:
        return None
    image.draft(image.mode, (size, size))  # JPEG: libjpeg decodes at 1/2, 1/4, 1/8 scale while both sides stay >= size
    image = to_rgb(image)  # EXIF orientation applied: the copy needs no EXIF
    w, h = image.size
    scale = size / min(w, h)
    return image.resize((max(size, round(w * scale)), max(size, round(h * scale))), Image.Resampling.BICUBIC)


def _preresize_file(job: tuple[str, str, int]) -> str:
    """Write the resized copy of one file (atomically); return the path to train on."""
    src, dst, size = job
    try:
        with open_image(src) as image:
            small = _open_reduced(image, size)
            if small is None:
                return src
            atomic_write(dst, lambda tmp: small.save(tmp, "JPEG", quality=95))
        return dst
    except Exception:  # noqa: BLE001 - an unreadable file stays as it is: training warns and skips it
        return src


def _file_lock(folder: Path) -> FileLock:
    """Every process (DDP rank) builds the cache under one lock: one builds, the others reuse."""
    folder.mkdir(parents=True, exist_ok=True)
    return FileLock(folder / ".lock")


def preresize_files(files: list[Path], root: str | os.PathLike, size: int, cache: str | os.PathLike | None = None,
                    workers: int = 1) -> list[Path]:
    """Copies of `files` with the short side reduced to `size` (JPEG q95), made once under
    `cache` (default: <stylenet cache>/preresized/<folder hash>-<size>/) and reused while newer
    than their source. Files that are small already, or unreadable, are used as they are.
    `workers` > 1: a process pool of that many resizes them (when there are more than 16)."""
    root = Path(root).expanduser().resolve()
    digest = hashlib.sha1(str(root).encode()).hexdigest()[:12]
    folder = Path(cache).expanduser() if cache else preresize_cache_root() / f"{root.name}-{digest}-{size}"
    out: list[Path | None] = [None] * len(files)
    jobs: list[tuple[int, tuple[str, str, int]]] = []
    with _file_lock(folder):
        for i, src in enumerate(files):
            src = Path(src)
            try:
                rel = src.resolve().relative_to(root)
            except ValueError:
                rel = Path(hashlib.sha1(str(src.resolve()).encode()).hexdigest()[:16] + src.name)
            dst = folder / f"{rel}.jpg"
            if dst.is_file() and dst.stat().st_mtime >= src.stat().st_mtime:
                out[i] = dst
            else:
                jobs.append((i, (str(src), str(dst), int(size))))
        if jobs:
            log.info("pre-resizing %d images to %d px (once) into %s", len(jobs), size, folder)
            if workers > 1 and len(jobs) > 16:
                from concurrent.futures import ProcessPoolExecutor

                with ProcessPoolExecutor(max_workers=workers) as pool:
                    done = list(pool.map(_preresize_file, [job for _, job in jobs], chunksize=32))
            else:
                done = [_preresize_file(job) for _, job in jobs]
            for (i, _), path in zip(jobs, done):
                out[i] = Path(path)
    return out  # type: ignore[return-value]


def _preresize_batch(batch: dict, column: str, size: int) -> dict:
    """`datasets.map` function: the image column's bytes replaced by a resized JPEG."""
    items = []
    for item in batch[column]:
        data = item.get("bytes") if isinstance(item, dict) else None
        path = item.get("path") if isinstance(item, dict) else None
        try:
            if data is None and path:
                data = Path(path).read_bytes()
            with open_image(io.BytesIO(data)) as image:
                small = _open_reduced(image, size)
            if small is not None:
                buffer = io.BytesIO()
                small.save(buffer, "JPEG", quality=95)
                data, path = buffer.getvalue(), None
        except Exception:  # noqa: BLE001 - kept as it is: training warns and skips it
            pass
        items.append({"bytes": data, "path": path})
    return {column: items}


def preresize_hub(ds, column: str, size: int, workers: int = 1):
    """The dataset with its images resized to short side `size`: `datasets.map`, cached by
    `datasets` in its cache folder (fingerprinted), so it runs once per dataset and size
    (`workers` > 1: that many processes, for more than 256 images)."""
    with _file_lock(preresize_cache_root()):
        return ds.map(
            _preresize_batch, batched=True, batch_size=64, fn_kwargs={"column": column, "size": int(size)},
            features=ds.features, num_proc=workers if workers > 1 and len(ds) > 256 else None,
            desc=f"pre-resizing to {size} px (once)",
        )
