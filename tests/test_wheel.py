"""stylenet as a packager ships it: a wheel built from the source, installed into a fresh venv,
run from a folder outside the checkout (the configs and presets are package data, found
through importlib.resources; user folders are relative to the working directory).

The fresh venv borrows this environment's dependencies (torch & co.) through a `.pth` file
instead of downloading them again; stylenet itself must come from the wheel."""

from __future__ import annotations

import shutil
import subprocess
import site
import sys
import sysconfig
import zipfile
from pathlib import Path

import pytest
from PIL import Image

from .conftest import CHICAGO, ROOT, SUBPROCESS_ENV, make_images, tiny_overrides

pytestmark = pytest.mark.slow


def run(cmd: list, cwd: Path, timeout: int = 600) -> subprocess.CompletedProcess:
    env = {k: v for k, v in SUBPROCESS_ENV.items() if k not in ("PYTHONPATH", "VIRTUAL_ENV")}
    env["STYLENET_CACHE"] = str(cwd / "cache")
    result = subprocess.run([str(c) for c in cmd], cwd=cwd, env=env, capture_output=True, text=True, timeout=timeout)
    assert result.returncode == 0, f"{cmd[0]} failed ({result.returncode}):\n{result.stdout[-3000:]}\n{result.stderr[-3000:]}"
    return result


def site_packages() -> list[str]:
    return site.getsitepackages() if hasattr(site, "getsitepackages") else []


@pytest.fixture(scope="module")
def installed(tmp_path_factory) -> Path:
    """A venv holding the wheel built from this checkout: its bin/ folder."""
    tmp = tmp_path_factory.mktemp("wheel")
    # build from a copy of the sources: the build's own folders never land in the checkout
    src = tmp / "src"
    shutil.copytree(ROOT / "stylenet", src / "stylenet", ignore=shutil.ignore_patterns("__pycache__", "*.pyc"))
    for name in ("pyproject.toml", "README.md"):
        shutil.copy(ROOT / name, src / name)
    run([sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "--no-index", "-q", "-w", tmp / "dist", src], tmp)
    (wheel,) = (tmp / "dist").glob("stylenet-*.whl")
    names = zipfile.ZipFile(wheel).namelist()
    for data in ("stylenet/configs/train.yaml", "stylenet/configs/style/hokusai.yaml", "stylenet/configs/tools/stylize.yaml",
                 "stylenet/configs/tools/benchmark.yaml", "stylenet/configs/tools/mode/train.yaml",
                 "stylenet/bench/train.py", "stylenet/presets/README.md"):
        assert data in names, f"{data} is not in the wheel"
    shipped = sorted(p.relative_to(ROOT).as_posix() for p in (ROOT / "stylenet" / "presets").glob("*.safetensors"))
    assert set(shipped) <= set(names)  # the trained presets too, once there are any

    venv = tmp / "venv"
    run([sys.executable, "-m", "venv", "--without-pip", venv], tmp)
    python = venv / "bin" / "python"
    target = Path(subprocess.check_output([python, "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"], text=True).strip())
    # this environment's packages (torch, Lightning, Hydra, ...) after the venv's own: no download
    borrowed = dict.fromkeys([sysconfig.get_paths()["purelib"], sysconfig.get_paths()["platlib"], *site_packages()])
    (target / "borrowed.pth").write_text("".join(f"{path}\n" for path in borrowed))
    run([sys.executable, "-m", "pip", "--python", python, "install", "-q", "--no-deps", "--no-index", "--ignore-installed", wheel], tmp)
    return venv / "bin"


def test_the_wheel_trains_and_stylizes_outside_the_checkout(installed, tmp_path):
    work = tmp_path / "elsewhere"
    work.mkdir()
    where = run([installed / "python", "-c", "import stylenet, stylenet.resources as r; print(stylenet.__file__); print(r.CONFIG_DIR)"], work)
    module, configs = where.stdout.split()
    assert Path(module).is_relative_to(installed.parent) and Path(configs).is_relative_to(installed.parent)
    assert not Path(module).is_relative_to(ROOT)

    assert "model=" in run([installed / "stylenet-stylize", "--help"], work).stdout
    assert "models:" in run([installed / "stylenet-benchmark", "mode=infer", "--help"], work).stdout  # the benchmarks ship too

    photos = make_images(tmp_path / "photos", n=4)
    overrides = [a for a in tiny_overrides(tmp_path, photos, steps=2) if not a.startswith(("checkpoint_dir=", "logger="))]
    run([installed / "stylenet-train", *overrides, "logger=csv", "trainer.log_every_n_steps=1"], work)
    export = work / "checkpoints" / "hokusai" / "hokusai.safetensors"  # user folders: relative to the working directory
    assert export.is_file() and (work / "checkpoints" / "hokusai" / "last.ckpt").is_file()
    (metrics,) = (work / "outputs").rglob("metrics.csv")  # the run folder (logger=csv) too
    assert "train/loss" in metrics.read_text().splitlines()[0]

    out = work / "painted.png"
    run([installed / "stylenet-stylize", f"model={export}", f"input={CHICAGO}", f"output={out}", "device=cpu"], work)
    with Image.open(out) as painted, Image.open(CHICAGO) as photo:
        assert painted.size == photo.size
