"""`python scripts/benchmark.py mode=data`: how many training images/s the loader delivers.

The loader is the training one (`StyleDataModule.train_dataloader`: decode, EXIF, RGB,
resize to the short side, random crop, batch; workers, pinned memory, prefetch), over a
local folder (default: ../shared/data/coco-sample) or a hub dataset, for each number of
workers, with and without the one-time pre-resize cache (`data.preresize`). Since the
shared sample is 224-px, `upscale=640` first writes temporary copies at COCO's real size
(long side 640) so decoding costs what it costs on COCO 2014.

A GPU at N images/s needs the loader above N: divide by the per-worker rate for the
number of workers (data.num_workers, `auto` = cores per GPU - 1, at most 8).
"""

from __future__ import annotations

import os
import shutil
import tempfile
import time
from pathlib import Path

import torch
from omegaconf import OmegaConf

from stylenet.commands.app import as_list

from . import training_group


def _upscaled_copy(src: Path, long_side: int, dest: Path) -> Path:
    from PIL import Image

    from stylenet.data import find_images
    from stylenet.imageio import load_image

    for i, path in enumerate(find_images(src)):
        image = load_image(path)
        w, h = image.size
        scale = long_side / max(w, h)
        image.resize((round(w * scale), round(h * scale)), Image.Resampling.BICUBIC).save(dest / f"{i:06d}.jpg", quality=90)
    return dest


def _worker_counts(spec) -> list[int]:
    if spec in (None, "auto"):
        from stylenet.data import available_cores

        cores = available_cores()
        counts, n = [0, 1], 2
        while n <= cores:
            counts.append(n)
            n *= 2
        return counts
    return [int(w) for w in as_list(spec)]


def time_loader(cfg, images: int) -> tuple[float, float]:
    """(seconds to the first batch, images/s after it) of the training loader for `cfg`."""
    from stylenet.data import StyleDataModule

    dm = StyleDataModule(cfg)
    dm.setup("fit")
    loader = dm.train_dataloader()
    start = time.perf_counter()
    batches = iter(loader)
    next(batches)  # worker start-up and the first batch: not timed
    first = time.perf_counter() - start
    seen, t0 = 0, time.perf_counter()
    while seen < images:
        try:
            seen += next(batches).shape[0]
        except StopIteration:  # next epoch; persistent workers stay up
            batches = iter(loader)
    rate = seen / (time.perf_counter() - t0)
    del batches, loader
    return first, rate


def data_config(args, path: str):
    """The training data config (`data=folder` or `data=coco`, composed by Hydra) with the benchmark's values."""
    values = {"source": args["source"], "path": path, "image_size": int(args["size"]), "batch_size": int(args["batch_size"]),
              "prefetch_factor": int(args["prefetch_factor"]), "max_images": args["max_images"], "streaming": False}
    if args["source"] != "folder":
        values.update(name=args["name"], split=args["split"], image_column=args["image_column"])
    return OmegaConf.create(training_group("data", "folder" if args["source"] == "folder" else "coco", values))


def run(args) -> None:
    """Time the training loader for each pre-resize setting and number of workers; print the table."""
    workers = _worker_counts(args["workers"])
    preresizes = as_list(args["preresize"])
    pin = torch.cuda.is_available() if args["pin_memory"] in (None, "auto") else bool(args["pin_memory"])
    tmp = Path(tempfile.mkdtemp(prefix="stylenet-bench-data-"))
    try:
        path = args["path"]
        if args["source"] == "folder" and args["upscale"]:
            (tmp / "upscaled").mkdir()
            path = str(_upscaled_copy(Path(path), int(args["upscale"]), (tmp / "upscaled").resolve()))
        base = OmegaConf.merge(data_config(args, path), {"pin_memory": pin, "persistent_workers": True})
        what = f"{args['source']} {path if args['source'] == 'folder' else args['name']}"
        print(f"# loader throughput: {what}" + (f" (copies upscaled to long side {args['upscale']} px)" if args["upscale"] else ""))
        print(f"# {args['size']}-px random crops, batch {args['batch_size']}, {args['images']} images timed per row "
              f"after the first batch; pin_memory={pin}; {os.cpu_count()} cores (noisy when shared)")
        header = f"{'preresize':>9} {'workers':>7} {'first batch s':>13} {'images/s':>9} {'per worker':>10}"
        print(header)
        print("-" * len(header))
        for pre in preresizes:
            cfg = OmegaConf.merge(base, {"preresize": pre, "preresize_cache": str(tmp / f"cache-{pre}") if pre else None})
            if pre:
                start = time.perf_counter()
                from stylenet.data import StyleDataModule

                StyleDataModule(cfg).setup("fit")  # builds the cache (once)
                print(f"# pre-resize cache ({pre} px) built in {time.perf_counter() - start:.1f} s (one time)")
            for n in workers:
                first, rate = time_loader(OmegaConf.merge(cfg, {"num_workers": n}), int(args["images"]))
                per = rate / max(1, n)
                print(f"{str(pre or 'off'):>9} {n:>7} {first:>13.2f} {rate:>9.1f} {per:>10.1f}", flush=True)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
