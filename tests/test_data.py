import io
import os
import time
import warnings

import pytest
import torch
from PIL import Image

from stylenet.data import (
    DataError,
    ImageFiles,
    StyleDataModule,
    crop_transform,
    enlargement,
    find_images,
    load_hub_dataset,
    readable_images,
)
from stylenet.imageio import ImageError, load_image, save_image

from .conftest import compose, make_images


def _save(img: Image.Image, path, **kw):
    path.parent.mkdir(parents=True, exist_ok=True)
    img.save(path, **kw)
    return path


def test_find_images_is_recursive_and_sorted(tmp_path):
    make_images(tmp_path / "photos", n=6)
    (tmp_path / "photos" / "notes.txt").write_text("not an image")
    files = find_images(tmp_path / "photos")
    assert len(files) == 6 and files == sorted(files)
    assert {f.parent.name for f in files} == {"a", "b"}


def test_missing_and_empty_folders_are_clear_errors(tmp_path):
    with pytest.raises(DataError, match="data folder not found.*data.path"):
        find_images(tmp_path / "nope")
    (tmp_path / "empty").mkdir()
    with pytest.raises(DataError, match="no images found under"):
        find_images(tmp_path / "empty")


@pytest.mark.parametrize("mode", ["L", "CMYK", "RGBA", "P", "I;16", "LA", "1"])
def test_any_mode_becomes_rgb(tmp_path, mode):
    img = Image.new("RGB", (20, 10), (200, 30, 60)).convert(mode) if mode != "I;16" else Image.new("I;16", (20, 10), 3000)
    suffix = ".jpg" if mode in ("L", "CMYK") else ".png"
    out = load_image(_save(img, tmp_path / f"x{suffix}"))
    assert out.mode == "RGB" and out.size == (20, 10)


def test_transparent_pixels_become_white(tmp_path):
    img = Image.new("RGBA", (4, 4), (255, 0, 0, 0))
    assert load_image(_save(img, tmp_path / "t.png")).getpixel((0, 0)) == (255, 255, 255)


def test_exif_orientation_is_respected(tmp_path):
    img = Image.new("RGB", (40, 20), (0, 255, 0))
    exif = Image.Exif()
    exif[0x0112] = 6  # rotate 90° when displayed
    out = load_image(_save(img, tmp_path / "r.jpg", exif=exif.tobytes()))
    assert out.size == (20, 40)


def test_unreadable_files_are_clear_errors(tmp_path):
    (tmp_path / "junk.jpg").write_bytes(b"\x00" * 100)
    with pytest.raises(ImageError, match="cannot read image"):
        load_image(tmp_path / "junk.jpg")
    with pytest.raises(ImageError, match="image not found"):
        load_image(tmp_path / "missing.png")
    with pytest.raises(ImageError, match="folder"):
        load_image(tmp_path)


def test_small_images_are_upscaled_to_the_crop():
    out = crop_transform(64)(torch.rand(3, 10, 30))
    assert out.shape == (3, 64, 64)


def test_augmented_crops_are_zoomed_squares_and_mirrored():
    image = torch.arange(40 * 60, dtype=torch.float32).reshape(1, 40, 60).expand(3, 40, 60).clone()
    mirror = crop_transform(40, augment={"scale": [1.0, 1.0], "hflip": 1.0})(image)  # area 1 is no square: centre square
    assert mirror.shape == (3, 40, 40)
    assert torch.equal(mirror, image[:, :, 10:50].flip(-1))
    torch.manual_seed(0)
    zoomed = [crop_transform(16, augment={"scale": [0.1, 0.1], "hflip": 0})(image) for _ in range(4)]
    assert all(z.shape == (3, 16, 16) for z in zoomed)
    # a tenth of the area, upscaled: neighbouring output pixels differ by less than a row of the source
    assert all(float((z[0, 1:] - z[0, :-1]).abs().max()) < 60 for z in zoomed)
    assert not torch.equal(zoomed[0], zoomed[1])  # random positions
    with pytest.raises(DataError, match="augment.scale"):
        crop_transform(16, augment={"scale": [0.5, 1.5]})


def test_corrupt_files_are_skipped_and_counted(tmp_path):
    folder = make_images(tmp_path / "photos", n=4)
    (folder / "junk.jpg").write_bytes(b"garbage")
    good = Image.new("RGB", (64, 64), (10, 20, 30))
    buf = io.BytesIO()
    good.save(buf, format="JPEG")
    (folder / "truncated.jpg").write_bytes(buf.getvalue()[: len(buf.getvalue()) // 3])
    with pytest.warns(UserWarning, match=r"skipped 2 unreadable image\(s\) of 6"):
        files = readable_images(find_images(folder))
    assert len(files) == 4 and not any(f.name in ("junk.jpg", "truncated.jpg") for f in files)
    # a file that breaks only when decoded (here: skipping the scan) is replaced, with a warning
    dataset = ImageFiles(find_images(folder), crop_transform(16))
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        items = [dataset[i] for i in range(len(dataset))]
    assert all(item.shape == (3, 16, 16) for item in items)  # training never dies on a bad file
    assert any("truncated.jpg" in str(w.message) for w in caught)


def test_datamodule_batches_and_fixed_samples(tmp_path):
    folder = make_images(tmp_path / "photos", n=6)
    cfg = compose(["data=folder", f"data.path={folder}", "data.image_size=24", "data.batch_size=2", "data.num_workers=0"]).data
    dm = StyleDataModule(cfg, sample_count=3, sample_size=20)
    dm.setup("fit")
    batch = next(iter(dm.train_dataloader()))
    assert batch.shape == (2, 3, 24, 24) and batch.dtype == torch.float32
    assert 0 <= batch.min() and batch.max() <= 1
    samples = dm.sample_batch()
    assert samples.shape == (3, 3, 20, 20)
    assert torch.equal(samples, dm.sample_batch())  # the same photos every time


def test_photos_smaller_than_the_crops_are_named_with_a_size_that_fits(tmp_path):
    folder = make_images(tmp_path / "photos", n=4, size=(70, 64))  # short side 64
    files = find_images(folder)
    # augmented crops of 25-100 % of the area: a median crop of sqrt(0.625 * 70 * 64) = 52.9 px
    factor, side = enlargement(files, 96, {"scale": [0.25, 1.0]})
    assert side == 64 and factor == pytest.approx(96 / (0.625 * 70 * 64) ** 0.5)
    assert enlargement(files, 96)[0] == pytest.approx(96 / 64)  # no augmentation: the short side is resized
    cfg = compose(["data=folder", f"data.path={folder}", "data.image_size=96", "data.batch_size=2", "data.num_workers=0"]).data
    with pytest.warns(UserWarning, match=r"small for data.image_size=96 \(median short side 64 px\).*enlarged 1\.8x.*data.image_size=64 "):
        StyleDataModule(cfg).setup("fit")
    cfg = compose(["data=folder", f"data.path={folder}", "data.image_size=56", "data.batch_size=2", "data.num_workers=0"]).data
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        StyleDataModule(cfg).setup("fit")
    assert not [w for w in caught if "small for" in str(w.message)]  # 56 / 52.9 = 1.06: below the limit


def test_too_few_images_for_a_batch(tmp_path):
    folder = make_images(tmp_path / "photos", n=2)
    cfg = compose(["data=folder", f"data.path={folder}", "data.batch_size=4"]).data
    with pytest.raises(DataError, match="fewer than data.batch_size=4"):
        StyleDataModule(cfg).setup("fit")


def test_unreachable_hub_is_a_clear_error_in_seconds(tmp_path, monkeypatch):
    for var in ("https_proxy", "HTTPS_PROXY", "http_proxy", "HTTP_PROXY"):
        monkeypatch.setenv(var, "http://127.0.0.1:9")
    monkeypatch.setenv("HF_HOME", str(tmp_path / "hf"))
    monkeypatch.setenv("HF_HUB_ETAG_TIMEOUT", "5")
    monkeypatch.delenv("HF_HUB_OFFLINE", raising=False)
    cfg = compose(["data=coco", f"data.cache_dir={tmp_path / 'ds'}"]).data
    start = time.monotonic()
    with pytest.raises(DataError, match=r"could not load dataset 'detection-datasets/coco'.*data=folder data.path=DIR"):
        load_hub_dataset(cfg)
    assert time.monotonic() - start < 60


def test_hub_dataset_decodes_from_bytes(tmp_path):
    """The `datasets` path end to end, on a local parquet-free dataset with one corrupt row."""
    import datasets

    from stylenet.data import HubImages

    good = io.BytesIO()
    Image.new("RGB", (30, 20), (1, 2, 3)).save(good, format="PNG")
    ds = datasets.Dataset.from_dict({"image": [{"bytes": good.getvalue(), "path": None}, {"bytes": b"bad", "path": None}]},
                                    features=datasets.Features({"image": datasets.Image(decode=False)}))
    images = HubImages(ds, "image", crop_transform(8))
    assert images[0].shape == (3, 8, 8)
    with pytest.warns(UserWarning, match="skipping unreadable image item 1"):
        assert images[1].shape == (3, 8, 8)


def test_save_image_is_atomic_and_round_trips(tmp_path):
    x = torch.rand(3, 9, 7)
    path = save_image(x, tmp_path / "deep" / "x.png")
    back = torch.from_numpy(__import__("numpy").asarray(Image.open(path))).permute(2, 0, 1).float() / 255
    assert back.shape == (3, 9, 7) and (back - x).abs().max() < 1 / 255 + 1e-6
    assert os.listdir(tmp_path / "deep") == ["x.png"]  # no temp files left behind
