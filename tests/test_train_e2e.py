"""End-to-end: the real `train.py` CLI for a handful of steps, resume, DDP, loggers, bad input."""

import csv
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

from stylenet.module import StyleTransferModule
from stylenet.imageio import load_tensor

from .conftest import HOKUSAI, ROOT, SQUEEZENET, compose, make_images, tiny_overrides

pytestmark = pytest.mark.slow


def train_cli(args, env=None, timeout=300, **kw):
    full_env = {**os.environ, "PYTHONUNBUFFERED": "1", **(env or {})}
    return subprocess.run([sys.executable, "train.py", *args], cwd=ROOT, capture_output=True, text=True,
                          timeout=timeout, env=full_env, **kw)


@pytest.fixture(scope="module")
def photos(tmp_path_factory):
    return make_images(tmp_path_factory.mktemp("photos"), n=8)


def tiny_cli(tmp_path, photos, steps=3, extra=()):
    return [*tiny_overrides(tmp_path, photos, steps), f"hydra.run.dir={tmp_path / 'run'}", *extra]


def read_metrics(run_dir: Path) -> list[dict]:
    with open(run_dir / "csv" / "metrics.csv") as f:
        return list(csv.DictReader(f))


def load_ckpt(path):
    return torch.load(path, map_location="cpu", weights_only=True)  # never unpickles code


def test_cli_trains_and_writes_checkpoint_metrics_and_grid(tmp_path, photos, shared):
    proc = train_cli(tiny_cli(tmp_path, photos, steps=4, extra=["logger=csv", "samples.every_n_train_steps=2", "trainer.log_every_n_steps=1"]))
    assert proc.returncode == 0, proc.stderr[-3000:]
    ckpt = load_ckpt(tmp_path / "ckpt" / "last.ckpt")
    assert ckpt["global_step"] == 4
    assert not any(k.startswith("lossnet.") for k in ckpt["state_dict"])  # the frozen network stays out
    assert ckpt["hyper_parameters"]["style_name"] == "hokusai"
    rows = read_metrics(tmp_path / "run")
    assert "train/loss" in rows[0] and "train/style" in rows[0] and "train/content" in rows[0]
    grids = sorted((tmp_path / "run" / "samples").glob("step_*.png"))
    assert [g.name for g in grids] == ["step_000002.png", "step_000004.png"]
    grid = load_tensor(grids[-1])
    assert grid.shape[-2] > 2 * 32  # photos row above stylized row


def test_random_vgg16_runs_end_to_end(tmp_path, photos):
    args = [a for a in tiny_cli(tmp_path, photos, steps=2) if not a.startswith("loss.")]
    proc = train_cli([*args, "loss.network=vgg16", "loss.weights=null"])
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert load_ckpt(tmp_path / "ckpt" / "last.ckpt")["hyper_parameters"]["loss"]["network"] == "vgg16"


def test_killed_run_resumes_and_step_counter_continues(tmp_path, photos):
    args = tiny_cli(tmp_path, photos, steps=10_000, extra=["checkpoint.every_n_train_steps=3"])
    proc = subprocess.Popen([sys.executable, "train.py", *args], cwd=ROOT, stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL, env={**os.environ, "PYTHONUNBUFFERED": "1"})
    try:
        deadline = time.monotonic() + 240
        while not list((tmp_path / "ckpt").glob("step_*.ckpt")) and time.monotonic() < deadline:
            time.sleep(0.2)
        time.sleep(0.5)
    finally:
        proc.send_signal(signal.SIGKILL)
        proc.wait()
    saved = load_ckpt(tmp_path / "ckpt" / "last.ckpt")["global_step"]
    assert saved >= 3 and saved % 3 == 0
    resume = tiny_cli(tmp_path / "second", photos, steps=saved + 2,
                      extra=[f"ckpt_path={tmp_path / 'ckpt' / 'last.ckpt'}", f"checkpoint_dir={tmp_path / 'ckpt'}", "logger=csv", "trainer.log_every_n_steps=1"])
    done = train_cli(resume)
    assert done.returncode == 0, done.stderr[-3000:]
    assert load_ckpt(tmp_path / "ckpt" / "last.ckpt")["global_step"] == saved + 2
    steps = [int(r["step"]) for r in read_metrics(tmp_path / "second" / "run")]
    assert min(steps) >= saved  # logging continued from the checkpoint's step, not from 0


def test_ddp_two_cpu_processes(tmp_path, photos):
    proc = train_cli(tiny_cli(tmp_path, photos, steps=2, extra=["trainer=ddp", "trainer.devices=2", "trainer.accelerator=cpu"]),
                     env={"MASTER_PORT": str(29500 + os.getpid() % 1000)}, timeout=400)
    assert proc.returncode == 0, proc.stderr[-3000:]
    out = proc.stdout + proc.stderr
    assert "[rank 0/2]" in out and "[rank 1/2]" in out
    ckpt = load_ckpt(tmp_path / "ckpt" / "last.ckpt")
    assert ckpt["global_step"] == 2
    cfg = compose(tiny_overrides(tmp_path, photos))
    module = StyleTransferModule(cfg.model, cfg.loss, cfg.optim, cfg.speed)
    module.load_state_dict({**ckpt["state_dict"], **{f"lossnet.{k}": v for k, v in module.lossnet.state_dict().items()}})
    assert module.target_grams["fire3"].shape == (1, 128, 128)


def test_wandb_runs_offline_without_a_key(tmp_path, photos):
    env = {"HOME": str(tmp_path / "home"), "WANDB_MODE": "", "WANDB_API_KEY": "", "WANDB_DIR": str(tmp_path)}
    proc = train_cli(tiny_cli(tmp_path, photos, steps=2, extra=["logger=wandb"]), env=env, stdin=subprocess.DEVNULL)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "no API key found, logging offline" in proc.stderr
    assert list((tmp_path / "run" / "wandb").glob("offline-run-*"))


@pytest.mark.parametrize("override, message", [
    ("data.path=/nonexistent/photos", "data folder not found: /nonexistent/photos"),
    ("style.image=/nonexistent/painting.jpg", "style image not found: /nonexistent/painting.jpg"),
    ("loss.weights=/nonexistent/w.pth", "loss network weights file not found"),
    ("ckpt_path=/nonexistent/last.ckpt", "checkpoint to resume from not found"),
])
def test_bad_input_is_one_line_and_exit_2(tmp_path, photos, override, message):
    key = override.split("=")[0]
    args = [a for a in tiny_cli(tmp_path, photos) if not a.startswith(key + "=")]
    proc = train_cli([*args, override])
    assert proc.returncode == 2
    assert message in proc.stderr and "Traceback" not in proc.stderr


def test_a_few_steps_lower_the_loss(shared):
    """The training objective actually goes down on a fixed batch (real SqueezeNet)."""
    torch.manual_seed(0)
    cfg = compose(["model=slim", "loss.network=squeezenet1_1", f"loss.weights={SQUEEZENET}", "speed=reference"])
    module = StyleTransferModule(cfg.model, cfg.loss, cfg.optim, cfg.speed, style_image=load_tensor(HOKUSAI, 128))
    batch = load_tensor(shared / "data" / "content" / "chicago.jpg", 64)[..., :64, :64].repeat(2, 1, 1, 1)
    # a fixed step size: the recipe's optim.lr is a peak reached after its warm-up (optim.warmup_steps)
    opt = torch.optim.Adam(module.transformer.parameters(), lr=1e-3)
    losses = []
    for _ in range(20):
        loss = module.compute_losses(batch)["loss"]
        opt.zero_grad()
        loss.backward()
        opt.step()
        losses.append(loss.item())
    assert losses[-1] < 0.5 * losses[0]
