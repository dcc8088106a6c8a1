"""Training photos → (3,S,S) RGB tensors in [0,1]: a local folder or a Hugging Face dataset.

Training never dies on one bad file: unreadable images are skipped at scan time where
cheap checks catch them, and replaced by the next image (with a warning) where only
decoding does. The optional pre-resize cache is `preresize.py`.
"""

from __future__ import annotations

import io
import os
import warnings
from pathlib import Path

import pytorch_lightning as pl
import torch
from PIL import Image
from torch.utils.data import DataLoader, Dataset
from torchvision.transforms import v2

from .errors import UserError
from . import imageio
from .imageio import IMAGE_EXTENSIONS, ImageError, load_image, open_image, pil_to_tensor, to_rgb
from .preresize import preresize_files, preresize_hub


class DataError(UserError, RuntimeError):
    """The training data cannot be found or reached."""


class SquareCrop(torch.nn.Module):
    """The largest square of an image, at a random place (`random`) or centred.

    Taken before resizing, so memory follows the crop, not the photo's shape: resizing a
    1x50000 sliver's short side to 256 first makes a 256x12800000 image (39 GB as floats)
    only to crop most of it away. Square-then-resize samples the same crops as resize-then-crop.
    """

    def __init__(self, random: bool = True):
        super().__init__()
        self.random = random

    def forward(self, image: torch.Tensor) -> torch.Tensor:
        h, w = image.shape[-2:]
        side = min(h, w)
        if self.random:
            top, left = (int(torch.randint(0, n - side + 1, ())) for n in (h, w))
        else:
            top, left = (h - side) // 2, (w - side) // 2
        return image[..., top:top + side, left:left + side]


def crop_transform(size: int, train: bool = True, augment=None) -> v2.Compose:
    """The largest square (random or centred), resized to size×size (small images are upscaled).

    `augment` (training only; `data.augment`): `scale: [lo, hi]` takes square crops of
    lo..hi of the image's area instead (zoomed-in views), `hflip` mirrors with that
    probability. With the 100 sample photos the network otherwise memorises them: on
    unseen photos its style term was 3× its training value by step 2000 (docs/quality.md).
    """
    if not train:
        return v2.Compose([SquareCrop(random=False), v2.Resize((size, size), antialias=True)])
    augment = augment or {}
    steps = []
    if augment.get("scale"):
        lo, hi = (float(v) for v in augment["scale"])
        if not 0 < lo <= hi <= 1:
            raise DataError(f"data.augment.scale must be [lo, hi] with 0 < lo <= hi <= 1, got {list(augment['scale'])}")
        # square crops (ratio 1): a photo is not squashed; an area too large for a square falls back to the centre square
        steps.append(v2.RandomResizedCrop(size, scale=(lo, hi), ratio=(1.0, 1.0), antialias=True))
    else:
        steps += [SquareCrop(random=True), v2.Resize((size, size), antialias=True)]
    if float(augment.get("hflip") or 0) > 0:
        steps.append(v2.RandomHorizontalFlip(float(augment["hflip"])))
    return v2.Compose(steps)


def find_images(root: str | os.PathLike) -> list[Path]:
    """The training images under `data.path`, recursively, sorted (no class subfolders needed)."""
    root = Path(root).expanduser()
    if not root.is_dir():
        raise DataError(f"data folder not found: {root}; set data.path=DIR to a folder of images")
    files = imageio.find_images(root)
    if not files:
        raise DataError(f"no images found under {root} (looked for {', '.join(IMAGE_EXTENSIONS)})")
    return files


def readable_images(files: list[Path]) -> list[Path]:
    """Drop files whose header PIL cannot parse, with one warning that counts them."""
    good, bad = [], []
    for path in files:
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")  # one count below, not one warning per file
                with open_image(path) as image:
                    image.verify()
            good.append(path)
        except ImageError:  # decompression bombs included: any unreadable file is skipped the same way
            bad.append(path)
    if bad:
        warnings.warn(f"skipped {len(bad)} unreadable image(s) of {len(files)} (e.g. {bad[0]})", stacklevel=2)
    if not good:
        raise DataError(f"none of the {len(files)} image files could be read (e.g. {files[0]})")
    return good


def enlargement(files: list[Path], image_size: int, augment=None, sample: int = 200) -> tuple[float, int]:
    """How much a typical training crop is enlarged to `image_size`, and the photos' median
    short side, from the headers of up to `sample` photos spread over the list.

    A crop of a fraction `u` of a photo's area (`augment.scale`, median `u` = the range's
    mean) has side sqrt(u · w · h); without augmentation the short side is resized.
    """
    step = max(1, len(files) // sample)
    sides, crops = [], []
    scale = (augment or {}).get("scale")
    mean_area = (float(scale[0]) + float(scale[1])) / 2 if scale else None
    for path in files[::step][:sample]:
        try:
            with open_image(path) as image:
                w, h = image.size
        except ImageError:
            continue
        sides.append(min(w, h))
        crops.append(min(min(w, h), (mean_area * w * h) ** 0.5) if mean_area else min(w, h))
    if not crops:
        return 1.0, 0
    crops.sort()
    sides.sort()
    return image_size / crops[len(crops) // 2], sides[len(sides) // 2]


def warn_if_enlarged(files: list[Path], image_size: int, augment=None, limit: float = 1.25) -> None:
    """Photos smaller than the training crops are trained on enlarged, blurry: measured on the
    100 224-px sample photos, training at their own size scored 3 % better on sharp unseen
    photos after 2000 steps (docs/quality.md). Say so once, with the settings that avoid it."""
    factor, side = enlargement(files, image_size, augment)
    if factor >= limit:
        size = max(32, min(image_size, side // 32 * 32))
        warnings.warn(
            f"the training photos are small for data.image_size={image_size} (median short side {side} px): a typical "
            f"crop is enlarged {factor:.1f}x, so the network learns on blurry images. For photos this size: "
            f"data.image_size={size} 'data.augment.scale=[0.6,1.0]' (docs/quality.md)", stacklevel=2)


class _RobustImages(Dataset):
    """Base: decode item i; on a decoding error warn and use the next item instead."""

    def __init__(self, transform):
        self.transform = transform

    def _load(self, index: int) -> Image.Image:
        raise NotImplementedError

    def _describe(self, index: int) -> str:
        return f"item {index}"

    def __getitem__(self, index: int) -> torch.Tensor:
        n = len(self)
        for attempt in range(min(n, 16)):
            i = (index + attempt) % n
            try:
                return self.transform(pil_to_tensor(self._load(i)))
            except (ImageError, OSError, ValueError) as exc:
                warnings.warn(f"skipping unreadable image {self._describe(i)}: {exc}", stacklevel=2)
        raise DataError(f"16 unreadable images in a row from item {index}; is the dataset corrupt?")


class ImageFiles(_RobustImages):
    def __init__(self, files: list[Path], transform):
        super().__init__(transform)
        self.files = files

    def __len__(self) -> int:
        return len(self.files)

    def _load(self, index: int) -> Image.Image:
        return load_image(self.files[index])

    def _describe(self, index: int) -> str:
        return str(self.files[index])


class HubImages(_RobustImages):
    """A `datasets.Dataset` whose image column is kept undecoded and decoded here robustly."""

    def __init__(self, dataset, column: str, transform):
        super().__init__(transform)
        self.dataset, self.column = dataset, column

    def __len__(self) -> int:
        return len(self.dataset)

    def _load(self, index: int) -> Image.Image:
        item = self.dataset[index][self.column]
        if isinstance(item, Image.Image):
            return to_rgb(item)
        data = item.get("bytes") if isinstance(item, dict) else None
        if data is None and isinstance(item, dict) and item.get("path"):
            return load_image(item["path"])
        with open_image(io.BytesIO(data), name=f"item {index}") as image:
            image.load()
            return to_rgb(image)


def load_hub_dataset(cfg):
    """`datasets.load_dataset` with the image column left undecoded; a clear error offline."""
    os.environ.setdefault("HF_HUB_ETAG_TIMEOUT", "10")
    os.environ.setdefault("HF_HUB_DOWNLOAD_TIMEOUT", "10")
    import datasets

    try:
        ds = datasets.load_dataset(cfg.name, split=cfg.split, streaming=bool(cfg.get("streaming")), cache_dir=cfg.get("cache_dir"))
    except Exception as exc:  # noqa: BLE001 - connection errors come in many classes
        first = str(exc).splitlines()[0] if str(exc) else exc.__class__.__name__
        raise DataError(
            f"could not load dataset {cfg.name!r} (split {cfg.split!r}) from the Hugging Face hub: {first}; "
            "offline? use data=folder data.path=DIR with a local folder of images"
        ) from None
    if cfg.image_column not in (ds.column_names or []):
        raise DataError(f"dataset {cfg.name!r} has no column {cfg.image_column!r}; it has {ds.column_names}; set data.image_column")
    ds = ds.select_columns([cfg.image_column]).cast_column(cfg.image_column, datasets.Image(decode=False))
    if cfg.get("max_images") and not cfg.get("streaming"):
        ds = ds.select(range(min(len(ds), int(cfg.max_images))))
    return ds


class StreamingImages(torch.utils.data.IterableDataset):
    """A streamed hub dataset (no full download), sharded over DDP ranks and loader workers."""

    def __init__(self, dataset, column: str, transform):
        self.dataset, self.column, self.transform = dataset, column, transform

    def __iter__(self):
        from datasets.distributed import split_dataset_by_node

        ds = self.dataset
        if torch.distributed.is_available() and torch.distributed.is_initialized():
            ds = split_dataset_by_node(ds, torch.distributed.get_rank(), torch.distributed.get_world_size())
        decoder = HubImages([], self.column, self.transform)
        for item in ds:
            try:
                decoder.dataset = [item]
                yield self.transform(pil_to_tensor(decoder._load(0)))
            except (ImageError, OSError, ValueError) as exc:
                warnings.warn(f"skipping unreadable streamed image: {exc}", stacklevel=2)


def available_cores() -> int:
    """Cores this process may run on (its affinity mask, where the OS has one)."""
    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)


def auto_workers(devices: int = 1) -> int:
    """Loader workers per training process: the cores left over, at most 8."""
    return max(0, min(8, available_cores() // max(1, devices) - 1))


class StyleDataModule(pl.LightningDataModule):
    """Training photos, and a fixed batch of validation photos for the sample grid."""

    def __init__(self, cfg, sample_count: int = 4, sample_size: int = 256):
        super().__init__()
        self.cfg = cfg
        self.sample_count, self.sample_size = sample_count, sample_size
        self.train_set: Dataset | None = None

    def setup(self, stage: str | None = None) -> None:
        if self.train_set is not None:
            return
        transform = crop_transform(self.cfg.image_size, train=True, augment=self.cfg.get("augment"))
        preresize = self.cfg.get("preresize")
        if preresize and int(preresize) < int(self.cfg.image_size):
            raise DataError(f"data.preresize={preresize} is smaller than data.image_size={self.cfg.image_size}")
        if self.cfg.source == "folder":
            files = find_images(self.cfg.path)
            if self.cfg.get("max_images"):
                files = files[: int(self.cfg.max_images)]
            files = readable_images(files)
            warn_if_enlarged(files, int(self.cfg.image_size), self.cfg.get("augment"))
            if preresize:
                files = preresize_files(files, self.cfg.path, int(preresize), self.cfg.get("preresize_cache"),
                                        workers=auto_workers() + 1)
            self.train_set = ImageFiles(files, transform)
        elif self.cfg.source == "hub":
            ds = load_hub_dataset(self.cfg)
            if preresize and self.cfg.get("streaming"):
                warnings.warn("data.preresize is ignored for a streamed dataset (nothing is stored to resize)", stacklevel=2)
            elif preresize:
                ds = preresize_hub(ds, self.cfg.image_column, int(preresize), workers=auto_workers() + 1)
            cls = StreamingImages if self.cfg.get("streaming") else HubImages
            self.train_set = cls(ds, self.cfg.image_column, transform)
        else:
            raise DataError(f"unknown data.source {self.cfg.source!r}; use data=coco or data=folder")
        if not isinstance(self.train_set, torch.utils.data.IterableDataset) and len(self.train_set) < self.cfg.batch_size:
            raise DataError(f"only {len(self.train_set)} images, fewer than data.batch_size={self.cfg.batch_size}")

    def _loader_kwargs(self) -> dict:
        devices = self.trainer.num_devices if self.trainer is not None else 1
        workers = self.cfg.num_workers
        workers = auto_workers(devices) if workers in (None, "auto") else int(workers)
        on_gpu = self.trainer is not None and self.trainer.accelerator.__class__.__name__ == "CUDAAccelerator"
        pin = on_gpu if self.cfg.pin_memory in (None, "auto") else bool(self.cfg.pin_memory)
        kwargs = {"num_workers": workers, "pin_memory": pin}
        if workers > 0:
            kwargs.update(persistent_workers=bool(self.cfg.persistent_workers), prefetch_factor=int(self.cfg.prefetch_factor))
        return kwargs

    def train_dataloader(self) -> DataLoader:
        iterable = isinstance(self.train_set, torch.utils.data.IterableDataset)
        return DataLoader(
            self.train_set, batch_size=self.cfg.batch_size, shuffle=not iterable, drop_last=True, **self._loader_kwargs()
        )

    def sample_batch(self) -> torch.Tensor:
        """The fixed validation photos, center-cropped: (N,3,S,S). Same photos every call.

        Unreadable photos are skipped with a warning (the next ones take their place), like
        in training: one bad file among the first few must not end the run at its first grid.
        """
        transform = crop_transform(self.sample_size, train=False)
        if self.cfg.get("val_images"):
            loaders = [lambda p=p: load_image(p) for p in self.cfg.val_images]
            limit = len(loaders)
        elif isinstance(self.train_set, (ImageFiles, HubImages)):
            loaders = [lambda i=i: self.train_set._load(i) for i in range(len(self.train_set))]
            limit = self.sample_count
        else:
            column = self.train_set.column
            loaders = [lambda item=item: HubImages([item], column, None)._load(0)
                       for item in self.train_set.dataset.take(4 * self.sample_count)]
            limit = self.sample_count
        images, bad = [], []
        for load in loaders:
            if len(images) == limit:
                break
            try:
                images.append(transform(pil_to_tensor(load())))
            except ImageError as exc:
                bad.append(str(exc))
        if bad:
            warnings.warn(f"sample grid: skipped {len(bad)} unreadable photo(s) ({bad[0]})", stacklevel=2)
        if not images:
            raise DataError(f"no readable photo for the sample grid ({bad[0] if bad else 'none given'})")
        return torch.stack(images)
