"""Crash safety: a writer killed (SIGKILL) in the middle of its write leaves the old file or
the complete new one at the output path, never half of one, and its temp file is gone after
the next write of that path; a training run killed after a checkpoint resumes from it."""

from __future__ import annotations

import csv
import os
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from . import corpus, entry
from .harness import TALLY, RESULTS, check, fork_run, run_case


def temps(folder: Path) -> list[str]:
    return sorted(p.name for p in folder.iterdir() if p.name.startswith("."))


def mid_write(final: Path):
    """True once a write of `final` is under way: its temp file beside it, or `final` itself
    changing (how a writer without a temp file is caught: then the kill leaves half a file there)."""
    before = final.stat() if final.exists() else None

    def started() -> bool:
        if any(name.startswith(f".{final.name}.") for name in os.listdir(final.parent)):
            return True
        if final.exists():
            now = final.stat()
            return before is None or (now.st_size, now.st_mtime_ns) != (before.st_size, before.st_mtime_ns)
        return False

    return started


def kill_mid_write(name: str, final: Path, write) -> None:
    """Run `write` in a fork and SIGKILL it once its write has started; record the case."""
    old = final.read_bytes() if final.exists() else None
    code, out, err, hung, signalled, seconds, _ = fork_run(write, timeout=120, kill_when=mid_write(final))
    assert not hung and code is None, f"{name}: the writer was not killed mid-write (exit {code})\n{out}\n{err}"
    TALLY["ok"] += 1
    RESULTS.append((f"SIGKILL {name} mid-write", "ok"))
    assert temps(final.parent), f"{name}: the write finished before the kill"  # the kill did land mid-write
    assert final.exists() == (old is not None)
    if old is not None:
        assert final.read_bytes() == old, f"{name}: the output path holds a partial file after the kill"


@pytest.fixture(scope="module")
def narrow(tmp_path_factory):
    return corpus.narrow_export(tmp_path_factory.mktemp("narrow") / "narrow.safetensors", width=2)


@pytest.fixture(scope="module")
def noisy(tmp_path_factory):
    return corpus.noise_photo(tmp_path_factory.mktemp("noisy") / "noise.png", 1400, 1200)


@pytest.mark.parametrize("suffix", [".png", ".npy"])
def test_stylize_output_killed_mid_write(suffix, narrow, noisy, good_photo, tmp_path):
    final = tmp_path / f"out{suffix}"
    check(run_case(f"stylize → {suffix} (old version)", lambda: entry.stylize(f"model={narrow}", f"input={good_photo}", f"output={final}")), "ok")
    kill_mid_write(f"stylize → {suffix}", final, lambda: entry.stylize(f"model={narrow}", f"input={noisy}", f"output={final}"))
    check(run_case(f"stylize → {suffix} (after the kill)", lambda: entry.stylize(f"model={narrow}", f"input={noisy}", f"output={final}")), "ok")
    assert temps(tmp_path) == []  # the killed write's temp file was removed by the next write
    if suffix == ".npy":
        assert np.load(final).shape == (1200, 1400, 3)
    else:
        assert Image.open(final).size == (1400, 1200)


def test_video_output_killed_mid_write(narrow, tmp_path):
    clip = corpus.make_video(tmp_path / "clip.mp4", frames=400, size=(96, 64))
    final = tmp_path / "styled.mp4"
    kill_mid_write("stylize → .mp4", final, lambda: entry.stylize(f"model={narrow}", f"input={clip}", f"output={final}", "batch_size=1"))
    assert not final.exists()
    check(run_case("stylize → .mp4 (after the kill)", lambda: entry.stylize(f"model={narrow}", f"input={clip}", f"output={final}")), "ok")
    assert temps(tmp_path) == []
    import av

    with av.open(str(final)) as container:
        assert sum(1 for _ in container.decode(video=0)) == 400


def test_export_killed_mid_write(tmp_path):
    """A 24-million-weight network: an export big enough to be caught in the middle."""
    source = corpus.narrow_export(tmp_path / "wide.safetensors", width=128, num_residual=5)
    out_dir = tmp_path / "out"
    final = out_dir / "narrow128.safetensors"
    check(run_case("export (old version)", lambda: entry.export(f"ckpt={corpus.narrow_export(tmp_path / 'small.safetensors', width=4)}",
                                                                 f"out_dir={out_dir}")), "ok")
    (out_dir / "narrow4.safetensors").rename(final)
    kill_mid_write("export", final, lambda: entry.export(f"ckpt={source}", f"out_dir={out_dir}"))
    check(run_case("export (after the kill)", lambda: entry.export(f"ckpt={source}", f"out_dir={out_dir}")), "ok")
    assert temps(out_dir) == []
    from stylenet.modelfile import read_model_file

    arch = read_model_file(final).arch
    assert (arch["width"], arch["num_residual"]) == (128, 5)


def test_killed_training_resumes_with_its_metrics(tmp_path):
    """SIGKILL once the first periodic checkpoint exists: it is complete (written atomically),
    the metrics of the steps it covers are on disk (flushed with it), and a resume continues."""
    photos = corpus.photo_folder(tmp_path / "photos")
    ckpt_dir = tmp_path / "ckpt"
    extra = ("checkpoint.every_n_train_steps=3", "logger=csv", "trainer.log_every_n_steps=1")
    code, out, err, hung, *_ = fork_run(lambda: entry.train(tmp_path, photos, *extra, steps=10_000), timeout=240,
                                        kill_when=lambda: any(ckpt_dir.glob("step_*.ckpt")))
    assert code is None and not hung, f"training was not killed after its first checkpoint\n{err[-3000:]}"
    TALLY["ok"] += 1
    RESULTS.append(("SIGKILL training after a checkpoint", "ok"))
    (first,) = ckpt_dir.glob("step_*.ckpt")
    saved = torch.load(first, map_location="cpu", weights_only=True)["global_step"]
    assert saved == 3
    with open(tmp_path / "run" / "csv" / "metrics.csv") as f:
        logged = {int(row["step"]) for row in csv.DictReader(f)}
    assert set(range(saved - 1)) <= logged  # flushed with the checkpoint, not 100 steps later
    resumed = tmp_path / "resumed"
    outcome = check(run_case("train: resume after SIGKILL", lambda: entry.train(resumed, photos, f"ckpt_path={first}",
                                                                                 f"checkpoint_dir={ckpt_dir}", *extra, steps=saved + 2)), "ok")
    assert torch.load(ckpt_dir / "last.ckpt", map_location="cpu", weights_only=True)["global_step"] == saved + 2, outcome
    with open(resumed / "run" / "csv" / "metrics.csv") as f:
        assert min(int(row["step"]) for row in csv.DictReader(f)) >= saved - 1


def test_only_temps_of_dead_writers_are_removed(tmp_path):
    """A temp file whose writer still runs (another process writing the same path) is left alone."""
    import subprocess

    from stylenet.imageio import atomic_write

    dead = subprocess.Popen(["true"])
    dead.wait()
    stale = tmp_path / f".out.png.{dead.pid}-abcd1234.png"
    live = tmp_path / f".out.png.{os.getppid()}-efgh5678.png"
    other = tmp_path / f".out.png.x.png.{dead.pid}-ijkl9012.png"  # another output's temp: out.png.x.png
    for path in (stale, live, other):
        path.write_bytes(b"half")
    atomic_write(tmp_path / "out.png", lambda tmp: Path(tmp).write_bytes(b"new"))
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted([live.name, other.name, "out.png"])
