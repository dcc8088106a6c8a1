"""Quality tools: the matched-Gatys-iterations benchmark, the lr schedule, init_from, the gallery."""

import subprocess
import sys

import pytest
import torch
from PIL import Image

from stylenet.bench import quality
from stylenet.module import lr_schedule

from .conftest import CHICAGO, HOKUSAI, ROOT, SUBPROCESS_ENV, TOOLS, compose, make_images, tiny_overrides


def test_gatys_match_known_answers():
    target_image = torch.full((1, 3, 8, 8), 0.25)

    def objective(image):
        loss = (image - target_image).pow(2).mean()
        return {"loss": loss}

    x0 = torch.full((1, 3, 8, 8), 0.75)
    start = float(objective(x0)["loss"])
    k, image = quality.gatys_match(objective, x0, target=start, max_iterations=10)
    assert k == 0 and torch.equal(image, x0)  # a network that returns the photo: matched at iteration 0
    k, image = quality.gatys_match(objective, x0, target=start / 100, max_iterations=50)
    assert k is not None and 1 <= k <= 50
    assert float(objective(image)["loss"]) <= start / 100
    k, _ = quality.gatys_match(objective, x0, target=-1.0, max_iterations=3)  # unreachable
    assert k is None


def test_median_counts_unmatched_as_above_the_cap():
    rows = [{"matched": 3}, {"matched": None}, {"matched": None}]
    assert quality.median_matched(rows, cap=20) == ">20"
    assert quality.median_matched([{"matched": 3}, {"matched": 9}, {"matched": None}], cap=20) == "9"


@pytest.mark.parametrize("which", ["export", "ckpt"])
def test_quality_benchmark_prints_rows_and_median(which, export_path, tiny_checkpoint, tmp_path, capsys, one_thread):
    model = export_path if which == "export" else tiny_checkpoint
    cfg = compose(["mode=quality"] + [f"model={model}", f"content={CHICAGO}", "size=32", "max_iterations=4", f"style={HOKUSAI}",
                   "style_size=64", f"output={tmp_path / 'side.png'}"], config_name="benchmark", config_dir=TOOLS)
    rows = quality.run(cfg)
    out = capsys.readouterr().out
    assert len(rows) == 1 and rows[0]["image"] == "chicago.jpg"
    assert rows[0]["loss"] == pytest.approx(rows[0]["content"] + rows[0]["style"] + rows[0]["tv"], rel=1e-4)
    assert out.strip().splitlines()[-1].startswith("median Gatys iterations matched: ")
    assert (tmp_path / "side.png").is_file()


def test_quality_command_exits_0_after_printing_the_median(export_path, capsys, one_thread):
    from .conftest import load_script

    code = load_script("benchmark").main(["mode=quality", f"model={export_path}", f"content={CHICAGO}", "size=32",
                                          "max_iterations=2", f"style={HOKUSAI}", "style_size=64"])
    out = capsys.readouterr().out
    assert code == 0 and out.strip().splitlines()[-1].startswith("median Gatys iterations matched: ")
    where = out.splitlines()[0]  # every table says where it ran
    assert where.startswith("where: CPU ") and " threads; GPU " in where and "cores" in where


def test_quality_curve_over_a_folder_of_checkpoints(tiny_checkpoint, tmp_path, capsys, one_thread):
    folder = tiny_checkpoint.parent  # step_000002.ckpt and last.ckpt (3 steps) of the tiny run
    cfg = compose(["mode=quality",
                   f"model={folder}", f"content={CHICAGO}", "size=32", "max_iterations=3", f"plot={tmp_path / 'curve.png'}"],
                  config_name="benchmark", config_dir=TOOLS)
    curve = quality.run(cfg)
    out = capsys.readouterr().out
    assert [r["steps"] for r in curve] == [2, 3]
    assert [r["model"] for r in curve] == ["step_000002.ckpt", "last.ckpt"]
    assert "median matched" in out and out.count("median Gatys iterations matched: ") == 2
    with Image.open(tmp_path / "curve.png") as image:
        assert image.format == "PNG" and image.width > 300


def test_quality_curves_of_two_runs_on_one_chart(tiny_checkpoint, tmp_path, capsys, one_thread):
    import shutil

    for run, name in (("recipe-a", "step_000002.ckpt"), ("recipe-b", "step_000002.ckpt"), ("recipe-b", "last.ckpt")):
        (tmp_path / run).mkdir(exist_ok=True)
        shutil.copy(tiny_checkpoint.parent / name, tmp_path / run / name)
    cfg = compose(["mode=quality"] + [f"model=[{tmp_path / 'recipe-b'},{tmp_path / 'recipe-a'}]", f"content={CHICAGO}", "size=32",
                   "max_iterations=3", f"plot={tmp_path / 'curves.png'}"], config_name="benchmark", config_dir=TOOLS)
    curve = quality.run(cfg)
    assert [(r["run"], r["steps"]) for r in curve] == [("recipe-b", 2), ("recipe-b", 3), ("recipe-a", 2)]  # as listed
    table = capsys.readouterr().out.split("median matched\n")[-1]
    assert [line.split()[0] for line in table.splitlines()[1:4]] == ["recipe-b", "recipe-b", "recipe-a"]
    with Image.open(tmp_path / "curves.png") as image:
        assert image.format == "PNG"


def test_quality_curve_scores_last_ckpt_once_when_it_is_the_final_step(tiny_checkpoint, tmp_path):
    """A run that ends on a checkpoint step leaves last.ckpt = step_N.ckpt: one point, not two."""
    import shutil

    for name in ("step_000002.ckpt", "last.ckpt"):
        shutil.copy(tiny_checkpoint.parent / name, tmp_path / name)
    shutil.copy(tiny_checkpoint.parent / "last.ckpt", tmp_path / "step_000003.ckpt")
    assert [p.name for p in quality.model_paths(str(tmp_path))] == ["step_000002.ckpt", "step_000003.ckpt"]
    (tmp_path / "step_000003.ckpt").unlink()  # last.ckpt is newer than every step file: kept
    assert [p.name for p in quality.model_paths(str(tmp_path))] == ["step_000002.ckpt", "last.ckpt"]
    (tmp_path / "last.ckpt").write_bytes(b"not a checkpoint")  # kept, so that scoring it says what is wrong
    assert [p.name for p in quality.model_paths(str(tmp_path))] == ["step_000002.ckpt", "last.ckpt"]


def test_lr_schedule_warmup_then_cosine():
    param = torch.nn.Parameter(torch.zeros(1))
    adam = torch.optim.Adam([param], lr=1e-3)
    schedule = lr_schedule(adam, {"lr": 1e-3, "warmup_steps": 10, "warmup_start": 0.01, "schedule": "cosine",
                                  "min_lr_ratio": 0.1}, total_steps=110)
    lrs = []
    for _ in range(110):
        lrs.append(adam.param_groups[0]["lr"])
        adam.step()
        schedule.step()
    assert lrs[0] == pytest.approx(1e-5)
    assert max(lrs) == pytest.approx(1e-3) and lrs.index(max(lrs)) == 10
    assert lrs[-1] == pytest.approx(1e-4, rel=0.05)
    assert lr_schedule(adam, {"lr": 1e-3}, total_steps=100) is None  # plain constant lr: no scheduler
    with pytest.raises(ValueError, match="optim.schedule"):
        lr_schedule(adam, {"lr": 1e-3, "schedule": "linear"}, total_steps=10)


def test_init_from_copies_the_network_and_rejects_another_architecture(export_path, tmp_path):
    from stylenet.modelfile import ModelLoadError, build_network, read_model_file
    from stylenet.train import build

    photos = make_images(tmp_path / "photos", n=4)
    _, module, _ = build(compose([*tiny_overrides(tmp_path, photos), f"init_from={export_path}"]), tmp_path / "run")
    exported = build_network(read_model_file(export_path)).state_dict()
    started = module.transformer.state_dict()
    assert started.keys() == exported.keys()
    for key, value in exported.items():
        torch.testing.assert_close(started[key], value)
    with pytest.raises(ModelLoadError, match="differs from this run's model"):
        build(compose([*tiny_overrides(tmp_path, photos), f"init_from={export_path}", "model=johnson"]), tmp_path / "run2")


def test_init_from_a_file_that_predates_an_arch_option(export_path, tmp_path):
    """The presets were exported before `skip` existed: their arch omits it, meaning its default
    (off), and the run's model config says skip: false. That is the same network."""
    import json

    from safetensors import safe_open
    from safetensors.torch import save_file

    from stylenet.modelfile import ModelLoadError
    from stylenet.train import build

    with safe_open(str(export_path), "pt") as f:
        metadata = dict(f.metadata())
        tensors = {key: f.get_tensor(key) for key in f.keys()}
    arch = json.loads(metadata["arch"])
    arch.pop("skip", None), arch.pop("kernel", None)
    old = tmp_path / "old.safetensors"
    save_file(tensors, str(old), metadata={**metadata, "arch": json.dumps(arch)})
    photos = make_images(tmp_path / "photos", n=4)
    _, module, _ = build(compose([*tiny_overrides(tmp_path, photos), f"init_from={old}", "model.skip=false"]), tmp_path / "run")
    torch.testing.assert_close(module.transformer.state_dict()["encoder.0.1.weight"], tensors["encoder.0.1.weight"])
    with pytest.raises(ModelLoadError, match=r"skip=False \(this run: True\)"):
        build(compose([*tiny_overrides(tmp_path, photos), f"init_from={old}", "model.skip=true"]), tmp_path / "run2")


@pytest.mark.slow
def test_gallery_cli_writes_a_small_jpeg(export_path, tmp_path):
    photos = make_images(tmp_path / "photos", n=2, size=(64, 48))
    out = tmp_path / "gallery.jpg"
    content = ",".join(str(p) for p in sorted(photos.rglob("*.jpg")))
    proc = subprocess.run([sys.executable, "scripts/gallery.py", f"models=[{export_path},{export_path}]", f"content=[{content}]",
                           f"styles=[{HOKUSAI},{HOKUSAI}]", f"output={out}", "cell=64", "max_kb=30", "device=cpu"],
                          cwd=ROOT, capture_output=True, text=True, env=SUBPROCESS_ENV, timeout=120)
    assert proc.returncode == 0, proc.stderr[-2000:]
    with Image.open(out) as image:
        assert image.format == "JPEG"
        assert image.width == 3 * (64 + 4) + 4 and image.height == 3 * (64 + 4) + 4 + 18
    assert out.stat().st_size <= 30 * 1024
    bad = subprocess.run([sys.executable, "scripts/gallery.py", "models=[nope]", f"output={tmp_path / 'x.jpg'}"],
                         cwd=ROOT, capture_output=True, text=True, env=SUBPROCESS_ENV, timeout=60)
    assert bad.returncode == 2 and bad.stderr.startswith("error: ") and not (tmp_path / "x.jpg").exists()


def test_loss_weights_file_is_recorded_absolute(tmp_path, monkeypatch):
    """Checkpoints and exports name their loss network file: relative to the training's
    folder it would not be found by a benchmark run elsewhere."""
    from stylenet.train import build

    from .conftest import SQUEEZENET

    monkeypatch.chdir(SQUEEZENET.parent)
    photos = make_images(tmp_path / "photos", n=4)
    _, module, _ = build(compose([*tiny_overrides(tmp_path, photos), f"loss.weights={SQUEEZENET.name}"]), tmp_path / "run")
    assert module.hparams.loss["weights"] == str(SQUEEZENET.resolve())


def test_gatys_init_noise_starts_from_seeded_white_noise(export_path, capsys, monkeypatch, one_thread):
    starts = []

    def fake_match(objective, x0, target, max_iterations, history_size=100):
        starts.append(x0.clone())
        return 0, x0

    monkeypatch.setattr(quality, "gatys_match", fake_match)
    base = [f"model={export_path}", f"content={CHICAGO}", "size=32", "max_iterations=2", f"style={HOKUSAI}", "style_size=64"]
    for init in ("photo", "noise", "noise"):
        quality.run(compose(["mode=quality"] + base + [f"gatys_init={init}"], config_name="benchmark", config_dir=TOOLS))
    header = [line for line in capsys.readouterr().out.splitlines() if line.startswith("model ")]
    assert "L-BFGS from the photo" in header[0] and "L-BFGS from white noise" in header[1]
    photo, noise, again = starts
    assert noise.shape == photo.shape and 0 <= float(noise.min()) and float(noise.max()) <= 1
    assert float((noise - photo).abs().mean()) > 0.2  # not the photo: independent uniform noise
    assert torch.equal(noise, again)  # seeded: the same start every run


def test_gatys_init_must_be_photo_or_noise(export_path, one_thread):
    from stylenet.errors import UserError

    cfg = compose(["mode=quality"] + [f"model={export_path}", f"content={CHICAGO}", "size=32", "max_iterations=2", f"style={HOKUSAI}",
                   "style_size=64", "gatys_init=zeros"], config_name="benchmark", config_dir=TOOLS)
    with pytest.raises(UserError, match="gatys_init=photo or gatys_init=noise"):
        quality.run(cfg)
