"""Output safety (issue 26, item 1): a name from a file never places an output outside the
output folder, a folder run never writes two inputs to one output nor over its input, empty
paths are errors, and only regular files are read (a FIFO is refused, not waited on)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest
import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from PIL import Image

from stylenet.commands import stylize as stylize_command
from stylenet.commands.stylize import folder_plan, named_output
from stylenet.outputs import (MAX_NAME_BYTES, NAME_BYTES, OutputError, fit_name, inside, output_file, plan, readable,
                              require_path, safe_name)

from .conftest import ROOT, SUBPROCESS_ENV

SETTINGS = settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])

#: what an attacker writes into a style name or a metadata value
HOSTILE = st.one_of(
    st.text(max_size=40),
    st.text(alphabet=st.characters(codec="utf-8"), min_size=200, max_size=400),  # over 255 bytes
    st.builds(lambda n, tail: "../" * n + tail, st.integers(1, 12), st.text(max_size=20)),
    st.builds(lambda tail: "/" + tail, st.text(max_size=30)),  # absolute
    st.builds(lambda a, b: f"{a}\0{b}", st.text(max_size=10), st.text(max_size=10)),  # NUL
    st.builds(lambda a, b: f"{a}\\..\\{b}", st.text(max_size=10), st.text(max_size=10)),  # Windows separators
    st.sampled_from(["", ".", "..", "...", "/", "//", "~", "~root", "-rf", ".hidden", "CON", "nul.txt", "a/../../b",
                     "\u2603/\u202e..", "./.", "\n", " ", "C:\\Windows\\x", "\x00", "style\x00/../../etc/passwd"]),
)


def run_cli(*args, timeout: float = 120) -> subprocess.CompletedProcess:
    """`python scripts/stylize.py ...`: the real command line, in a fresh interpreter."""
    return subprocess.run([sys.executable, str(ROOT / "scripts" / "stylize.py"), "progress=false", "device=cpu", *map(str, args)],
                          capture_output=True, text=True, timeout=timeout, env=SUBPROCESS_ENV, cwd=ROOT)


def model_file(path: Path, style_name: str, styles: list[str] | None = None) -> Path:
    """A valid export of a very narrow network whose metadata says what the test wants."""
    from safetensors.torch import save_file

    from stylenet.modelfile import FORMAT, FORMAT_VERSION
    from stylenet.transformer import TransformerNet

    torch.manual_seed(0)
    net = TransformerNet(2, 0, num_styles=len(styles) if styles else 1)
    metadata = {"format": FORMAT, "format_version": str(FORMAT_VERSION), "style_name": style_name,
                "arch": json.dumps({"class": "TransformerNet", **net.arch()})}
    if styles:
        metadata["styles"] = json.dumps(styles)
    save_file({k: v.contiguous() for k, v in net.state_dict().items()}, str(path), metadata=metadata)
    return path


def picture(path: Path, size=(20, 14), value: int = 90) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(np.full((size[1], size[0], 3), value, np.uint8)).save(path)
    return path


def snapshot(folder: Path) -> dict[str, bytes]:
    """Every file under `folder` with its bytes: what "untouched" is compared against."""
    return {str(p.relative_to(folder)): p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()}


@pytest.fixture(scope="module")
def narrow_model(tmp_path_factory) -> Path:
    return model_file(tmp_path_factory.mktemp("model") / "narrow.safetensors", "narrow")


# -- names from files ------------------------------------------------------------------------------
@given(name=HOSTILE)
@SETTINGS
def test_a_name_from_a_file_is_one_harmless_component(name):
    safe = safe_name(name)
    assert safe and safe not in (".", "..") and not safe.startswith((".", "-"))
    assert not set(safe) & set("/\\\0:\n") and safe.isascii() and safe.isprintable()
    assert len(safe.encode()) <= NAME_BYTES
    assert Path(safe).name == safe and len(Path(safe).parts) == 1
    assert safe_name(safe) == safe  # already safe names stay as they are


@given(style=HOSTILE, stem=st.text(alphabet=st.characters(codec="utf-8", exclude_characters="/\0"), min_size=1, max_size=300))
@SETTINGS
def test_a_planned_output_stays_inside_the_output_folder(style, stem, tmp_path):
    """`output=DIR/`: DIR/<photo>_<style>.png for any style name and any photo name, never elsewhere."""
    out = named_output(tmp_path / "out", Path(f"/photos/{stem}.jpg"), style)
    assert out.parent == tmp_path / "out" and out.suffix == ".png" and len(os.fsencode(out.name)) <= MAX_NAME_BYTES
    assert Path(os.path.realpath(out)).parent == Path(os.path.realpath(tmp_path / "out"))
    ((_, planned),) = plan([(Path("/photos/x.jpg"), out)], tmp_path / "out")
    assert planned == out


@given(style=HOSTILE, styles=st.lists(HOSTILE, min_size=2, max_size=3, unique=True))
@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
def test_metadata_names_and_blends_stay_inside(style, styles, tmp_path):
    """The label of a model's style or of a blend (both from metadata) as a file name."""
    from stylenet.inference import Stylizer
    from stylenet.transformer import TransformerNet

    single = Stylizer(TransformerNet(2, 0), metadata={"style_name": style}, device="cpu")
    multi = Stylizer(TransformerNet(2, 0, num_styles=len(styles)), metadata={"style_name": style, "styles": json.dumps(styles)},
                     device="cpu")
    labels = [single.label(), multi.label(styles[-1]), multi.label({styles[0]: 0.3, styles[1]: 0.7})]
    for label in labels:
        out = named_output(tmp_path, Path("photo.jpg"), label)
        assert out.parent == tmp_path and inside(tmp_path, out) == out


@given(style=HOSTILE)
@settings(max_examples=20, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
def test_export_names_and_webcam_snapshots_stay_in_their_folder(style, tmp_path):
    from stylenet.export import default_path
    from stylenet.gatys import default_output
    from stylenet.video import save_snapshot
    from omegaconf import OmegaConf

    model = SimpleNamespace(path=tmp_path / "ckpt" / "last.ckpt", style_name=style)
    for suffix in (".safetensors", ".onnx", ".torchscript.pt"):
        path = default_path(model, suffix)
        assert path.parent == tmp_path / "ckpt" and path.name.endswith(suffix) and len(path.name.encode()) <= MAX_NAME_BYTES
    cfg = OmegaConf.create({"mode": "style", "style": {"name": style}, "invert": {"layer": 1}, "dream": {"layer": 1},
                            "maximize": {"layer": 1, "channel": 1}})
    assert default_output(cfg, tmp_path / "run").parent == tmp_path / "run"
    shot = save_snapshot(np.zeros((4, 6, 3), np.uint8), tmp_path / "shots", style)
    assert shot.parent == tmp_path / "shots" and shot.is_file()
    assert {p.parent for p in tmp_path.rglob("*.png")} == {tmp_path / "shots"}
    shot.unlink()


def test_sanitiser_examples():
    assert safe_name("../../etc/passwd") == "etc_passwd"
    assert safe_name("hokusai70+the_scream30") == "hokusai70+the_scream30"  # a blend's label stays readable
    assert safe_name("..") == safe_name("") == safe_name(None) == "style"
    assert safe_name("CON") == "_CON" and safe_name("nul.png") == "_nul.png"
    assert len(safe_name("x" * 1000)) == NAME_BYTES
    assert fit_name("é" * 200, "_hokusai.png").endswith("_hokusai.png")  # cut on a character boundary
    assert len(fit_name("é" * 200, "_hokusai.png").encode()) <= MAX_NAME_BYTES


def test_a_link_out_of_the_output_folder_is_refused(tmp_path):
    (tmp_path / "out").mkdir()
    (tmp_path / "elsewhere").mkdir()
    (tmp_path / "out" / "link").symlink_to(tmp_path / "elsewhere")
    with pytest.raises(OutputError, match=r"outside the output folder"):
        plan([(tmp_path / "a.jpg", tmp_path / "out" / "link" / "a.png")], tmp_path / "out")
    with pytest.raises(OutputError, match=r"outside the output folder"):
        inside(tmp_path / "out", tmp_path / "out" / ".." / "x.png")


# -- the whole mapping first -----------------------------------------------------------------------
SUFFIXES = [".png", ".gif", ".jpg", ".mpg", ".mp4", ".wmv", ".gif.png", ".mpg.mp4", ".PNG"]


@given(names=st.lists(st.tuples(st.sampled_from(["a", "b", "sub/a", "a.gif"]), st.sampled_from(SUFFIXES)), min_size=1, max_size=8,
                      unique=True))
@settings(max_examples=60, deadline=None)
def test_a_folder_plan_never_maps_two_inputs_to_one_output(names):
    """Any mix of names that may collide (x.gif/x.png, x.mpg/x.mp4, x.gif.png): the plan is
    refused, or each input has its own output, inside the output folder, none onto an input."""
    with tempfile.TemporaryDirectory() as tmp:
        src, dst = Path(tmp) / "in", Path(tmp) / "out"
        for stem, suffix in names:
            (src / f"{stem}{suffix}").parent.mkdir(parents=True, exist_ok=True)
            (src / f"{stem}{suffix}").write_bytes(b"x")
        try:
            mapping, skipped = folder_plan(src, dst)
        except OutputError as exc:
            assert "would both be written to" in str(exc)
            assert not dst.exists()
            return
        outs = [os.path.normcase(out) for _, out in mapping]
        assert len(set(outs)) == len(outs) == len({src / f"{s}{x}" for s, x in names}) and not skipped
        assert all(out.is_relative_to(dst) for _, out in mapping) and not dst.exists()


def test_collision_fallbacks_and_the_collision_that_is_refused(tmp_path):
    src = tmp_path / "in"
    src.mkdir()
    for name in ("a.mpg", "a.mp4", "b.gif", "b.png", "c.gif"):
        (src / name).write_bytes(b"x")
    mapping, _ = folder_plan(src, tmp_path / "out")
    assert {s.name: o.name for s, o in mapping} == {"a.mpg": "a.mpg.mp4", "a.mp4": "a.mp4", "b.gif": "b.gif.png", "b.png": "b.png",
                                                    "c.gif": "c.png"}
    (src / "b.gif.png").write_bytes(b"x")  # now b.gif has nowhere to go
    with pytest.raises(OutputError, match=r"b.gif.*b.gif.png would both be written to .*b.gif.png|b.gif.png and .*b.gif would both"):
        folder_plan(src, tmp_path / "out")


def test_outputs_in_or_onto_the_input_are_refused(tmp_path):
    src = tmp_path / "in"
    picture(src / "a.png")
    for dst in (src, src / "styled", src / "." / "deeper" / ".."):
        with pytest.raises(OutputError, match=r"inside input="):
            folder_plan(src, dst)
    with pytest.raises(OutputError, match=r"would replace the input"):
        plan([(src / "a.png", src / "a.png")], src)
    with pytest.raises(OutputError, match=r"is the input itself"):
        output_file(src / "a.png", sources=[src / "a.png"])
    assert output_file(src / "a.png", sources=[src / "a.png"], replace_input=True) == src / "a.png"
    picture(tmp_path / "out" / "a.png")
    with pytest.raises(OutputError, match=r"exist already.*overwrite=true"):
        folder_plan(src, tmp_path / "out")
    assert folder_plan(src, tmp_path / "out", overwrite=True)[0] == [(src / "a.png", tmp_path / "out" / "a.png")]
    (tmp_path / "out2" / "a.png").mkdir(parents=True)  # a folder in the way: even overwrite=true does not remove it
    with pytest.raises(OutputError, match=r"a folder of that name is in the way"):
        folder_plan(src, tmp_path / "out2", overwrite=True)


@pytest.mark.parametrize("value", ["", "  ", None, "a\0b"])
def test_empty_paths_are_errors(value):
    with pytest.raises(OutputError, match=r"is empty|NUL"):
        require_path(value, "input")
    with pytest.raises(OutputError, match=r"is empty|NUL"):
        output_file(value)


def test_empty_input_or_output_leaves_the_current_folder_alone(narrow_model, tmp_path, monkeypatch, capsys):
    """`input=$UNSET output=$UNSET` used to stylize every image of the current folder in place."""
    picture(tmp_path / "a.png")
    picture(tmp_path / "sub" / "b.jpg")
    before = snapshot(tmp_path)
    monkeypatch.chdir(tmp_path)
    for args in (["input=", "output="], ["input=", "output=out/"], ["input=.", "output="], ["input= ", "output=x.png"]):
        assert stylize_command.main([f"model={narrow_model}", *args, "progress=false", "device=cpu"]) == 2
        err = capsys.readouterr().err
        assert err.startswith("error: ") and "is empty" in err and "Traceback" not in err
    assert snapshot(tmp_path) == before


# -- non-regular files ---------------------------------------------------------------------------
@pytest.mark.timeout(60)
def test_a_fifo_is_refused_without_opening_it(tmp_path):
    from stylenet.imageio import ImageError, load_image

    fifo = tmp_path / "in.png"
    os.mkfifo(fifo)
    start = time.perf_counter()
    with pytest.raises(OutputError, match=r"FIFO"):
        readable(fifo)
    with pytest.raises(ImageError, match=r"FIFO"):
        load_image(fifo)
    assert time.perf_counter() - start < 5
    with pytest.raises(OutputError, match=r"character device"):
        readable("/dev/null")


@pytest.mark.slow
def test_cli_refuses_a_fifo_input_quickly(narrow_model, tmp_path):
    fifo = tmp_path / "in.png"
    os.mkfifo(fifo)
    run = run_cli(f"model={narrow_model}", f"input={fifo}", f"output={tmp_path / 'out.png'}", timeout=90)
    assert run.returncode == 2 and "FIFO" in run.stderr and "Traceback" not in run.stderr, run.stderr
    assert sorted(p.name for p in tmp_path.iterdir()) == ["in.png"]


@pytest.mark.timeout(60)
def test_a_fifo_named_like_a_video_is_refused(narrow_model, tmp_path, capsys):
    os.mkfifo(tmp_path / "in.mp4")
    args = [f"model={narrow_model}", f"input={tmp_path / 'in.mp4'}", f"output={tmp_path / 'out.mp4'}", "progress=false", "device=cpu"]
    assert stylize_command.main(args) == 2
    assert "FIFO" in capsys.readouterr().err and sorted(p.name for p in tmp_path.iterdir()) == ["in.mp4"]


def test_a_fifo_in_a_folder_is_skipped_and_the_count_is_true(narrow_model, tmp_path, capsys):
    src = tmp_path / "in"
    picture(src / "a.png")
    picture(src / "b.jpg")
    os.mkfifo(src / "c.png")
    (src / "broken.jpg").symlink_to(tmp_path / "missing.jpg")
    code = stylize_command.main([f"model={narrow_model}", f"input={src}", f"output={tmp_path / 'out'}", "progress=false", "device=cpu"])
    out, err = capsys.readouterr()
    assert code == 1 and "skipped: " in err and "FIFO" in err and "broken link" in err
    assert "wrote 2 files to" in out and sorted(p.name for p in (tmp_path / "out").iterdir()) == ["a.png", "b.jpg"]


# -- the command, end to end -----------------------------------------------------------------------
def test_folder_run_with_colliding_names_writes_nothing(narrow_model, tmp_path, capsys):
    src, dst = tmp_path / "in", tmp_path / "out"
    for name in ("a.gif", "a.png", "a.gif.png"):
        picture(src / "x.png").rename(src / name)
    picture(dst / "keep.png", value=7)
    before = snapshot(dst)
    code = stylize_command.main([f"model={narrow_model}", f"input={src}", f"output={dst}", "progress=false", "device=cpu"])
    err = capsys.readouterr().err
    assert code == 2 and err.count("error:") == 1 and "would both be written to" in err and "Traceback" not in err
    assert snapshot(dst) == before


def test_a_rerun_needs_overwrite_and_the_count_is_true(narrow_model, tmp_path, capsys):
    src, dst = tmp_path / "in", tmp_path / "out"
    picture(src / "a.png")
    picture(src / "b" / "c.gif")
    picture(src / "b" / "c.png", value=40)
    args = [f"model={narrow_model}", f"input={src}", f"output={dst}", "progress=false", "device=cpu"]
    assert stylize_command.main(args) == 0
    assert "wrote 3 files to" in capsys.readouterr().out
    written = snapshot(dst)
    assert sorted(written) == ["a.png", "b/c.gif.png", "b/c.png"]
    assert stylize_command.main(args) == 2
    assert "exist already" in capsys.readouterr().err and snapshot(dst) == written
    assert stylize_command.main([*args, "overwrite=true"]) == 0
    assert "wrote 3 files to" in capsys.readouterr().out


def test_an_output_equal_to_the_input_needs_overwrite(narrow_model, tmp_path, capsys):
    photo = picture(tmp_path / "photo.png")
    before = photo.read_bytes()
    args = [f"model={narrow_model}", f"input={photo}", f"output={photo}", "progress=false", "device=cpu"]
    assert stylize_command.main(args) == 2
    assert "is the input itself" in capsys.readouterr().err and photo.read_bytes() == before
    assert stylize_command.main([*args, "overwrite=true"]) == 0 and photo.read_bytes() != before


@pytest.mark.slow
def test_cli_hostile_style_name_writes_inside_the_output_folder(tmp_path):
    """A model whose style name climbs out (`../../x`): output=DIR/ still writes DIR/<photo>_<name>.png,
    and the file it pointed at is untouched."""
    victim = picture(tmp_path / "victim.png", value=200)
    before = victim.read_bytes()
    model = model_file(tmp_path / "m.safetensors", "../../victim")
    photo = picture(tmp_path / "photos" / "photo.png")
    out = tmp_path / "a" / "b"
    run = run_cli(f"model={model}", f"input={photo}", f"output={out}/")
    assert run.returncode == 0, run.stderr
    assert victim.read_bytes() == before
    assert [p.relative_to(out).as_posix() for p in out.rglob("*")] == ["photo_victim.png"]
    assert sorted(p.relative_to(tmp_path).as_posix() for p in tmp_path.rglob("*.png")) == [
        "a/b/photo_victim.png", "photos/photo.png", "victim.png"]


@pytest.mark.slow
def test_cli_refuses_a_folder_collision_before_writing(narrow_model, tmp_path):
    src, dst = tmp_path / "in", tmp_path / "out"
    (src).mkdir()
    for name in ("clip.mpg", "clip.mp4"):
        (src / name).write_bytes(b"not decoded: the plan comes first")
    picture(src / "p.gif")
    picture(src / "p.png")
    picture(src / "p.gif.png")
    run = run_cli(f"model={narrow_model}", f"input={src}", f"output={dst}")
    assert run.returncode == 2 and "would both be written to" in run.stderr and "p.gif.png" in run.stderr, run.stderr
    assert "Traceback" not in run.stderr and not dst.exists()
