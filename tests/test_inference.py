"""Stylizer: safe loading, every input type, strength / colour options, tiling without seams."""

import json
import os
import pickle
import subprocess
import sys

import numpy as np
import pytest
import torch
from PIL import Image
from safetensors.torch import save_file

from stylenet.inference import Stylizer, luma
from stylenet.modelfile import FORMAT, ModelLoadError, read_model_file
from stylenet.presets import resolve_model
from stylenet.tiling import FrozenNormStats, receptive_radius, tile_starts, tiled_forward
from stylenet.transformer import TransformerNet

from .conftest import CHICAGO, ROOT, SUBPROCESS_ENV



pytestmark = pytest.mark.usefixtures("one_thread")


def photo(w: int = 45, h: int = 31) -> Image.Image:
    from stylenet.imageio import load_image

    return load_image(CHICAGO).resize((w, h), Image.BICUBIC)


# -- loading --------------------------------------------------------------------------------
def test_inference_imports_no_training_stack():
    code = ("import sys, stylenet.inference, stylenet.video; "
            "print(sorted({m.split('.')[0] for m in sys.modules} & {'pytorch_lightning', 'lightning', 'hydra', "
            "'omegaconf', 'torchvision', 'wandb'}), [m for m in sys.modules if m in ('stylenet.lossnet', 'stylenet.module')])")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT, check=True, env=SUBPROCESS_ENV).stdout
    assert out.strip() == "[] []"


def test_export_and_checkpoint_load_the_same_network(stylizer, tiny_checkpoint):
    from_ckpt = Stylizer.load(tiny_checkpoint, device="cpu")
    x = torch.rand(2, 3, 29, 35)
    assert torch.equal(stylizer.stylize_tensor(x), from_ckpt.stylize_tensor(x))
    assert stylizer.name == from_ckpt.name == "hokusai"
    assert stylizer.device.type == "cpu" and stylizer.dtype == torch.float32 and not stylizer.channels_last
    assert stylizer.net.arch() == {"width": 16, "num_residual": 3, "num_styles": 1, "kernel": 9, "separable": False, "shuffle": 1,
                                   "skip": False}


def test_preset_name_resolves_to_its_export(tmp_path, export_path):
    folder = tmp_path / "checkpoints" / "wave"
    folder.mkdir(parents=True)
    (folder / "wave.safetensors").write_bytes(export_path.read_bytes())
    assert resolve_model("wave", roots=[tmp_path]) == folder / "wave.safetensors"
    with pytest.raises(ModelLoadError, match=r"no model file or preset named 'scream' \(shipped presets: .*; your exports: wave\)"):
        resolve_model("scream", roots=[tmp_path])


# -- every bad file: one clear error, no code run ----------------------------------------------
def test_missing_file_and_folder(tmp_path):
    with pytest.raises(ModelLoadError, match="model file not found"):
        Stylizer.load(tmp_path / "nope.safetensors")
    with pytest.raises(ModelLoadError, match="expected a model file, got a folder"):
        read_model_file(tmp_path)


@pytest.mark.parametrize("fraction", [0.5, 0.999])
def test_truncated_export(export_path, tmp_path, fraction):
    data = export_path.read_bytes()
    bad = tmp_path / "cut.safetensors"
    bad.write_bytes(data[: int(len(data) * fraction)])
    with pytest.raises(ModelLoadError, match=r"cannot read .*cut\.safetensors.*truncated or corrupt, re-export it"):
        Stylizer.load(bad)


def test_truncated_checkpoint(tiny_checkpoint, tmp_path):
    bad = tmp_path / "last.ckpt"
    bad.write_bytes(tiny_checkpoint.read_bytes()[:5000])
    with pytest.raises(ModelLoadError, match="truncated, corrupt or not a checkpoint"):
        Stylizer.load(bad)


NOT_A_MODEL = "is not a stylenet model file .neither safetensors nor a PyTorch checkpoint"


@pytest.mark.parametrize("name, content, message", [
    ("photo.safetensors", None, NOT_A_MODEL),  # a JPEG renamed
    ("notes.ckpt", b"just some text, not a model\n", NOT_A_MODEL),
    ("empty.safetensors", b"", r"the file is empty \(0 bytes\)"),
])
def test_non_model_files(tmp_path, name, content, message):
    path = tmp_path / name
    if content is None:
        photo().save(path, format="JPEG")
    else:
        path.write_bytes(content)
    with pytest.raises(ModelLoadError, match=message):
        Stylizer.load(path)


def test_foreign_safetensors_is_not_a_style(tmp_path):
    path = tmp_path / "resnet.safetensors"
    save_file({"fc.weight": torch.zeros(2, 2)}, str(path))
    with pytest.raises(ModelLoadError, match=f"not a stylenet export .no format='{FORMAT}' metadata"):
        Stylizer.load(path)


def test_export_whose_header_length_starts_like_a_pickle_loads(export_path, tmp_path):
    """The 8-byte safetensors header length can begin with 0x80, a pickle's first opcode: a
    real starry_night export with a 6272-byte header was refused as a checkpoint."""
    first_byte = 0x80
    model = read_model_file(export_path)
    path = tmp_path / "padded.safetensors"
    for pad in range(0, 600):
        save_file(model.state_dict, str(path), metadata={**model.metadata, "pad": "x" * pad})
        if path.read_bytes()[0] == first_byte:
            break
    assert path.read_bytes()[0] == first_byte
    stylizer = Stylizer.load(path, device="cpu")
    x = torch.rand(1, 3, 16, 16)
    torch.testing.assert_close(stylizer.stylize_tensor(x), Stylizer.load(export_path, device="cpu").stylize_tensor(x))


def test_different_architecture(export_path, tmp_path):
    """Weights of a width-16 net under metadata claiming the default width-32 net."""
    model = read_model_file(export_path)
    path = tmp_path / "liar.safetensors"
    meta = {**model.metadata, "arch": json.dumps({"class": "TransformerNet", "width": 32, "num_residual": 5})}
    save_file(model.state_dict, str(path), metadata=meta)
    with pytest.raises(ModelLoadError, match=r"metadata says width=32, num_residual=5, num_styles=1, kernel=9, separable=False, shuffle=1, skip=False, but its weights are a TransformerNet with width=16, num_residual=3, num_styles=1, kernel=9"):
        Stylizer.load(path)
    meta["arch"] = json.dumps({"class": "VisionTransformer", "width": 32})
    save_file(model.state_dict, str(path), metadata=meta)
    with pytest.raises(ModelLoadError, match="made for architecture 'VisionTransformer'"):
        Stylizer.load(path)
    meta["format_version"] = "99"
    save_file(model.state_dict, str(path), metadata=meta)
    with pytest.raises(ModelLoadError, match="format 99.*upgrade stylenet"):
        Stylizer.load(path)


def test_checkpoint_of_something_else(tmp_path):
    path = tmp_path / "other.ckpt"
    torch.save({"state_dict": {"backbone.weight": torch.zeros(3)}, "hyper_parameters": {}}, path)
    with pytest.raises(ModelLoadError, match="is a checkpoint but not a stylenet one"):
        Stylizer.load(path)
    torch.save({"weight": torch.zeros(3)}, path)
    with pytest.raises(ModelLoadError, match="not a Lightning checkpoint .no state_dict"):
        Stylizer.load(path)


class _Payload:
    def __reduce__(self):
        return (os.system, (f"touch {os.environ['STYLENET_PWNED']}",))


def test_pickled_code_is_never_run(tmp_path, monkeypatch):
    marker = tmp_path / "pwned"
    monkeypatch.setenv("STYLENET_PWNED", str(marker))
    path = tmp_path / "evil.ckpt"
    torch.save({"state_dict": {}, "hyper_parameters": _Payload()}, path)
    with pytest.raises(ModelLoadError, match=r"holds Python objects \(posix.system\) that would run code when unpickled; refusing") as refused:
        Stylizer.load(path)
    assert "weights_only" not in str(refused.value)  # never torch's advice to load it with weights_only=False
    legacy = tmp_path / "evil_legacy.pth"
    legacy.write_bytes(pickle.dumps(_Payload(), protocol=2))
    with pytest.raises(ModelLoadError, match="cannot load"):
        Stylizer.load(legacy)
    assert not marker.exists()


def test_graph_files_are_pointed_elsewhere(tmp_path):
    ts = tmp_path / "style.torchscript.pt"
    with pytest.warns(FutureWarning):
        torch.jit.save(torch.jit.script(torch.nn.ReLU()), str(ts))
    with pytest.raises(ModelLoadError, match="TorchScript archive; load it with torch.jit.load"):
        Stylizer.load(ts)
    (tmp_path / "style.onnx").write_bytes(b"\x08\x07")
    with pytest.raises(ModelLoadError, match="ONNX graph: run it with onnxruntime"):
        Stylizer.load(tmp_path / "style.onnx")


# -- inputs and outputs --------------------------------------------------------------------
def test_stylize_tensor_contract(stylizer):
    """What stylenet.optimize relies on: (B,3,H,W) in [0,1] → same shape/dtype/device, input untouched."""
    x = torch.rand(3, 3, 17, 23)
    before = x.clone()
    y = stylizer.stylize_tensor(x)
    assert y.shape == x.shape and y.dtype == x.dtype and y.device == x.device and not y.requires_grad
    assert torch.equal(x, before) and 0 <= y.min() and y.max() <= 1 and (y - x).abs().mean() > 0.01
    with torch.no_grad():
        assert torch.allclose(y, stylizer.net(x), atol=1e-6)
    assert torch.allclose(stylizer.stylize_tensor(x[1]), y[1], atol=1e-6)  # (3,H,W) works too
    with pytest.raises(ValueError, match=r"expected a float tensor \(B,3,H,W\)"):
        stylizer.stylize_tensor(torch.rand(1, 4, 8, 8))


def test_pil_numpy_bgr_and_batches_agree(stylizer):
    image = photo(45, 31)  # odd size
    rgb = np.asarray(image)
    out_pil = stylizer.stylize(image)
    assert isinstance(out_pil, Image.Image) and out_pil.size == (45, 31) and out_pil.mode == "RGB"
    out_rgb = stylizer.stylize(rgb)
    assert out_rgb.dtype == np.uint8 and out_rgb.shape == (31, 45, 3)
    np.testing.assert_array_equal(out_rgb, np.asarray(out_pil))
    out_bgr = stylizer.stylize(np.ascontiguousarray(rgb[..., ::-1]), bgr=True)  # an OpenCV frame
    np.testing.assert_array_equal(out_bgr[..., ::-1], out_rgb)
    batch = stylizer.stylize(np.stack([rgb, rgb[::-1].copy()]))
    assert batch.shape == (2, 31, 45, 3)
    assert np.abs(batch[0].astype(int) - out_rgb).max() <= 1
    out_float = stylizer.stylize(rgb.astype(np.float32) / 255)
    assert out_float.dtype == np.float32 and np.abs(out_float * 255 - out_rgb).max() <= 0.51
    mixed = stylizer.stylize([image, photo(20, 12), image])  # lists: same sizes batched, order kept
    assert [m.size for m in mixed] == [(45, 31), (20, 12), (45, 31)]
    assert np.abs(np.asarray(mixed[2], dtype=int) - out_rgb).max() <= 1
    with pytest.raises(ValueError, match=r"expected an image array \(H,W,3\)"):
        stylizer.stylize(np.zeros((8, 8), np.uint8))
    with pytest.raises(TypeError, match="cannot stylize a str"):
        stylizer.stylize("photo.jpg")


@pytest.mark.parametrize("h, w", [(1, 1), (3, 5), (7, 9), (33, 17)])
def test_any_size_comes_back_the_same_size(stylizer, h, w):
    assert stylizer.stylize_tensor(torch.rand(1, 3, h, w)).shape == (1, 3, h, w)


def test_strength(stylizer):
    x = torch.rand(2, 3, 24, 20)
    assert torch.equal(stylizer.stylize_tensor(x, strength=0), x)
    image = photo()
    assert np.array_equal(np.asarray(stylizer.stylize(image, strength=0)), np.asarray(image))
    full = stylizer.stylize_tensor(x)
    assert torch.allclose(stylizer.stylize_tensor(x, strength=0.25), 0.75 * x + 0.25 * full, atol=1e-6)
    with pytest.raises(ValueError, match="strength must be between 0 and 1"):
        stylizer.stylize_tensor(x, strength=1.5)


def test_preserve_color_keeps_the_photo_chroma(stylizer):
    """Checked with PIL's own YCbCr conversion: Cb/Cr of the input, Y of the stylized picture."""
    image = photo(64, 48)
    kept = stylizer.stylize(image, preserve_color=True).convert("YCbCr")
    plain = stylizer.stylize(image).convert("YCbCr")
    src = np.asarray(image.convert("YCbCr"), dtype=float)
    got, styled = np.asarray(kept, dtype=float), np.asarray(plain, dtype=float)
    chroma_err = np.abs(got[..., 1:] - src[..., 1:])
    assert np.median(chroma_err) <= 1 and chroma_err.mean() < 1.5  # clipping at saturated pixels aside
    assert np.abs(styled[..., 1:] - src[..., 1:]).mean() > 3 * chroma_err.mean()  # plain transfer changes colour
    assert np.abs(got[..., 0] - styled[..., 0]).mean() < 2  # the luminance is the style's
    x = torch.rand(1, 3, 16, 16) * 0.5 + 0.25
    y = stylizer.stylize_tensor(x, preserve_color=True)
    assert torch.allclose(luma(y), luma(stylizer.stylize_tensor(x)), atol=1e-5)


# -- tiling ---------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def slim_net() -> TransformerNet:
    """Narrow (cheap) but with two residual blocks: a 30-px receptive radius to tile around."""
    torch.manual_seed(0)
    return TransformerNet(8, 2).eval()


@pytest.fixture(scope="module")
def shuffle_net() -> TransformerNet:
    """model=realtime's kind: 3x3 ends, run at half size inside (shuffle 2)."""
    torch.manual_seed(0)
    return TransformerNet(8, 2, kernel=3, shuffle=2).eval()


def tile_edges(length: int, tile: int, net: TransformerNet) -> list[int]:
    """Where tiles start/end inside the image (the places a seam would appear)."""
    m = net.size_multiple
    overlap = 2 * (-(-receptive_radius(net) // m) * m + m) + -(-32 // m) * m
    starts = tile_starts(length, tile, overlap, m)
    return sorted({s for s in starts[1:]} | {s + tile for s in starts[:-1]})


@pytest.mark.parametrize("name", ["slim_net", "shuffle_net"])
def test_receptive_radius_is_what_the_network_sees(name, request):
    net = request.getfixturevalue(name)
    radius, reach = receptive_radius(net), 0
    x = torch.rand(1, 3, 160, 160)
    with torch.no_grad(), FrozenNormStats(net) as norms:
        net(x)
        norms.mode = "apply"
        base = net(x)
        for at in range(76, 84):  # every phase of the strides and upsamplings
            poked = x.clone()
            poked[..., at, at] += 1
            changed = ((net(poked) - base).abs().amax(dim=(0, 1)) > 1e-7).nonzero()
            reach = max(reach, int((changed - at).abs().max()))
    assert reach <= radius <= reach + net.shuffle  # a bound, and a tight one
    assert radius == {"slim_net": 33, "shuffle_net": 2 * (2 + 9 + 16) + 1}[name]


@pytest.mark.parametrize("name", ["slim_net", "shuffle_net"])
def test_tiled_equals_untiled_when_statistics_are_exact(name, request):
    net = request.getfixturevalue(name)
    x = torch.rand(1, 3, 256, 400, generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        full = net(x)
    tiled = tiled_forward(net, x, tile=208, stats_pixels=256 * 400)
    assert len(tile_edges(400, 208, net)) >= 2 and len(tile_edges(256, 208, net)) >= 1
    assert (tiled - full).abs().max() < 1e-4  # everywhere, tile borders included


def test_tiles_with_downscaled_statistics_show_no_seam(slim_net):
    """Big-image mode: statistics from a 4x smaller copy. The result differs from untiled a little,
    smoothly: the difference does not jump across tile borders more than anywhere else."""
    gen = torch.Generator().manual_seed(2)
    base = torch.nn.functional.interpolate(torch.rand(1, 3, 26, 40, generator=gen), size=(256, 400), mode="bicubic")
    x = (base + 0.05 * torch.rand(1, 3, 256, 400, generator=gen)).clamp(0, 1)  # photo-like: smooth + grain
    with torch.no_grad():
        full = slim_net(x)
    tiled = tiled_forward(slim_net, x, tile=208, stats_pixels=256 * 400 // 16)
    diff = (tiled - full).abs()
    assert 1e-3 < diff.mean() < 0.1
    jumps = (tiled[..., 1:] - tiled[..., :-1]).abs().mean(dim=(0, 1, 2))  # per column boundary
    ref_jumps = (full[..., 1:] - full[..., :-1]).abs().mean(dim=(0, 1, 2))
    for edge in tile_edges(400, 208, slim_net):
        assert jumps[edge - 1] < ref_jumps[edge - 1] * 1.5 + 1e-3, f"seam at column {edge}"
    # every tile used the same statistics: identical to one untiled pass with those statistics
    with torch.no_grad(), FrozenNormStats(slim_net) as norms:
        slim_net(torch.nn.functional.interpolate(x, scale_factor=0.25, mode="area"))
        norms.mode = "apply"
        same_stats = slim_net(x)
    assert (tiled - same_stats).abs().max() < 1e-4


def test_uint8_tiling_matches_float_tiling(slim_net):
    """Big photos are tiled as uint8 (no float copy of the whole image): the same result as the
    float path to within rounding, with statistics from the same (chunked) area downscale."""
    from stylenet.tiling import _area_downscale

    gen = torch.Generator().manual_seed(3)
    x8 = (torch.rand(1, 3, 300, 420, generator=gen) * 255).round().to(torch.uint8)
    x = x8.float() / 255
    down = _area_downscale(x8, 0.3, torch.float32, rows=7)
    assert (down - torch.nn.functional.interpolate(x, scale_factor=0.3, mode="area")).abs().max() < 1e-5
    tiled = tiled_forward(slim_net, x, tile=208, stats_pixels=120 * 160)
    tiled8 = tiled_forward(slim_net, x8, tile=208, stats_pixels=120 * 160)
    assert tiled8.dtype == torch.uint8 and tiled8.shape == x8.shape
    assert (tiled8.float() - tiled.mul(255).round()).abs().max() <= 1


def test_stylizer_tiles_large_images_automatically(slim_net):
    s = Stylizer(slim_net, device="cpu", max_pixels=120 * 120, tile_size=232)
    seen = []
    hook = s.net.register_forward_pre_hook(lambda m, args: seen.append(tuple(args[0].shape[-2:])))
    image = photo(400, 260)
    out = s.stylize(image)
    assert out.size == (400, 260)
    stats_pass, tiles = seen[0], seen[1:]
    assert stats_pass[0] * stats_pass[1] <= 120 * 120 and len(tiles) >= 4
    assert all(h <= 235 and w <= 235 for h, w in tiles)  # the network never sees the whole image
    hook.remove()
    untiled = np.asarray(s.stylize(image, tile=False), dtype=float)
    assert np.abs(np.asarray(out, dtype=float) - untiled).mean() < 8  # same picture, statistics aside


def test_precision_auto_is_bf16_only_where_the_cpu_runs_it_natively(export_path, monkeypatch):
    from stylenet.device import inference_dtype

    cpu, cuda = torch.device("cpu"), torch.device("cuda")
    monkeypatch.setattr("stylenet.device.cpu_has_fast_bf16", lambda: True)
    assert inference_dtype("auto", cpu) == torch.bfloat16 and inference_dtype("auto", cuda) == torch.float32
    assert inference_dtype("fp32", cpu) == torch.float32
    native = Stylizer.load(export_path, device="cpu")
    assert native.dtype == torch.bfloat16
    x = torch.rand(1, 3, 40, 56)
    y, reference = native.stylize_tensor(x), Stylizer.load(export_path, device="cpu", precision="fp32").stylize_tensor(x)
    assert y.dtype == torch.float32 and (y - reference).abs().mean() < 2 / 255  # invisible in 8-bit output
    monkeypatch.setattr("stylenet.device.cpu_has_fast_bf16", lambda: False)
    assert inference_dtype("auto", cpu) == torch.float32


def test_skip_is_read_from_the_weights_not_trusted_from_the_metadata(export_path, tmp_path):
    """skip has a weight (its gain): metadata claiming a skip the weights lack is refused."""
    model = read_model_file(export_path)
    arch = {**json.loads(model.metadata["arch"]), "skip": True}
    path = tmp_path / "liar.safetensors"
    save_file(model.state_dict, str(path), metadata={**model.metadata, "arch": json.dumps(arch)})
    with pytest.raises(ModelLoadError, match=r"metadata says .*skip=True, but its weights are a TransformerNet with .*skip=False"):
        Stylizer.load(path)
    skipped = {**model.state_dict, "skip_gain": torch.full((3,), 0.5)}
    save_file(skipped, str(path), metadata={**model.metadata, "arch": json.dumps(arch)})
    stylizer = Stylizer.load(path, device="cpu")
    assert stylizer.net.arch()["skip"] and torch.equal(stylizer.net.skip_gain.detach(), torch.full((3,), 0.5))
