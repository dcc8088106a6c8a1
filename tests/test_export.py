"""Export: checkpoint → <style>.safetensors (+ TorchScript, ONNX) that reproduce the trained network."""

import contextlib
import io
import json
import re
import subprocess
import sys
import warnings

import pytest
import torch
from safetensors import safe_open

from stylenet.export import PortableTransformer, check_onnx, export_checkpoint, export_torchscript
from stylenet.inference import Stylizer
from stylenet.modelfile import FORMAT, read_model_file
from stylenet.transformer import TransformerNet

from .conftest import ROOT, SUBPROCESS_ENV, load_script



pytestmark = pytest.mark.usefixtures("one_thread")


@pytest.fixture(scope="module")
def ckpt(tiny_checkpoint) -> dict:
    return torch.load(tiny_checkpoint, map_location="cpu", weights_only=True)


@pytest.fixture(scope="module")
def module_net(tiny_checkpoint):
    """The network exactly as the Lightning module holds it after loading the checkpoint."""
    from stylenet.module import StyleTransferModule

    return StyleTransferModule.load_from_checkpoint(tiny_checkpoint, map_location="cpu").transformer.eval()


def odd_image() -> torch.Tensor:
    return torch.rand(1, 3, 37, 53, generator=torch.Generator().manual_seed(3))


def test_training_run_exports_its_style(tiny_checkpoint, ckpt):
    style = ckpt["hyper_parameters"]["style_name"]
    path = tiny_checkpoint.parent / f"{style}.safetensors"
    assert path.is_file(), "train.py's export_at_end should have written the style file"
    assert read_model_file(path).metadata["training_steps"] == str(ckpt["global_step"])


def test_safetensors_holds_network_weights_and_metadata_only(tiny_checkpoint, ckpt, tmp_path):
    out = export_checkpoint(tiny_checkpoint, tmp_path / "style.safetensors")
    assert out == tmp_path / "style.safetensors" and list(tmp_path.iterdir()) == [out]  # no temp file left
    with safe_open(str(out), framework="pt") as f:
        keys, meta = set(f.keys()), f.metadata()
    want = {k.removeprefix("transformer.") for k in ckpt["state_dict"] if k.startswith("transformer.")}
    assert keys == want  # no Gram targets, no optimizer state, no loss network
    hp = ckpt["hyper_parameters"]
    assert meta["format"] == FORMAT and meta["style_name"] == hp["style_name"]
    assert json.loads(meta["arch"]) == {"class": "TransformerNet", **hp["model"]} == {"class": "TransformerNet", "width": 16, "num_residual": 3, "skip": False}
    loss = json.loads(meta["loss"])
    assert loss["network"] == "squeezenet1_1" and loss["weights"].endswith("squeezenet1_1-imagenet.pth")
    assert loss["style_weight"] == hp["loss"]["style_weight"] and loss["style_layers"] == hp["loss"]["style_layers"]
    assert meta["training_steps"] == str(ckpt["global_step"]) == "3"
    assert meta["image_size"] == "32" and meta["stylenet_version"] == hp["stylenet_version"] and meta["dtype"] == "float32"
    assert out.stat().st_size < tiny_checkpoint.stat().st_size / 2


def test_fp16_export_is_half_the_size_and_close(tiny_checkpoint, tmp_path):
    full = export_checkpoint(tiny_checkpoint, tmp_path / "a.safetensors")
    half = export_checkpoint(tiny_checkpoint, tmp_path / "b.safetensors", fp16=True)
    assert read_model_file(half).metadata["dtype"] == "float16"
    assert all(t.dtype == torch.float16 for t in read_model_file(half).state_dict.values())
    assert half.stat().st_size < 0.6 * full.stat().st_size
    x = odd_image()
    y16 = Stylizer.load(half, device="cpu").stylize_tensor(x)
    y32 = Stylizer.load(full, device="cpu").stylize_tensor(x)
    assert (y16 - y32).abs().max() < 1e-2


@pytest.fixture(scope="module")
def exported(tiny_checkpoint, tmp_path_factory) -> dict:
    """All three formats, written once by the export CLI (in-process: one interpreter start saved)."""
    out, printed = tmp_path_factory.mktemp("exported"), io.StringIO()
    with contextlib.redirect_stdout(printed):
        assert load_script("export").main([f"ckpt={tiny_checkpoint}", "format=all", f"out_dir={out}"]) == 0
    style = read_model_file(tiny_checkpoint).style_name
    paths = {"safetensors": out / f"{style}.safetensors", "torchscript": out / f"{style}.torchscript.pt", "onnx": out / f"{style}.onnx"}
    return {**paths, "stdout": printed.getvalue()}


def test_all_exports_reproduce_the_lightning_module(exported, module_net):
    """Acceptance 1 in small: safetensors exact (< 1e-4), TorchScript and ONNX within 1e-3."""
    x = odd_image()
    with torch.no_grad():
        want = module_net(x)
    got = Stylizer.load(exported["safetensors"], device="cpu").stylize_tensor(x)
    assert (got - want).abs().max() < 1e-4
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        scripted = torch.jit.load(str(exported["torchscript"]))
    with torch.no_grad():
        assert (scripted(x) - want).abs().max() < 1e-3
    import onnxruntime as ort

    session = ort.InferenceSession(str(exported["onnx"]), providers=["CPUExecutionProvider"])
    for shape in [(1, 3, 37, 53), (2, 3, 64, 48), (1, 3, 9, 11)]:  # dynamic batch, height and width
        xi = torch.rand(shape)
        (yi,) = session.run(None, {"image": xi.numpy()})
        with torch.no_grad():
            assert yi.shape == shape and (torch.from_numpy(yi) - module_net(xi)).abs().max() < 1e-3


def test_exports_are_named_after_the_style_and_describe_themselves(exported, tiny_checkpoint):
    import onnx

    style = read_model_file(tiny_checkpoint).style_name
    assert sorted(p.name for p in exported["onnx"].parent.iterdir()) == sorted(
        [f"{style}.safetensors", f"{style}.torchscript.pt", f"{style}.onnx"])  # and no temp files left
    assert re.search(r"onnx check: onnxruntime vs PyTorch at 37x53: max abs diff \d\.\d\de-0[4-9]", exported["stdout"])
    assert re.search(rf"safetensors: .*{style}\.safetensors  \(\d+\.\d MB\)", exported["stdout"])
    props = {p.key: p.value for p in onnx.load(str(exported["onnx"])).metadata_props}
    assert props["style_name"] == style and json.loads(props["arch"])["width"] == 16
    files = {"stylenet.json": ""}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        torch.jit.load(str(exported["torchscript"]), _extra_files=files)
    assert json.loads(files["stylenet.json"])["style_name"] == style


def test_portable_graph_pads_like_the_network_at_any_size():
    torch.manual_seed(0)
    net = TransformerNet(8, 1).eval()
    portable = PortableTransformer(net)
    with torch.no_grad():
        for h, w in [(8, 8), (9, 13), (37, 53), (64, 48)]:
            x = torch.rand(1, 3, h, w)
            assert torch.allclose(portable(x), net(x), atol=1e-6)


def test_onnx_check_catches_a_graph_specialised_to_one_size(tmp_path):
    """Why PortableTransformer exists: a graph traced at 64x48 must not pass the odd-size check."""
    torch.manual_seed(0)
    net = TransformerNet(8, 1).eval()
    path = tmp_path / "bad.onnx"
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        torch.onnx.export(net, (torch.rand(1, 3, 64, 48),), str(path), dynamo=False, input_names=["image"],
                          dynamic_axes={"image": {0: "n", 2: "h", 3: "w"}})
    assert check_onnx(path, net) > 1e-2


def test_graph_exports_default_next_to_their_source(exported, tmp_path):
    src = tmp_path / "copy.safetensors"
    src.write_bytes(exported["safetensors"].read_bytes())
    style = read_model_file(src).style_name
    assert export_torchscript(src) == tmp_path / f"{style}.torchscript.pt"
    assert export_checkpoint(src, fp16=True) == tmp_path / f"{style}.safetensors"


@pytest.mark.slow
def test_export_cli_runs_standalone(tiny_checkpoint, tmp_path):
    run = subprocess.run([sys.executable, str(ROOT / "scripts" / "export.py"), f"ckpt={tiny_checkpoint}", f"out_dir={tmp_path}", "fp16=true"],
                         capture_output=True, text=True, cwd=tmp_path, env=SUBPROCESS_ENV)
    assert run.returncode == 0, run.stderr
    (path,) = tmp_path.iterdir()
    assert path.suffix == ".safetensors" and read_model_file(path).metadata["dtype"] == "float16"
    assert run.stdout.startswith("safetensors: ")


def test_export_cli_errors(tiny_checkpoint, tmp_path, capsys):
    script = load_script("export")
    assert script.main([f"ckpt={tmp_path / 'nope.ckpt'}"]) == 2
    assert capsys.readouterr().err.startswith("error: model file not found")
    assert script.main([f"ckpt={tiny_checkpoint}", "format=tflite"]) == 2
    assert "unknown export format 'tflite'" in capsys.readouterr().err
    assert script.main(["format=onnx"]) == 2
    assert "error: missing ckpt=..." in capsys.readouterr().err
