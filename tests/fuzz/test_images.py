"""Every odd image through `stylize` (one file at a time, then the whole folder) and as a style."""

from __future__ import annotations

import pytest
from PIL import Image

from . import corpus, entry
from .harness import check, run_case


def pytest_generate_tests(metafunc):
    if "image_name" in metafunc.fixturenames:
        import tempfile
        from pathlib import Path

        with tempfile.TemporaryDirectory() as tmp:
            names = sorted(corpus.images(Path(tmp)))
        metafunc.parametrize("image_name", names)


def test_stylize_each_image(image_name, image_corpus, export_path, tmp_path):
    path, expect = image_corpus[image_name]
    out = tmp_path / "out.png"
    outcome = check(run_case(f"stylize {image_name}", lambda: entry.stylize(f"model={export_path}", f"input={path}", f"output={out}")),
                    ("ok", "error") if expect == "any" else expect)
    if outcome.kind == "ok":
        with Image.open(path) as source:
            w, h = source.size
        rotated = image_name.startswith("exif-orientation-") and 5 <= int(image_name[17]) <= 8
        with Image.open(out) as result:
            assert result.size == ((h, w) if rotated else (w, h)) and result.mode == "RGB"
    else:
        assert not out.exists()
    if image_name.startswith("bomb-"):
        assert "decompression bomb" in outcome.error_lines[0] and "STYLENET_MAX_IMAGE_PIXELS" in outcome.error_lines[0]
    assert "Warning:" not in outcome.err  # PIL's raw warnings are reworded as one 'warning:' line


def test_stylize_the_whole_folder(image_corpus, export_path, tmp_path):
    folder = next(iter(image_corpus.values()))[0].parent
    out = tmp_path / "styled"
    outcome = check(run_case("stylize the image folder", lambda: entry.stylize(f"model={export_path}", f"input={folder}", f"output={out}")),
                    "skipped")
    skipped = [ln for ln in outcome.err.splitlines() if ln.startswith("skipped: ")]
    must_fail = [n for n, (_, expect) in image_corpus.items() if expect == "error"]
    assert all(any(n in ln for ln in skipped) for n in must_fail), outcome
    written = {p.stem for p in out.rglob("*") if p.is_file()}
    assert {p.stem for n, (p, expect) in image_corpus.items() if expect == "ok"} <= written  # the bad files cost only themselves
    for name, (path, _) in image_corpus.items():
        assert path.stem in written or any(name in ln for ln in skipped), name  # every file: written, or its skip reported
    files = [p for p in out.rglob("*") if p.is_file()]
    assert len(files) + len(skipped) == len(image_corpus)  # one output per readable file: none overwrote another


@pytest.mark.parametrize("name", ["bomb-40000x40000.png", "zero-byte.jpg", "truncated.png", "text.jpg"])
def test_train_with_a_bad_style_image(name, image_corpus, tmp_path):
    photos = corpus.photo_folder(tmp_path / "photos")
    outcome = check(run_case(f"train style.image={name}", lambda: entry.train(tmp_path, photos, f"style.image={image_corpus[name][0]}")),
                    "error", match=r"decompression bomb|cannot read image")
    assert not (tmp_path / "ckpt").exists() or not list((tmp_path / "ckpt").iterdir())
