"""Memory bounded by the tile size, not by the photo: a 12000x12000 photo through `stylize`
with the default tiling (tiles of 1024 px, statistics from a copy of at most one tile's
area), measured as the command's own peak resident memory in a fresh process.

A 12000x12000 photo is 196 tiles: through the default network that is half an hour of this
CPU, so the photo's part of the bound (its pixels in and out, the blended band of tiles) is
measured with a width-1 network, and the network's part (one tile, or the statistics pass)
with the default network on a one-tile photo. (Training with slivers: test_train.)"""

from __future__ import annotations

import sys

import numpy as np
from PIL import Image

from ..conftest import ROOT
from . import corpus
from .harness import PEAKS, check, fork_run, run_subprocess_case

BOUND_GB = 3.0


def test_stylize_a_12000x12000_photo(tmp_path):
    photo, out = tmp_path / "huge.jpg", tmp_path / "huge_styled.jpg"

    def make() -> None:  # in a fork: the test process does not keep the 576 MB picture
        gradient = np.linspace(0, 255, 12000, dtype=np.float32)
        rows = (gradient[:, None] * 0.5 + gradient[None, :] * 0.5).astype(np.uint8)
        Image.fromarray(np.stack([rows, rows[::-1], rows.T], axis=-1)).save(photo, quality=80)

    assert fork_run(make, timeout=120, memory=0)[0] == 0
    model = corpus.narrow_export(tmp_path / "narrow.safetensors", width=1)  # the same tiling at a fraction of the compute
    outcome = check(run_subprocess_case("stylize a 12000x12000 photo", [
        sys.executable, "scripts/stylize.py", f"model={model}", f"input={photo}", f"output={out}", "progress=false", "device=cpu",
    ], cwd=ROOT, timeout=400), "ok")
    with Image.open(out) as result:
        assert result.size == (12000, 12000)
        assert np.asarray(result.crop((6000, 6000, 6064, 6064))).std() > 0  # a picture, not a blank
    PEAKS["stylize 12000x12000 (default tiling: 1024 px tiles, statistics from 1 MP; a width-1 network)"] = (outcome.peak_gb, BOUND_GB)
    assert outcome.peak_gb < BOUND_GB, outcome


def test_the_default_network_on_one_tile(tmp_path):
    """The other half of the big-photo bound: what the default network (Johnson: width 32, 5
    blocks) needs for one tile or the statistics pass, both at most 1024x1024 pixels."""
    photo, out = tmp_path / "tile.png", tmp_path / "tile_styled.png"
    corpus.photo(1024, 1024).save(photo)
    model = corpus.narrow_export(tmp_path / "johnson.safetensors", width=32, num_residual=5)
    outcome = check(run_subprocess_case("stylize 1024x1024 with the default network", [
        sys.executable, "scripts/stylize.py", f"model={model}", f"input={photo}", f"output={out}", "progress=false", "device=cpu",
    ], cwd=ROOT, timeout=300), "ok")
    assert Image.open(out).size == (1024, 1024)
    PEAKS["stylize 1024x1024, the default network (width 32, 5 blocks): one tile / the statistics pass"] = (outcome.peak_gb, BOUND_GB)
    assert outcome.peak_gb < BOUND_GB, outcome
