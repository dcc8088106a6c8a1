"""Memory bounded by the tile size, not by the photo: a 12000x12000 photo through `stylize`
with the default tiling (tiles of 1024 px, statistics from a 4-megapixel copy), measured as
the command's own peak resident memory in a fresh process. (Training with slivers: test_train.)"""

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
    PEAKS["stylize 12000x12000 (tiles 1024 px, statistics at 4 MP)"] = (outcome.peak_gb, BOUND_GB)
    assert outcome.peak_gb < BOUND_GB, outcome
