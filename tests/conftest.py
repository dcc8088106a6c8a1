"""Shared fixtures: paths into ../shared, Hydra config composition, a tiny trained checkpoint."""

from __future__ import annotations

import os
from pathlib import Path

# idle OpenMP threads sleep instead of spinning: on a busy 2-core machine spinning threads
# made every torch call 10-20x slower (set before torch is imported; an explicit value wins)
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

import pytest  # noqa: E402
import torch  # noqa: E402
from PIL import Image

ROOT = Path(__file__).resolve().parents[1]
SHARED = ROOT.parent / "shared"
CONFIGS = ROOT / "stylenet" / "configs"
TOOLS = CONFIGS / "tools"
SQUEEZENET = SHARED / "weights" / "squeezenet1_1-imagenet.pth"
HOKUSAI = SHARED / "data" / "styles" / "hokusai.jpg"
COCO = SHARED / "data" / "coco-sample"
CHICAGO = SHARED / "data" / "content" / "chicago.jpg"

torch.set_num_threads(min(2, torch.get_num_threads()))
#: for CLI subprocesses on tiny inputs (see `one_thread`)
SUBPROCESS_ENV = {**os.environ, "OMP_NUM_THREADS": "1"}


@pytest.fixture(scope="session", autouse=True)
def fp32_inference():
    """precision=auto means bf16 on CPUs with native bf16 (AMX) and fp32 elsewhere: in-process
    tests (session fixtures included) see fp32 on every CPU kind, so exact comparisons hold
    wherever CI runs (the choice itself is tested in test_inference.py)."""
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr("stylenet.device.cpu_has_fast_bf16", lambda: False)
        yield


@pytest.fixture(scope="session", autouse=True)
def _malloc_untouched():
    """speed=fast on a CPU tells glibc to keep freed memory (stylenet.allocator), process-wide:
    in-process tests leave the test process's malloc as it is (the forked memory probes measure
    it); test_allocator.py checks the real effect in a subprocess."""
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr("stylenet.allocator._mallopt", lambda: None)
        yield


@pytest.fixture(scope="module")
def one_thread():
    """Tiny images: OpenMP sync costs more than a second thread gains (a lot more on a busy machine)."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.fixture(scope="session")
def shared() -> Path:
    if not SQUEEZENET.is_file():
        pytest.fail(f"../shared is missing ({SHARED}); tests need it beside the repository")
    return SHARED


@pytest.fixture(autouse=True)
def _isolated_cache(tmp_path_factory, monkeypatch):
    """Style downloads go to a per-session temp cache, never the user's."""
    monkeypatch.setenv("STYLENET_CACHE", str(tmp_path_factory.getbasetemp() / "stylenet-cache"))
    monkeypatch.setenv("WANDB_MODE", "offline")


def compose(overrides: list[str] = (), config_name: str = "train", config_dir: Path = CONFIGS):
    """The Hydra config `train.py` (or another command: `config_name`, `config_dir`) would see for these overrides."""
    from hydra import compose as hydra_compose
    from hydra import initialize_config_dir

    with initialize_config_dir(config_dir=str(config_dir), version_base="1.3"):
        return hydra_compose(config_name=config_name, overrides=list(overrides))


def load_script(name: str):
    """scripts/<name>.py as a module: its `main(argv) -> exit code` runs the command in-process."""
    import importlib.util

    spec = importlib.util.spec_from_file_location(f"script_{name}", ROOT / "scripts" / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def make_images(folder: Path, n: int = 8, size: tuple[int, int] = (48, 40)) -> Path:
    """n small random-ish RGB JPEGs (smooth gradients plus noise), in a nested folder."""
    folder.mkdir(parents=True, exist_ok=True)
    g = torch.Generator().manual_seed(0)
    for i in range(n):
        base = torch.linspace(0, 1, size[0]).view(1, 1, -1) * torch.rand(3, 1, 1, generator=g)
        img = (base.expand(3, size[1], size[0]) + 0.2 * torch.rand(3, size[1], size[0], generator=g)).clamp(0, 1)
        arr = (img.permute(1, 2, 0) * 255).byte().numpy()
        sub = folder / ("a" if i % 2 else "b")
        sub.mkdir(exist_ok=True)
        Image.fromarray(arr).save(sub / f"img{i}.jpg")
    return folder


def tiny_overrides(tmp: Path, data_dir: Path, steps: int = 3) -> list[str]:
    """A real training config shrunk to seconds on a CPU: 32-px crops, slim net, SqueezeNet."""
    return [
        f"style.image={HOKUSAI}", "style.size=64",
        "data=folder", f"data.path={data_dir}", "data.image_size=32", "data.batch_size=2", "data.num_workers=0",
        "model=slim", "loss.network=squeezenet1_1", f"loss.weights={SQUEEZENET}",
        f"trainer.max_steps={steps}", "trainer.accelerator=cpu", "trainer.devices=1", "trainer.enable_progress_bar=false",
        "logger=none", f"checkpoint_dir={tmp / 'ckpt'}", "samples.size=32", "samples.num_images=2",
        "samples.every_n_train_steps=0", "checkpoint.every_n_train_steps=2",
    ]


@pytest.fixture(scope="session")
def tiny_checkpoint(tmp_path_factory) -> Path:
    """checkpoints/<style>/last.ckpt from 3 real training steps (slim model, 32 px)."""
    if not SQUEEZENET.is_file():
        pytest.fail(f"../shared is missing ({SHARED})")
    from stylenet.train import run

    tmp = tmp_path_factory.mktemp("tiny-train")
    os.environ.setdefault("STYLENET_CACHE", str(tmp / "cache"))
    cfg = compose(tiny_overrides(tmp, make_images(tmp / "photos")))
    return run(cfg, tmp / "run")


@pytest.fixture(scope="session")
def export_path(tiny_checkpoint) -> Path:
    """The style file the tiny training run exported at its end."""
    (path,) = tiny_checkpoint.parent.glob("*.safetensors")
    return path


@pytest.fixture(scope="session")
def stylizer(export_path):
    from stylenet.inference import Stylizer

    return Stylizer.load(export_path, device="cpu")
