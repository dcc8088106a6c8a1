"""Training fed badly: resume from each broken checkpoint, start from broken models, write to
folders it cannot write, and a whole run on a folder of the image corpus."""

from __future__ import annotations

import shutil
import sys

import pytest
import torch

from ..conftest import ROOT, tiny_overrides
from . import corpus, entry
from .harness import PEAKS, check, fork_run, run_case, run_subprocess_case

RESUME = ["zero-byte.ckpt", "random.ckpt", "text.ckpt", "truncated.ckpt", "payload-legacy.ckpt", "payload-zip.ckpt",
          "payload-system.pt", "payload-in-state-dict.ckpt", "tensor.pt", "list.pt", "no-state-dict.ckpt",
          "foreign-checkpoint.ckpt", "weights-only.ckpt", "torchscript.pt", "valid.safetensors", "ckpt-nan-weights.ckpt",
          "ckpt-width-huge.ckpt", "ckpt-model-a-string.ckpt", "ckpt-other-loss-network.ckpt", "a-folder.safetensors", "missing.safetensors"]
RESUME_MESSAGES = {
    "zero-byte.ckpt": "the file is empty",
    "truncated.ckpt": "truncated",
    "payload-zip.ckpt": "would run code when unpickled; refusing",
    "payload-legacy.ckpt": "would run code when unpickled; refusing",
    "weights-only.ckpt": "cannot be resumed: it has no optimizer_states, loops",
    "valid.safetensors": "is an exported style",
    "ckpt-nan-weights.ckpt": "NaN or infinite",
    "ckpt-width-huge.ckpt": "was trained with model .*'width': 100000",
    "missing.safetensors": "checkpoint to resume from not found",
    "ckpt-other-loss-network.ckpt": r"does not fit this run \(target_gram_.* differ: another loss network or model\?\)",
}


@pytest.fixture(scope="module")
def photos(tmp_path_factory):
    return corpus.photo_folder(tmp_path_factory.mktemp("fuzz-train-photos"))


def nothing_trained(tmp_path) -> bool:
    ckpt = tmp_path / "ckpt"
    return not (ckpt.exists() and any(ckpt.iterdir())) and not (tmp_path / "run" / "samples").exists()


@pytest.mark.parametrize("name", RESUME)
def test_resume_from_each_bad_checkpoint(name, model_corpus, photos, tmp_path):
    path = model_corpus[name][0]
    outcome = check(run_case(f"train ckpt_path={name}", lambda: entry.train(tmp_path, photos, f"ckpt_path={path}")),
                    "error", match=RESUME_MESSAGES.get(name))
    assert nothing_trained(tmp_path), outcome


def test_resume_with_another_model(model_corpus, photos, tmp_path):
    outcome = check(run_case("train ckpt_path=valid.ckpt model=johnson",
                             lambda: entry.train(tmp_path, photos, f"ckpt_path={model_corpus['valid.ckpt'][0]}", "model=johnson")),
                    "error", match=r"was trained with model \{'width': 16, 'num_residual': 3.*\}, this run's model is \{'width': 32")
    assert nothing_trained(tmp_path)


@pytest.mark.parametrize("name", ["payload-zip.ckpt", "nan-weights.safetensors", "width-huge.safetensors", "random.ckpt"])
def test_init_from_a_bad_model(name, model_corpus, photos, tmp_path):
    check(run_case(f"train init_from={name}", lambda: entry.train(tmp_path, photos, f"init_from={model_corpus[name][0]}")), "error")
    assert nothing_trained(tmp_path)


def test_read_only_checkpoint_dir_fails_before_the_first_step(read_only_dir, photos, tmp_path):
    outcome = check(run_case("train checkpoint_dir=<read-only>", lambda: entry.train(tmp_path, photos, f"checkpoint_dir={read_only_dir}")),
                    "error", match=rf"cannot write to checkpoint_dir={read_only_dir} \(.*\); pick a writable folder")
    assert not (tmp_path / "run" / "samples").exists() and "Epoch" not in outcome.out


def test_checkpoint_dir_under_a_file(photos, tmp_path):
    (tmp_path / "a-file").write_text("x")
    check(run_case("train checkpoint_dir=<file>/ckpt", lambda: entry.train(tmp_path, photos, f"checkpoint_dir={tmp_path / 'a-file' / 'ckpt'}")),
          "error", match=r"cannot write to checkpoint_dir=.*a-file is a file, not a folder")


def test_read_only_run_dir(read_only_dir, photos, tmp_path):
    check(run_case("train hydra.run.dir=<read-only>/run",
                   lambda: entry.train(tmp_path, photos, f"hydra.run.dir={read_only_dir / 'run'}")),
          "error", match=r"cannot create the run folder hydra.run.dir=")
    assert nothing_trained(tmp_path)


def test_run_dir_under_a_file(photos, tmp_path):
    (tmp_path / "a-file").write_text("x")
    check(run_case("train hydra.run.dir=<file>/run", lambda: entry.train(tmp_path, photos, f"hydra.run.dir={tmp_path / 'a-file' / 'run'}")),
          "error", match=r"cannot create the run folder .*is a file, not a folder")


def test_train_on_the_image_corpus(image_corpus, tmp_path):
    """A whole run on every odd image at once (slivers first, a truncated photo first for the
    sample grid): it trains, reports what it skipped, and its memory does not follow the slivers."""
    folder = tmp_path / "corpus"
    shutil.copytree(next(iter(image_corpus.values()))[0].parent, folder)
    shutil.copy(image_corpus["short-pixel-data.png"][0], folder / "00-short.png")  # chunks fine, pixels missing: found only when decoded
    shutil.copy(image_corpus["sliver-1x50000.png"][0], folder / "01-sliver-1x50000.png")
    args = [*tiny_overrides(tmp_path, folder, 2), f"hydra.run.dir={tmp_path / 'run'}", "data.image_size=64",
            "samples.num_images=4", "samples.size=64", "logger=csv"]
    outcome = run_subprocess_case("train on the image corpus folder", [sys.executable, "train.py", *args], cwd=ROOT, timeout=240)
    check(outcome, "skipped")
    assert "warning: skipped" in outcome.err and "unreadable image(s)" in outcome.err
    assert "sample grid: skipped 1 unreadable photo" in outcome.err, str(outcome)
    ckpt = torch.load(tmp_path / "ckpt" / "last.ckpt", map_location="cpu", weights_only=True)
    assert ckpt["global_step"] == 2
    assert (tmp_path / "run" / "samples" / "latest.png").is_file()
    PEAKS["train on the image corpus (1x50000 and 4000x3 slivers, 64 px crops)"] = (outcome.peak_gb, 3.0)
    assert outcome.peak_gb < 3.0, outcome


def test_sliver_crops_cost_what_a_square_does(image_corpus):
    """Training crops and the sample grid take the square before resizing, and a style image is
    resized with its long side bounded: a 1x50000 sliver at 512 px stays under 1 GB (resizing
    first would allocate 39 GB for the grid's crop, 147 GB for the style image)."""
    from stylenet.data import crop_transform
    from stylenet.imageio import load_image, load_tensor, pil_to_tensor

    sliver = image_corpus["sliver-1x50000.png"][0]

    def crop_and_style() -> int:
        x = pil_to_tensor(load_image(sliver))
        for train in (True, False):
            assert crop_transform(512, train=train)(x).shape == (3, 512, 512)
        assert crop_transform(512, train=True, augment={"scale": [0.25, 1.0], "hflip": 0.5})(x).shape == (3, 512, 512)
        style = load_tensor(sliver, size=512)
        assert style.shape[-1] == 1 and style.shape[-2] <= 4 * 512
        return 0

    code, out, err, *_ = fork_run(crop_and_style, timeout=120, memory=1 << 30)
    assert code == 0, err[-3000:]
