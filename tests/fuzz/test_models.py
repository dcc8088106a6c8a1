"""Every broken model file through `stylize` and `export`: loaded safely or refused clearly.

The pickle payloads create harness.MARKER when unpickled; the harness counts a case whose
marker appeared as a payload run, whatever its exit code.
"""

from __future__ import annotations

import pytest
from safetensors import safe_open

from . import entry
from .corpus import MODEL_NAMES
from .harness import check, run_case

#: the error each finding of issue 8 must now give (a regex on the one `error:` line)
MESSAGES = {
    "width-huge.safetensors": r"metadata says width=100000, .*but its weights are a TransformerNet with width=16, num_residual=3",
    "num-residual-huge.safetensors": r"metadata says .*num_residual=100000000.*, but its weights",
    "width-negative.safetensors": r"metadata says width=-4",
    "width-string.safetensors": r"width='abc', not a whole number",
    "arch-a-string.safetensors": r"'arch' metadata is 'TransformerNet' \(str\), not an object",
    "arch-a-list.safetensors": r"'arch' metadata is \[16, 3\] \(list\)",
    "arch-class-unknown.safetensors": r"made for architecture 'EvilNet'",
    "arch-extra-key.safetensors": r"arch names 'depth', which TransformerNet does not take",
    "format-version-string.safetensors": r"format_version='abc' in its metadata, not a number",
    "nan-weights.safetensors": r"NaN or infinite values \(the training diverged\)",
    "inf-weights.safetensors": r"NaN or infinite values",
    "ckpt-nan-weights.ckpt": r"NaN or infinite values",
    "ckpt-width-huge.ckpt": r"metadata says width=100000",
    "payload-legacy.ckpt": r"holds Python objects \((io|builtins).open\) that would run code when unpickled; refusing",
    "payload-zip.ckpt": r"holds Python objects \((io|builtins).open\) that would run code",
    "payload-system.pt": r"cannot load .*payload-system.pt",
    "payload-in-state-dict.ckpt": r"would run code when unpickled",
    "zero-byte.ckpt": r"the file is empty",
    "wrong-shape.safetensors": r"wrong shape",
    "missing-tensor.safetensors": r"metadata says|missing",
}


def expected(name: str, model_corpus) -> str:
    return model_corpus[name][1]


@pytest.mark.parametrize("name", MODEL_NAMES)
def test_stylize_with_each_model(name, model_corpus, good_photo, tmp_path):
    path, expect = model_corpus[name]
    out = tmp_path / "out.png"
    outcome = check(run_case(f"stylize model={name}", lambda: entry.stylize(f"model={path}", f"input={good_photo}", f"output={out}")),
                    expect, match=MESSAGES.get(name))
    assert out.exists() == (outcome.kind == "ok")


@pytest.mark.parametrize("name", MODEL_NAMES)
def test_export_each_model(name, model_corpus, tmp_path):
    path, expect = model_corpus[name]
    out = tmp_path / "exported"
    outcome = check(run_case(f"export ckpt={name}", lambda: entry.export(f"ckpt={path}", f"out_dir={out}")),
                    expect, match=MESSAGES.get(name))
    written = sorted(out.glob("*.safetensors")) if out.is_dir() else []
    if outcome.kind == "ok":
        (export,) = written
        with safe_open(str(export), "pt") as f:
            assert f.metadata()["format"] == "stylenet.transformer" and len(list(f.keys())) > 10
    else:
        assert written == [] and not [p for p in out.rglob(".*")] if out.is_dir() else True  # no partial files


@pytest.mark.parametrize("name", ["payload-zip.ckpt", "payload-legacy.ckpt", "nan-weights.safetensors", "width-huge.safetensors",
                                  "num-residual-huge.safetensors"])
def test_webcam_with_a_bad_model(name, model_corpus, tmp_path):
    outcome = check(run_case(f"webcam model={name}", lambda: entry.webcam(f"model={model_corpus[name][0]}", "source=0")),
                    "error", match=MESSAGES.get(name))
    assert "camera" not in outcome.err  # the model is refused before a camera is opened
