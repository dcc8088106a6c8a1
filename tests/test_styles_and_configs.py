import shutil
import subprocess
import sys
import time

import pytest
import yaml

from stylenet.lossnet import layer_names
from stylenet.styles import StyleError, cache_dir, cached_path, preset_names, resolve_style_image, sha256_of

from .conftest import CONFIGS, HOKUSAI, ROOT, SHARED, compose

PRESETS = ["hokusai", "starry_night", "the_scream", "composition_vii", "shipwreck", "candy", "mosaic"]


def test_presets_exist():
    assert sorted(PRESETS) == preset_names()


@pytest.mark.parametrize("name", PRESETS)
def test_preset_hash_matches_the_public_file(shared, name):
    cfg = yaml.safe_load((CONFIGS / "style" / f"{name}.yaml").read_text())
    assert cfg["name"] == name and cfg["url"].startswith("https://")
    assert sha256_of(SHARED / "data" / "styles" / f"{name}.jpg") == cfg["sha256"]


@pytest.mark.parametrize("name", PRESETS)
@pytest.mark.parametrize("network", ["vgg16", "vgg19", "squeezenet1_1"])
def test_every_preset_composes_for_every_network(name, network):
    cfg = compose([f"style={name}", f"loss.network={network}"])
    assert cfg.style.name == name and cfg.checkpoint_dir == f"checkpoints/{name}"
    names = layer_names(network)
    assert cfg.loss.content_layer in names
    assert set(cfg.loss.style_layers) <= set(names) and len(cfg.loss.style_layers) >= 3
    assert cfg.loss.style_weight > 0 and cfg.loss.tv_weight >= 0


def test_paper_defaults():
    cfg = compose([])
    assert cfg.loss.network == "vgg16" and cfg.loss.content_layer == "relu2_2"
    assert list(cfg.loss.style_layers) == ["relu1_2", "relu2_2", "relu3_3", "relu4_3"]
    assert cfg.data.batch_size == 4 and cfg.data.image_size == 256 and cfg.trainer.max_epochs == 2
    assert cfg.model.num_residual == 5 and cfg.logger._target_ == "stylenet.loggers.wandb_logger"


def test_a_presets_weight_reaches_the_loss(tmp_path):
    """`style.weight` scales loss.style_weight through one function (`losses.style_scale`),
    recorded in the checkpoint's loss as `style_scale`, as always."""
    from stylenet.train import build

    from .conftest import make_images, tiny_overrides

    cfg = compose([*tiny_overrides(tmp_path, make_images(tmp_path / "photos")), "style=the_scream", f"style.image={HOKUSAI}"])
    assert cfg.style.weight == 0.6 and "style_scale" not in cfg.loss  # not a second route through the YAML
    _, module, _ = build(cfg, tmp_path / "run")
    assert module.hparams.loss["style_scale"] == 0.6
    assert module.loss_weights["style_weight"] == pytest.approx(0.6 * float(cfg.loss.style_weight))


def test_layer_override_wins():
    cfg = compose(["loss.content_layer=relu3_3", "loss.network=vgg19"])
    assert cfg.loss.content_layer == "relu3_3"


def test_cached_preset_is_verified_and_used(shared):
    from omegaconf import OmegaConf

    style = OmegaConf.load(CONFIGS / "style" / "hokusai.yaml")
    dest = cached_path("hokusai", style.url)
    dest.parent.mkdir(parents=True, exist_ok=True)
    shutil.copy(HOKUSAI, dest)
    assert resolve_style_image(style) == dest and dest.parent == cache_dir()


def test_corrupt_cache_is_refetched_and_offline_says_how_to_fix(monkeypatch):
    from omegaconf import OmegaConf

    for var in ("https_proxy", "HTTPS_PROXY"):
        monkeypatch.setenv(var, "http://127.0.0.1:9")
    style = OmegaConf.load(CONFIGS / "style" / "starry_night.yaml")
    dest = cached_path("starry_night", style.url)
    dest.parent.mkdir(parents=True, exist_ok=True)
    dest.write_bytes(b"half a file")
    start = time.monotonic()
    with pytest.raises(StyleError, match="could not download style image.*style.image=PATH"):
        resolve_style_image(style)
    assert time.monotonic() - start < 15
    assert not dest.exists()  # the bad copy is gone, nothing half-written replaced it


def test_missing_style_image_lists_presets(tmp_path):
    with pytest.raises(StyleError, match="style image not found.*hokusai"):
        resolve_style_image({"name": "x", "image": str(tmp_path / "nope.jpg")})


def test_unknown_preset_on_the_command_line_lists_presets():
    proc = subprocess.run([sys.executable, "train.py", "style=nope"], cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert proc.returncode == 2 and proc.stderr.count("error:") == 1 and "Traceback" not in proc.stderr
    assert "style=nope: no such style" in proc.stderr and "hokusai" in proc.stderr and "starry_night" in proc.stderr


def test_verified_local_mirror_fills_the_cache(shared, tmp_path):
    from omegaconf import OmegaConf

    style = OmegaConf.load(CONFIGS / "style" / "the_scream.yaml")
    decoy = tmp_path / "decoy"
    decoy.mkdir()
    (decoy / "the_scream.jpg").write_bytes(b"same name, other bytes")
    dest = cached_path("the_scream", style.url)
    dest.unlink(missing_ok=True)
    path = resolve_style_image(style, mirrors=[decoy, SHARED / "data" / "styles"])
    assert path == dest and sha256_of(path) == style.sha256


def test_a_tools_style_option_takes_a_preset_name_or_a_file(shared, tmp_path):
    """`style=hokusai` in the benchmarks and the gallery: the preset composed as training composes
    it, its image found in the mirrors (the shared folder) by its sha256; a file is taken as it is."""
    from stylenet.commands.app import style_image
    from stylenet.styles import StyleError, sha256_of

    path = style_image("hokusai")
    assert sha256_of(path) == sha256_of(shared / "data" / "styles" / "hokusai.jpg")
    assert style_image(shared / "data" / "styles" / "candy.jpg") == shared / "data" / "styles" / "candy.jpg"
    with pytest.raises(StyleError, match="neither an image file nor a preset"):
        style_image(tmp_path / "nope.jpg")
