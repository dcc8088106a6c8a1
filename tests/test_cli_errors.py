"""Bad option values on the real commands: exit code 2, exactly one `error:` line naming the
option, no traceback; a traceback only with STYLENET_DEBUG=1. Every case fails while the
config is checked, before anything runs (each takes a fraction of a second)."""

from __future__ import annotations

import subprocess
import sys

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from .conftest import ROOT, SUBPROCESS_ENV


def commands():
    from stylenet.commands import benchmark, gatys, stylize, train, webcam

    return {"gatys": gatys.main, "train": train.main, "stylize": stylize.main, "webcam": webcam.main, "benchmark": benchmark.main}


def run(capfd, command: str, *args: str, tmp=None) -> tuple[int, list[str], str]:
    extra = [f"hydra.run.dir={tmp}"] if tmp is not None and command in ("gatys", "train") else []
    code = commands()[command]([*args, *extra])
    err = capfd.readouterr().err
    return code, [line for line in err.splitlines() if line.startswith("error:")], err


def assert_one_error(code, lines, err, *words):
    assert code == 2, err
    assert len(lines) == 1, err
    assert "Traceback" not in err and "Error executing job" not in err, err
    for word in words:
        assert word in lines[0], lines[0]


STYLIZE = ["model=nonexistent.safetensors", "input=photo.jpg", "output=out.png"]


@pytest.mark.parametrize("command, args, words", [
    ("gatys", ["size=0"], ["size", "between 16 and 16384"]),
    ("gatys", ["size=-5"], ["size", "got -5"]),
    ("gatys", ["size=99999999"], ["size", "got 99999999"]),
    ("gatys", ["size=abc"], ["size='abc' is not a whole number"]),
    ("gatys", ["steps=1.5"], ["steps=1.5 is not a whole number"]),
    ("gatys", ["loss.style_weight=1e309"], ["loss.style_weight", "got inf"]),
    ("gatys", ["style.weight=1e300"], ["style.weight"]),
    ("gatys", ["loss.network=alexnet"], ["loss.network='alexnet' is not one of vgg16, vgg19, squeezenet1_1"]),
    ("gatys", ["content=${x}/photo.jpg"], ["content", "interpolation key 'x' not found", "\\$"]),
    ("gatys", ["content=a,b.jpg"], ["content=a,b.jpg", "content='a,b.jpg'"]),
    ("gatys", ["content=[a"], ["cannot read the option 'content=[a'"]),
    ("gatys", ["mode=nope"], ["mode=nope: no such mode", "dream, invert"]),
    ("gatys", ["stpes=3"], ["stpes: no such option (did you mean steps?)"]),
    ("train", ["data.batch_size=0"], ["data.batch_size must be between 1 and 65536, got 0"]),
    ("train", ["batch_size=8"], ["did you mean data.batch_size?"]),
    ("train", ["data.batchsize=8"], ["did you mean data.batch_size?"]),
    ("train", ["style=hokusia"], ["style=hokusia: no such style (did you mean style=hokusai?)"]),
    ("train", ["optim.lr=abc"], ["optim.lr='abc' is not a number"]),
    ("stylize", [*STYLIZE, "upsample.radius=-1"], ["upsample.radius", "got -1"]),
    ("stylize", [*STYLIZE, "batch_size=0"], ["batch_size", "got 0"]),
    ("webcam", ["model=nonexistent.safetensors", "headless=true", "max_frames=-1"], ["max_frames must be at least 0, got -1"]),
    ("webcam", ["model=nonexistent.safetensors", "headless=true", "upsample.radius=-3"], ["upsample.radius"]),
    ("benchmark", ["mode=gatys", "model=x", "sizes=[0]"], ["sizes[0]", "got 0"]),
    ("benchmark", ["mode=gatys", "model=x", "sizes=[abc]"], ["sizes[0]='abc' is not a whole number"]),
    ("benchmark", ["mode=quality", "model=x", "size=99999999"], ["size", "got 99999999"]),
    ("benchmark", ["mode=infer", "sizes=[640]"], ["sizes[0]=", "WIDTHxHEIGHT"]),
    ("benchmark", ["mode=data", "batch_size=0"], ["batch_size", "got 0"]),
])
def test_a_bad_option_is_one_error_line(command, args, words, capfd, tmp_path):
    assert_one_error(*run(capfd, command, *args, tmp=tmp_path), *words)
    assert not (tmp_path / "gatys").exists() and not list(tmp_path.glob("*.png"))  # nothing written


#: values outside every range the table gives `size` (16..16384), or not numbers at all
BAD_SIZES = st.one_of(st.integers(max_value=15), st.integers(min_value=16385),
                      st.text(alphabet="abcxyz-_. ", min_size=1, max_size=12).filter(lambda t: t.strip() and t.strip() not in ("null",)),
                      st.floats(allow_nan=False).filter(lambda f: not (16 <= f <= 16384 and float(f).is_integer())))


@settings(max_examples=15, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(value=BAD_SIZES)
def test_generated_bad_sizes_never_print_a_traceback(value, capfd, tmp_path):
    code, lines, err = run(capfd, "gatys", f"size={value}", tmp=tmp_path)
    assert_one_error(code, lines, err)


@settings(max_examples=15, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(key=st.sampled_from(["data.batch_size", "data.image_size", "trainer.max_steps", "optim.lr", "loss.style_weight"]),
       value=st.one_of(st.integers(max_value=-2), st.floats(min_value=1e16, allow_infinity=True),
                       st.sampled_from(["abc", "nan", "-inf", "[1]"])))
def test_generated_bad_training_options(key, value, capfd, tmp_path):
    code, lines, err = run(capfd, "train", f"{key}={value}", "logger=none", tmp=tmp_path)
    assert_one_error(code, lines, err, key)


def test_the_table_accepts_the_shipped_defaults():
    """Every command's own defaults pass their constraints (a table stricter than the configs would break them)."""
    from tests.conftest import compose

    from stylenet.commands import options
    from stylenet.resources import CONFIG_DIR, TOOLS_DIR

    for name, folder, overrides in [("train", CONFIG_DIR, []), ("gatys", CONFIG_DIR, []), ("stylize", TOOLS_DIR, []),
                                    ("webcam", TOOLS_DIR, []), ("gallery", CONFIG_DIR, [])] + \
            [("benchmark", TOOLS_DIR, [f"mode={m}"]) for m in ("gatys", "quality", "infer", "train", "data", "video")]:
        options.check(compose(overrides, config_name=name, config_dir=folder), name)


def test_an_internal_error_is_one_line_and_debug_shows_the_traceback():
    """A bug (here: a task that raises KeyError) is exit code 1 and one line pointing at
    STYLENET_DEBUG; with it set, the traceback comes first. Through a real interpreter."""
    script = ("import sys\nfrom stylenet.commands import app\n"
              "def task(cfg):\n    raise KeyError('boom')\n"
              "sys.exit(app.run('export', task, ['ckpt=x'], config_dir=app.TOOLS_DIR))\n")
    plain = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, cwd=ROOT, env=SUBPROCESS_ENV, timeout=120)
    assert plain.returncode == 1, plain.stderr
    (line,) = [ln for ln in plain.stderr.splitlines() if ln.startswith("error:")]
    assert "KeyError" in line and "STYLENET_DEBUG=1" in line and "Traceback" not in plain.stderr
    debug = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, cwd=ROOT,
                           env={**SUBPROCESS_ENV, "STYLENET_DEBUG": "1"}, timeout=120)
    assert debug.returncode == 1 and "Traceback (most recent call last)" in debug.stderr
    assert debug.stderr.strip().splitlines()[-1].startswith("error: KeyError")


def test_debug_shows_the_traceback_of_a_bad_option(tmp_path):
    args = [sys.executable, "scripts/gatys.py", "size=abc", f"hydra.run.dir={tmp_path}"]
    done = subprocess.run(args, capture_output=True, text=True, cwd=ROOT, env={**SUBPROCESS_ENV, "STYLENET_DEBUG": "1"}, timeout=120)
    assert done.returncode == 2 and "Traceback (most recent call last)" in done.stderr and "OptionError" in done.stderr
    assert [ln for ln in done.stderr.splitlines() if ln.startswith("error:")] == ["error: size='abc' is not a whole number"]


def test_weights_whose_product_overflows_are_an_error_not_an_unchanged_photo(capfd, tmp_path):
    """Each weight within its range (1e15), their product past float32: the objective is NaN,
    L-BFGS would return the photo untouched with exit 0. Now an error, and no image."""
    from .conftest import CHICAGO, HOKUSAI, SQUEEZENET

    code, lines, err = run(capfd, "gatys", f"content={CHICAGO}", f"style.image={HOKUSAI}", "loss.network=squeezenet1_1",
                           f"loss.weights={SQUEEZENET}", "size=32", "style.size=32", "steps=2", "progress=false",
                           "loss.style_weight=1e15", "style.weight=1e15", "loss.layers.squeezenet1_1.style.fire7=1e15", tmp=tmp_path)
    assert_one_error(code, lines, err, "the objective is not finite", "loss.style_weight")
    assert not list(tmp_path.glob("*.png"))
