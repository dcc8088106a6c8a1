"""Untrusted model files, generated: every hostile metadata value, checkpoint dict and tensor
ends as a ModelLoadError naming the field (or, where the value happens to be valid, loads);
never another exception. Files of a tiny network (width 8, one residual block) written per
example, read by the real `read_model_file`."""

from __future__ import annotations

import io
import json
import sys
from pathlib import Path

import pytest
import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from safetensors.torch import save

from stylenet import schema
from stylenet.modelfile import ModelLoadError, build_network, checkpoint_metadata, read_model_file
from stylenet.transformer import TransformerNet

ARCH = {"width": 8, "num_residual": 1}
pytestmark = pytest.mark.filterwarnings("ignore:Generating overly large repr")
SETTINGS = settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])


@pytest.fixture(scope="module")
def net_state() -> dict[str, torch.Tensor]:
    torch.manual_seed(0)
    return {k: v.clone() for k, v in TransformerNet(**ARCH).state_dict().items()}


@pytest.fixture(scope="module")
def good_ckpt(net_state) -> dict:
    return {"state_dict": {f"transformer.{k}": v for k, v in net_state.items()}, "global_step": 7, "epoch": 0,
            "hyper_parameters": {"model": dict(ARCH), "style_name": "wave", "loss": {"network": "vgg16", "style_weight": 1.0},
                                 "image_size": 32, "batch_size": 2}}


@pytest.fixture(scope="module")
def good_metadata(good_ckpt) -> dict[str, str]:
    return {**checkpoint_metadata(good_ckpt, source="last.ckpt"), "dtype": "float32"}


@pytest.fixture(scope="module")
def folder(tmp_path_factory) -> Path:
    return tmp_path_factory.mktemp("schema")


def write_export(path: Path, state: dict, metadata: dict) -> Path:
    path.write_bytes(save(state, metadata=metadata))
    return path


def write_checkpoint(path: Path, ckpt) -> Path:
    buffer = io.BytesIO()
    limit = sys.getrecursionlimit()
    sys.setrecursionlimit(max(limit, 50_000))  # pickling a 10000-deep list recurses; reading it back does not
    try:
        torch.save(ckpt, buffer)
    finally:
        sys.setrecursionlimit(limit)
    path.write_bytes(buffer.getvalue())
    return path


def refused(path: Path, *names: str) -> str:
    """read_model_file(path) raises ModelLoadError naming one of `names`; its message."""
    with pytest.raises(ModelLoadError) as caught:
        read_model_file(path)
    message = str(caught.value)
    assert any(name in message for name in names), f"{names} not named in: {message}"
    assert len(message) < 1500 and "\n" not in message
    return message


def loads_or_names(path: Path, *names: str) -> None:
    try:
        build_network(read_model_file(path))
    except ModelLoadError as exc:
        assert any(name in str(exc) for name in names), f"{names} not named in: {exc}"


# -- values hostile to parsers ------------------------------------------------------------------
def deep_json(depth: int) -> str:
    return "[" * depth + "]" * depth


JSON_LEAVES = st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=12)
JSON_VALUES = st.recursive(JSON_LEAVES, lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner, max_size=4),
                           max_leaves=12)
HOSTILE_TEXT = st.one_of(
    st.text(max_size=40),
    JSON_VALUES.map(lambda v: json.dumps(v, allow_nan=True)),
    st.integers(33, 20_000).map(deep_json),                              # nested past the limit, up to 20000 deep
    st.integers(19, 6_000).map(lambda n: "9" * n),                       # integers too long to parse (4300+ digits: int() raises)
    st.integers(19, 6_000).map(lambda n: json.dumps({"width": int("9" * min(n, 4000))})),
    st.sampled_from(["NaN", "Infinity", "-1", "1e999", '{"width": 1e999}', '["a", "a"]', "[]", "{}", "", "\x00", "true"]),
    st.integers(schema.MAX_JSON_CHARS, schema.MAX_JSON_CHARS * 2).map(lambda n: json.dumps(["x" * n])),
)
FIELDS = ["format_version", "arch", "style_name", "styles", "loss", "dtype", "training_steps"]


@SETTINGS
@given(field=st.sampled_from(FIELDS), value=HOSTILE_TEXT)
def test_generated_metadata_is_refused_naming_the_field(field, value, net_state, good_metadata, folder):
    path = write_export(folder / "meta.safetensors", net_state, {**good_metadata, field: value})
    loads_or_names(path, field, "format_version" if field == "format_version" else field)


@SETTINGS
@given(value=HOSTILE_TEXT)
def test_generated_metadata_through_the_schema_alone(value, good_metadata):
    for field in FIELDS:
        try:
            schema.export_metadata({**good_metadata, field: value})
        except schema.SchemaError as exc:
            assert exc.field.split(".")[0].split("[")[0] == field and field in str(exc)


@pytest.mark.parametrize("field, value, names", [
    ("arch", deep_json(10_000), ("arch", "nests deeper")),
    ("styles", deep_json(10_000), ("styles",)),
    ("loss", deep_json(10_000), ("loss", "nests deeper")),
    ("format_version", "9" * 5000, ("format_version",)),
    ("training_steps", "9" * 5000, ("training_steps",)),
    ("arch", json.dumps({"class": "TransformerNet", "width": 8 * 10**3000}), ("arch.width", "integer")),
    ("arch", '{"class": "TransformerNet", "width": Infinity}', ("arch",)),
    ("styles", json.dumps([1, 2]), ("styles",)),
    ("dtype", "int8", ("dtype",)),
    ("style_name", "", ("style_name",)),
    ("style_name", "x" * 1000, ("style_name",)),
])
def test_named_hostile_metadata(field, value, names, net_state, good_metadata, folder):
    refused(write_export(folder / "named.safetensors", net_state, {**good_metadata, field: value}), *names)


# -- tensors: dtypes and shapes ------------------------------------------------------------------
@pytest.mark.parametrize("dtype", [torch.int8, torch.uint8, torch.bool, torch.int64, torch.float8_e4m3fn])
def test_non_float_weights_are_refused_from_the_header(dtype, net_state, good_metadata, folder):
    state = dict(net_state)
    state["decoder.0.conv.1.bias"] = state["decoder.0.conv.1.bias"].to(dtype)
    message = refused(write_export(folder / "int.safetensors", state, good_metadata), "decoder.0.conv.1.bias")
    assert "not floating point" in message


@pytest.mark.parametrize("dtype", [torch.int8, torch.bool, torch.complex64])
def test_non_float_weights_in_a_checkpoint(dtype, good_ckpt, folder):
    state = dict(good_ckpt["state_dict"])
    state["transformer.encoder.0.1.weight"] = torch.ones_like(state["transformer.encoder.0.1.weight"]).to(dtype)
    message = refused(write_checkpoint(folder / "int.ckpt", {**good_ckpt, "state_dict": state}), "encoder.0.1.weight")
    assert "not floating point" in message


@SETTINGS
@given(key=st.sampled_from(["encoder.0.1.weight", "decoder.0.conv.1.bias", "residuals.0.0.1.weight"]),
       shape=st.lists(st.integers(0, 9), min_size=0, max_size=5))
def test_generated_shapes_must_fit_the_architecture(key, shape, net_state, good_metadata, folder):
    state = {**net_state, key: torch.zeros(shape)}
    loads_or_names(write_export(folder / "shape.safetensors", state, good_metadata), key, "arch", "weights")


def test_the_valid_files_load(net_state, good_ckpt, good_metadata, folder):
    model = read_model_file(write_export(folder / "good.safetensors", net_state, good_metadata))
    assert model.styles == ["wave"] and build_network(model).arch()["width"] == 8
    model = read_model_file(write_checkpoint(folder / "good.ckpt", good_ckpt))
    assert model.metadata["training_steps"] == "7" and model.arch == {"class": "TransformerNet", **ARCH}


# -- checkpoint dicts --------------------------------------------------------------------------
def nested(depth: int):
    value: list = []
    for _ in range(depth):
        value = [value]
    return value


HOSTILE_PLAIN = st.one_of(st.none(), st.booleans(), st.integers(), st.floats(), st.text(max_size=20), st.binary(max_size=8),
                          JSON_VALUES, st.integers(33, 2_000).map(nested),
                          st.integers(64, 4000).map(lambda n: 10**n), st.just(torch.zeros(2, dtype=torch.int8)))
CKPT_FIELDS = {  # field → where in the checkpoint a hostile value goes
    "hyper_parameters": lambda c, v: {**c, "hyper_parameters": v},
    "global_step": lambda c, v: {**c, "global_step": v},
    "hyper_parameters.model": lambda c, v: {**c, "hyper_parameters": {**c["hyper_parameters"], "model": v}},
    "hyper_parameters.style_name": lambda c, v: {**c, "hyper_parameters": {**c["hyper_parameters"], "style_name": v}},
    "hyper_parameters.style_names": lambda c, v: {**c, "hyper_parameters": {**c["hyper_parameters"], "style_names": v}},
    "hyper_parameters.loss": lambda c, v: {**c, "hyper_parameters": {**c["hyper_parameters"], "loss": v}},
    "hyper_parameters.model.width": lambda c, v: {**c, "hyper_parameters": {**c["hyper_parameters"], "model": {**ARCH, "width": v}}},
}
#: words a refusal of each field may use (the model hyper-parameters are the file's `arch`)
NAMES = {"hyper_parameters.model": ("hyper_parameters", "arch", "model"), "hyper_parameters.model.width": ("width", "arch"),
         "hyper_parameters": ("hyper_parameters", "not a stylenet one")}


@settings(max_examples=30, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(field=st.sampled_from(sorted(CKPT_FIELDS)), value=HOSTILE_PLAIN)
def test_generated_checkpoints_are_refused_naming_the_field(field, value, good_ckpt, folder):
    path = write_checkpoint(folder / "hostile.ckpt", CKPT_FIELDS[field](good_ckpt, value))
    # "cannot load": torch's weights-only unpickler refused the whole file (bytes, ints of LONG4 size) before any field
    loads_or_names(path, *NAMES.get(field, (field,)), "cannot load")


@pytest.mark.parametrize("make, names", [
    (lambda c: {**c, "hyper_parameters": ["model"]}, ("hyper_parameters",)),
    (lambda c: {**c, "hyper_parameters": "model"}, ("hyper_parameters",)),
    (lambda c: {**c, "global_step": None}, ("global_step",)),
    (lambda c: {**c, "global_step": 10**5000}, ("global_step", "cannot load")),
    (lambda c: {**c, "global_step": "7"}, ("global_step",)),
    (lambda c: {**c, "hyper_parameters": {**c["hyper_parameters"], "style_names": "wave"}}, ("style_names",)),
    (lambda c: {**c, "hyper_parameters": {**c["hyper_parameters"], "loss": nested(10_000)}}, ("hyper_parameters.loss", "nests deeper")),
    (lambda c: {**c, "hyper_parameters": {**c["hyper_parameters"], 3: "x"}}, ("hyper_parameters", "not a string")),
    (lambda c: {**c, "state_dict": {**c["state_dict"], 5: torch.zeros(1)}}, ("state_dict", "not a string")),
    (lambda c: {**c, "state_dict": {**c["state_dict"], "transformer.x": [1.0]}}, ("transformer.x", "state_dict")),
    (lambda c: {**c, "loops": nested(10_000)}, ("loops", "nests deeper")),
])
def test_named_hostile_checkpoints(make, names, good_ckpt, folder):
    refused(write_checkpoint(folder / "named.ckpt", make(good_ckpt)), *names)


def test_a_self_referencing_checkpoint_is_refused(good_ckpt, folder):
    loop: list = []
    loop.append(loop)
    refused(write_checkpoint(folder / "loop.ckpt", {**good_ckpt, "callbacks": {"x": loop}}), "nests deeper")


def test_json_depth_counts_brackets_outside_strings():
    assert schema.json_depth('[[{"a": "[[[[", "b": [1]}]]') == 4
    assert schema.json_depth('"\\"[[["') == 0


# -- coverage-guided: atheris, where it installs (a few seconds) ------------------------------------
ATHERIS_HARNESS = '''
import sys, atheris
import pydantic, torch  # noqa: F401 - imported first: only stylenet's own code is instrumented
with atheris.instrument_imports(include=["stylenet"]):
    from stylenet import schema
def one(data):
    fdp = atheris.FuzzedDataProvider(data)
    meta = {"format": "stylenet.transformer", "arch": fdp.ConsumeUnicodeNoSurrogates(200),
            "styles": fdp.ConsumeUnicodeNoSurrogates(100), "format_version": fdp.ConsumeUnicodeNoSurrogates(20),
            "loss": fdp.ConsumeUnicodeNoSurrogates(200)}
    try:
        schema.export_metadata(meta)
    except schema.SchemaError:
        pass
    try:
        schema.parse_json(fdp.ConsumeUnicodeNoSurrogates(4000), "arch")
    except schema.SchemaError:
        pass
atheris.Setup(sys.argv, one)
atheris.Fuzz()
'''


def test_atheris_on_the_metadata_parsers(tmp_path):
    pytest.importorskip("atheris")
    import subprocess

    harness = tmp_path / "fuzz_metadata.py"
    harness.write_text(ATHERIS_HARNESS)
    done = subprocess.run([sys.executable, str(harness), "-runs=3000", "-max_len=4096", "-seed=1"], capture_output=True, text=True,
                          timeout=300, cwd=Path(__file__).resolve().parents[1])
    assert done.returncode == 0, done.stderr[-3000:]
    assert "Done 3000 runs" in done.stderr
