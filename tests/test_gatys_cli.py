"""scripts/gatys.py and `benchmark.py mode=gatys`: configs, the real CLI, errors, the benchmark."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest
import torch
from hydra.errors import MissingConfigException
from PIL import Image

from stylenet.bench import gatys as bench
from stylenet import gatys
from stylenet.errors import UserError
from stylenet.imageio import load_tensor, save_image

from .conftest import CHICAGO, HOKUSAI, ROOT, SQUEEZENET, TOOLS, compose, load_script

TINY = [f"style.image={HOKUSAI}", "style.size=48", "loss.network=squeezenet1_1", f"loss.weights={SQUEEZENET}",
        "size=32", "steps=3", "progress=false"]


def gatys_cli(args, timeout=300):
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    return subprocess.run([sys.executable, "scripts/gatys.py", *args], cwd=ROOT, capture_output=True, text=True,
                          timeout=timeout, env=env)


# -- configs -------------------------------------------------------------------------------
def test_gatys_loss_preset_is_gatys_vgg19_layers():
    loss = compose([], config_name="gatys").loss
    assert loss.network == "vgg19" and loss.content_layer == "relu4_2"
    assert list(loss.style_layers) == ["relu1_1", "relu2_1", "relu3_1", "relu4_1", "relu5_1"]
    squeeze = compose(["loss.network=squeezenet1_1"], config_name="gatys").loss
    assert squeeze.content_layer.startswith("fire") and "relu1" in squeeze.style_layers
    assert compose(["loss=gatys"]).loss.content_layer == "relu4_2"  # training can use it too


def test_mode_defaults_come_from_the_mode_group_and_yield_to_overrides():
    cfg = compose(["mode=dream"], config_name="gatys")
    assert (cfg.optimizer, cfg.init, len(cfg.scales)) == ("adam", "content", 4)
    assert compose([], config_name="gatys").optimizer == "lbfgs"
    cfg = compose(["mode=invert", "steps=7", "loss.network=squeezenet1_1"], config_name="gatys")
    assert cfg.steps == 7 and cfg.init == "gray" and cfg.invert.layer == "fire3"


# -- the CLI ---------------------------------------------------------------------------------
@pytest.mark.slow
def test_cli_style_transfer_writes_the_image_and_snapshots(shared, tmp_path):
    out = tmp_path / "out" / "chicago_hokusai.png"
    proc = gatys_cli([f"content={CHICAGO}", f"output={out}", f"hydra.run.dir={tmp_path / 'run'}", "snapshot_every=2", *TINY])
    assert proc.returncode == 0, proc.stderr[-2000:]
    with Image.open(out) as image:
        assert min(image.size) == 32 and image.size[0] > image.size[1]  # chicago is landscape
    assert (tmp_path / "run" / "snapshots" / "style_00002.png").is_file()
    assert "final: content=" in proc.stdout and f"output: {out}" in proc.stdout


@pytest.mark.slow
def test_cli_missing_content_is_a_one_line_error(shared, tmp_path):
    proc = gatys_cli([f"content={tmp_path / 'nope.jpg'}", f"hydra.run.dir={tmp_path / 'run'}", *TINY])
    assert proc.returncode == 2
    assert proc.stderr.strip().splitlines()[-1].startswith("error: image not found") and "Traceback" not in proc.stderr


def test_mode_without_its_photo_and_unknown_mode_are_user_errors(shared, tmp_path):
    with pytest.raises(UserError, match="content=PATH"):
        gatys.run(compose(TINY, config_name="gatys"), tmp_path)
    with pytest.raises(MissingConfigException, match=r"mode/paint(.|\n)*dream\n\tinvert"):  # a mode is a config group
        compose(["mode=paint", *TINY], config_name="gatys")
    bad = ["mode=maximize", "maximize.layer=fire2", "maximize.channel=500", *TINY]
    with pytest.raises(UserError, match="out of range"):
        gatys.run(compose(bad, config_name="gatys"), tmp_path)


def test_sweep_writes_one_labelled_contact_sheet(shared, tmp_path):
    cfg = compose(["mode=sweep", f"content={CHICAGO}", "sweep.groups=[[relu1],[fire2,fire3]]",
                   "sweep.content_layers=[fire3,fire5]", "sweep.cumulative=true", *TINY], config_name="gatys")
    out = gatys.run(cfg, tmp_path)
    assert out == tmp_path / "sweep_hokusai.png"
    sheet = load_tensor(out)
    h, w = load_tensor(CHICAGO, 32).shape[-2:]
    assert sheet.shape[-2:] == (2 * (h + 14) + 3 * 4, 2 * w + 3 * 4)  # 2 content layers × 2 style columns
    assert gatys.sweep_columns([["a"], ["b", "c"], ["d"]], cumulative=True) == [["a"], ["a", "b", "c"], ["a", "b", "c", "d"]]


@pytest.mark.parametrize("mode", ["invert", "texture", "dream", "maximize"])
def test_every_preimage_mode_runs_from_config(shared, tmp_path, mode, capsys):
    cfg = compose([f"mode={mode}", f"content={CHICAGO}", *TINY, "size=48", "scales=[0.5,1.0]"], config_name="gatys")
    out = gatys.run(cfg, tmp_path)
    assert out.is_file() and out.parent == tmp_path
    printed = capsys.readouterr().out
    assert {"invert": "PSNR", "texture": "Gram error", "dream": "mean squared activation", "maximize": "activation"}[mode] in printed


def test_vgg19_gatys_preset_runs_with_random_weights(tmp_path, capsys):
    """The VGG path (no pretrained VGG offline): the preset's layer names exist and it optimises."""
    cfg = compose([f"content={CHICAGO}", f"style.image={HOKUSAI}", "style.size=32", "loss.weights=null", "size=32",
                   "steps=2", "progress=false", f"output={tmp_path / 'vgg.png'}"], config_name="gatys")
    assert gatys.run(cfg, tmp_path).is_file()
    assert "final: content=" in capsys.readouterr().out


# -- the benchmark -----------------------------------------------------------------------------
def test_gatys_run_reports_when_it_reaches_a_target_objective():
    target = torch.full((1, 3, 6, 6), 0.25)
    objective = lambda x: {"loss": (x - target).pow(2).sum()}  # noqa: E731 - 0.5625·108 at the gray start
    snaps, reach, trace = bench.gatys_run(objective, torch.full_like(target, 1.0), [1, 3], 10, target=1.0)
    assert reach == 2 and trace[0] == pytest.approx(0.5625 * 108) and trace[1] > 1.0 >= trace[2]
    assert sorted(snaps) == [1, 3] and snaps[3][0] >= snaps[1][0] > 0 and torch.allclose(snaps[3][1], target, atol=1e-3)
    assert bench.gatys_run(objective, torch.full_like(target, 1.0), [1], 10, target=-1.0)[1] is None  # never


def test_benchmark_scores_both_methods_with_the_training_loss(tiny_checkpoint, tmp_path, capsys):
    from stylenet.module import StyleTransferModule

    photo = save_image(load_tensor(CHICAGO, 32)[..., :32, :32], tmp_path / "square.png")
    argv = [f"model={tiny_checkpoint}", f"content={photo}", "sizes=[32]", "iterations=[2,4]", "repeats=1",
            f"output={tmp_path / 'side.png'}"]
    rows = bench.run(compose(["mode=gatys"] + argv, config_name="benchmark", config_dir=TOOLS))
    assert [(r["method"], r["iters"]) for r in rows] == [("network", "-"), ("gatys", 2), ("gatys", 4)]
    assert (tmp_path / "side.png").is_file()
    assert "speedup" in capsys.readouterr().out
    # the network's objective is the training loss of the module, same weights and targets
    module = StyleTransferModule.load_from_checkpoint(tiny_checkpoint, map_location="cpu")
    with torch.no_grad():
        expected = module.compute_losses(load_tensor(photo))["loss"].item()
    assert rows[0]["loss"] == pytest.approx(expected, rel=1e-3)
    assert rows[2]["loss"] < rows[1]["loss"] and rows[2]["seconds"] >= rows[1]["seconds"] > 0


def test_benchmark_bad_model_is_exit_2(tmp_path, capsys):
    benchmark = load_script("benchmark")
    assert benchmark.main(["mode=gatys", f"model={tmp_path / 'missing.ckpt'}"]) == 2
    assert "error: model file not found" in capsys.readouterr().err
    assert benchmark.main(["mode=paint"]) != 0  # the config group `mode` has no `paint`: the error names it and the modes
    err = capsys.readouterr().err
    assert "paint" in err and "gatys" in err and "Traceback" not in err
    assert benchmark.main([]) == 2 and "error: pick a benchmark: python scripts/benchmark.py mode=" in capsys.readouterr().err
