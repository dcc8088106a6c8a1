"""Preset names → files: the user's checkpoints first, then the networks shipped in the package."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from safetensors import safe_open
from safetensors.torch import save_file

from stylenet import presets
from stylenet.commands import stylize
from stylenet.inference import Stylizer
from stylenet.modelfile import ModelLoadError, read_model_file
from stylenet.presets import describe, network_variant, resolve_model, shipped_presets
from stylenet.transformer import TransformerNet


def realtime_copy(export_path, out):
    """A model=realtime-shaped export (shuffle=2, skip) with the tiny export's metadata."""
    with safe_open(str(export_path), framework="pt") as f:
        metadata = dict(f.metadata())
    net = TransformerNet(width=8, num_residual=1, kernel=3, shuffle=2, skip=True)
    metadata["arch"] = json.dumps(net.arch())
    save_file({k: v.contiguous() for k, v in net.state_dict().items()}, str(out), metadata=metadata)
    return out


@pytest.fixture
def shipped(tmp_path, export_path, monkeypatch):
    """A presets folder holding `wave` (full and realtime) and `dots` (full only), installed as the package's."""
    folder = tmp_path / "presets"
    folder.mkdir()
    (folder / "wave.safetensors").write_bytes(export_path.read_bytes())
    realtime_copy(export_path, folder / "wave-realtime.safetensors")
    (folder / "dots.safetensors").write_bytes(export_path.read_bytes())
    monkeypatch.setattr(presets, "PRESETS_DIR", folder)
    return folder


def test_shipped_presets_lists_both_variants(shipped):
    assert shipped_presets() == {"dots": {"full": shipped / "dots.safetensors"},
                                 "wave": {"full": shipped / "wave.safetensors",
                                          "realtime": shipped / "wave-realtime.safetensors"}}
    assert network_variant(shipped / "wave-realtime.safetensors") == "realtime"
    assert network_variant(shipped / "wave.safetensors") == "full"


def test_a_name_finds_the_shipped_network_of_each_variant(shipped, tmp_path):
    roots = [tmp_path / "elsewhere"]
    assert resolve_model("wave", roots=roots) == shipped / "wave.safetensors"
    assert resolve_model("wave", roots=roots, variant="full") == shipped / "wave.safetensors"
    assert resolve_model("wave", roots=roots, variant="realtime") == shipped / "wave-realtime.safetensors"
    # auto: the real-time network on a CPU (the webcam's default)
    assert resolve_model("wave", roots=roots, variant="auto", device="cpu") == shipped / "wave-realtime.safetensors"
    (shipped / "wave.safetensors").unlink()  # a preset shipped with its real-time network only: unset takes that
    assert resolve_model("wave", roots=roots) == shipped / "wave-realtime.safetensors"
    with pytest.raises(ModelLoadError, match=r"'wave' has no full network \(it has: realtime\); use variant=realtime"):
        resolve_model("wave", roots=roots, variant="full")
    with pytest.raises(ModelLoadError, match=r"'dots' has no realtime network \(it has: full\); use variant=full"):
        resolve_model("dots", roots=roots, variant="realtime")
    with pytest.raises(ModelLoadError, match="variant=fast is not one of auto, full, realtime"):
        resolve_model("wave", roots=roots, variant="fast")
    with pytest.raises(ModelLoadError, match=r"no model file or preset named 'nope' \(shipped presets: dots, wave; "
                                             r"your exports: none under checkpoints/\)"):
        resolve_model("nope", roots=roots)


def test_the_users_own_network_wins_over_the_shipped_one(shipped, tmp_path, export_path):
    own = tmp_path / "checkpoints" / "wave" / "wave.safetensors"
    own.parent.mkdir(parents=True)
    own.write_bytes(export_path.read_bytes())
    assert resolve_model("wave", roots=[tmp_path]) == own
    assert resolve_model("wave", roots=[tmp_path], variant="auto", device="cpu") == own
    assert resolve_model("wave", roots=[tmp_path], variant="full") == own
    # asked for the real-time network by name, a full network of the user's does not answer
    assert resolve_model("wave", roots=[tmp_path], variant="realtime") == shipped / "wave-realtime.safetensors"
    assert "shipped preset wave, realtime network" in describe(shipped / "wave-realtime.safetensors")
    assert describe(own) == str(own)


def test_the_cli_loads_a_shipped_preset_and_says_which_file(shipped, tmp_path, monkeypatch, capsys):
    from PIL import Image

    monkeypatch.chdir(tmp_path)
    Image.fromarray(np.full((20, 24, 3), 128, np.uint8)).save(tmp_path / "in.png")
    assert stylize.main(["model=wave", "variant=realtime", "input=in.png", "output=out.png", "device=cpu"]) == 0
    out = capsys.readouterr().out
    assert f"model: {shipped / 'wave-realtime.safetensors'} (shipped preset wave, realtime network)" in out
    assert Image.open(tmp_path / "out.png").size == (24, 20)
    # a user's network of that name under ./checkpoints wins, and the log line names it
    own = tmp_path / "checkpoints" / "wave" / "wave.safetensors"
    own.parent.mkdir(parents=True)
    own.write_bytes((shipped / "wave.safetensors").read_bytes())
    assert stylize.main(["model=wave", "input=in.png", "output=out2.png", "device=cpu"]) == 0
    assert f"model: {own}\n" in capsys.readouterr().out


@pytest.mark.parametrize("name,variant", [(n, v) for n, vs in sorted(shipped_presets().items()) for v in sorted(vs)])
def test_every_shipped_preset_loads_in_fp32_and_paints(name, variant, shared):
    from PIL import Image

    path = shipped_presets()[name][variant]
    model = read_model_file(path)
    assert model.metadata["dtype"] == "float16" and all(t.dtype == torch.float16 for t in model.state_dict.values())
    stylizer = Stylizer.load(name, variant=variant, device="cpu", precision="fp32")
    assert stylizer.source.startswith(str(path)) and next(stylizer.net.parameters()).dtype == torch.float32
    assert network_variant(path) == variant
    photo = Image.open(shared / "data" / "content" / "chicago.jpg").convert("RGB").resize((128, 96))
    painted = np.asarray(stylizer.stylize(photo), dtype=np.float32)
    assert painted.shape == (96, 128, 3)
    # a trained style moves the photo well away from itself, and paints detail (not a flat colour)
    assert np.abs(painted - np.asarray(photo, dtype=np.float32)).mean() > 10 and painted.std() > 10


def test_the_package_ships_the_presets_it_documents():
    """The five public-domain paintings, full and realtime, fp16, about 25 MB in all at most."""
    found = shipped_presets()
    assert set(found["hokusai"]) == {"full", "realtime"}  # the first trained (docs/presets.md lists what ships)
    files = [p for variants in found.values() for p in variants.values()]
    assert sum(p.stat().st_size for p in files) < 26e6
    for name, variants in found.items():
        assert name in {"hokusai", "starry_night", "the_scream", "composition_vii", "shipwreck"}
        assert set(variants) <= {"full", "realtime"}


def test_exporting_a_shipped_preset_writes_to_the_working_folder(shipped, tmp_path, monkeypatch):
    from stylenet.commands import export

    work = tmp_path / "work"
    work.mkdir()
    monkeypatch.chdir(work)
    before = sorted(p.name for p in shipped.iterdir())
    assert export.main(["ckpt=wave", "format=safetensors"]) == 0
    assert sorted(p.name for p in shipped.iterdir()) == before  # nothing written into the package
    assert read_model_file(work / "hokusai.safetensors").arch == read_model_file(shipped / "wave.safetensors").arch
