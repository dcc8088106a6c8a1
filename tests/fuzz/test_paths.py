"""Odd and unwritable output paths, odd inputs and options: written atomically, or one clear error."""

from __future__ import annotations

import numpy as np
import pytest
from PIL import Image

from . import entry
from .harness import check, run_case


def stylize(name, export_path, good_photo, output, *extra, expect="ok", match=None):
    return check(run_case(f"stylize {name}", lambda: entry.stylize(f"model={export_path}", f"input={good_photo}", f"output={output}", *extra)),
                 expect, match=match)


def test_output_in_a_read_only_folder(read_only_dir, export_path, good_photo):
    stylize("output=<read-only>/out.png", export_path, good_photo, read_only_dir / "out.png", expect="error", match=r"cannot write .*out.png")
    stylize("output=<read-only>/out.npy", export_path, good_photo, read_only_dir / "out.npy", expect="error", match=r"cannot write .*out.npy")
    assert list(read_only_dir.iterdir()) == []


@pytest.mark.parametrize("case, output, match", [
    ("under-a-file", "a-file/out.png", r"cannot write .*a-file is a file, not a folder"),
    ("unknown-extension", "out.xyz", r"unknown image format"),
    ("no-extension", "out", r"unknown image format"),
    ("dev-null", "/dev/null", r"unknown image format"),
    ("name-too-long", "x" * 300 + ".png", r"File name too long"),
    ("video-extension-for-an-image", "out.mp4", r"unknown image format"),
])
def test_bad_output_paths(case, output, match, export_path, good_photo, tmp_path):
    (tmp_path / "a-file").write_text("x")
    out = output if output.startswith("/") else tmp_path / output
    stylize(f"output=<{case}>", export_path, good_photo, out, expect="error", match=match)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a-file"]  # nothing half-written


@pytest.mark.parametrize("case, output", [("existing-folder", "existing"), ("new-folder-slash", "new/"),
                                          ("spaces-and-unicode", "s p a c e s/ünïcødé ☃.png"), ("jpeg", "out.jpeg"),
                                          ("npy", "out.npy")])
def test_odd_but_fine_output_paths(case, output, export_path, good_photo, tmp_path):
    (tmp_path / "existing").mkdir()
    stylize(f"output=<{case}>", export_path, good_photo, f"{tmp_path}/{output}")
    written = [p for p in tmp_path.rglob("*") if p.is_file()]
    assert len(written) == 1 and not written[0].name.startswith(".")
    if written[0].suffix == ".npy":
        array = np.load(written[0])
        assert array.shape == (32, 40, 3) and array.dtype == np.float32 and 0 <= array.min() and array.max() <= 1
    else:
        assert Image.open(written[0]).size == (40, 32)


def test_output_overwrites_its_own_input(export_path, good_photo, tmp_path):
    own = tmp_path / "photo.png"
    own.write_bytes(good_photo.read_bytes())
    stylize("output=input", export_path, own, own, expect="error", match=r"is the input itself.*overwrite=true")
    assert own.read_bytes() == good_photo.read_bytes()  # refused: nothing written
    stylize("output=input overwrite=true", export_path, own, own, "overwrite=true")
    assert own.read_bytes() != good_photo.read_bytes() and Image.open(own).size == (40, 32)


@pytest.mark.parametrize("case, args, match", [
    ("input-missing", ["input=/nonexistent/photo.png"], r"input not found"),
    ("input-empty-folder", ["input={empty}"], r"no images"),
    ("model-unknown-preset", ["model=no_such_style"], r"no model file or preset named 'no_such_style'"),
    ("strength-2", ["strength=2"], r"strength must be between 0 and 1"),
    ("strength-nan", ["strength=nan"], r"strength must be between 0 and 1"),
    ("strength-text", ["strength=abc"], r"strength='abc' is not a number"),
    ("tile-size-0", ["tile=true", "tile_size=0"], None),
    ("tile-text", ["tile=abc"], None),
    ("max-pixels-0", ["max_pixels=0"], None),
    ("batch-size-0", ["batch_size=0"], None),
    ("batch-size-fraction", ["batch_size=1.5"], r"batch_size=1.5 is not a whole number"),
    ("device-missing-gpu", ["device=cuda:7"], r"cuda"),
    ("precision-unknown", ["precision=fp8"], r"precision"),
])
def test_odd_inputs_and_options(case, args, match, export_path, good_photo, tmp_path):
    (tmp_path / "empty").mkdir()
    argv = [f"model={export_path}", f"input={good_photo}", f"output={tmp_path / 'out.png'}"]
    for arg in args:
        arg = arg.format(empty=tmp_path / "empty")
        argv = [a for a in argv if a.split("=")[0] != arg.split("=")[0]] + [arg]
    outcome = check(run_case(f"stylize <{case}>", lambda: entry.stylize(*argv)), match=match)
    if match is not None:
        assert outcome.kind == "error", outcome


def test_webcam_output_paths(read_only_dir, export_path, video_corpus, tmp_path):
    video = video_corpus["valid.mp4"][0]
    for case, out, match in [("read-only", read_only_dir / "live.mp4", r"cannot write"),
                             ("not-a-video-name", tmp_path / "live.txt", r"cannot write \.txt videos|not a video"),
                             ("under-a-file", tmp_path / "a-file" / "live.mp4", r"cannot write")]:
        (tmp_path / "a-file").write_text("x")
        check(run_case(f"webcam output=<{case}>", lambda: entry.webcam(f"model={export_path}", f"source={video}", f"output={out}")),
              "error", match=match)
    assert list(read_only_dir.iterdir()) == []


def test_export_output_paths(read_only_dir, export_path, tmp_path):
    (tmp_path / "a-file").write_text("x")
    for case, out_dir in [("read-only", read_only_dir), ("under-a-file", tmp_path / "a-file" / "out")]:
        check(run_case(f"export out_dir=<{case}>", lambda: entry.export(f"ckpt={export_path}", f"out_dir={out_dir}")),
              "error", match=r"cannot write")
    assert list(read_only_dir.iterdir()) == []
