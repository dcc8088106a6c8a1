"""The real-time path's internal resolution: guided upsampling and Stylizer(scale=...)."""

import pytest
import onnxruntime as ort
import torch
import torch.nn.functional as F

from stylenet.inference import Stylizer
from stylenet.modelfile import check_architecture, read_model_file
from stylenet.transformer import TransformerNet
from stylenet.upsample import downscale, guided_upsample, luma, render_scaled


def textured(h=48, w=64, seed=0):
    g = torch.Generator().manual_seed(seed)
    return F.interpolate(torch.rand(1, 1, h // 4, w // 4, generator=g), size=(h, w), mode="bicubic", align_corners=False).clamp(0, 1)


def test_an_output_linear_in_the_guide_comes_back_at_full_resolution():
    """out = 2·guide + 0.1 at low resolution: the local gain is 2 everywhere, so the full-size
    result is 2·(full-size guide) + 0.1, edges the bilinear upsampling lost included."""
    high = textured()
    low = downscale(high, 0.5)
    out = guided_upsample(2 * low + 0.1, low, high, radius=2, eps=1e-8)
    assert out.shape == (1, 1, 48, 64)
    assert torch.allclose(out, 2 * high + 0.1, atol=2e-3)
    bilinear = F.interpolate(2 * low + 0.1, size=(48, 64), mode="bilinear", align_corners=False)
    assert (bilinear - (2 * high + 0.1)).abs().max() > 20 * (out - (2 * high + 0.1)).abs().max()


def test_where_the_photo_is_flat_the_strokes_pass_as_bilinear():
    flat = torch.full((1, 1, 48, 64), 0.5)
    strokes = torch.rand(1, 3, 24, 32)
    out = guided_upsample(strokes, downscale(flat, 0.5), flat, radius=2, eps=1e-3)
    assert torch.allclose(out, F.interpolate(strokes, size=(48, 64), mode="bilinear", align_corners=False), atol=1e-5)


def test_render_scaled_runs_the_network_on_the_smaller_picture():
    seen = []

    def network(x):
        seen.append(tuple(x.shape[-2:]))
        return x * 0.5

    x = textured(60, 80).expand(2, 3, 60, 80).contiguous()  # grey: every channel is its luminance
    assert torch.equal(render_scaled(network, x, 1.0), x * 0.5) and seen == [(60, 80)]
    y = render_scaled(network, x, 0.5)
    assert seen[-1] == (30, 40) and y.shape == x.shape
    # a network that only scales a grey picture is linear in its luminance: guided upsampling restores it
    assert (y - x * 0.5).abs().mean() < 0.5 * (render_scaled(network, x, 0.5, mode="bilinear") - x * 0.5).abs().mean()
    with pytest.raises(ValueError, match="scale"):
        render_scaled(network, x, 1.5)
    with pytest.raises(ValueError, match="upsample mode"):
        render_scaled(network, x, 0.5, mode="nearest")


def test_stylizer_scale_keeps_the_size_and_does_a_quarter_of_the_work(tmp_path):
    torch.manual_seed(0)
    net = TransformerNet(width=8, num_residual=1, kernel=5, separable=True)
    sizes = []
    net.encoder.register_forward_pre_hook(lambda module, args: sizes.append(tuple(args[0].shape[-2:])))
    fast = Stylizer(net, device="cpu", scale=0.5)
    y = fast.stylize_tensor(torch.rand(1, 3, 64, 96))
    assert y.shape == (1, 3, 64, 96) and sizes == [(32, 48)]
    assert 0 <= float(y.min()) and float(y.max()) <= 1
    with pytest.raises(ValueError, match="scale"):
        Stylizer(net, device="cpu", scale=0)
    with pytest.raises(ValueError, match="upsample mode"):
        Stylizer(net, device="cpu", scale=0.5, upsample={"mode": "lanczos"})


def test_luma_is_bt601():
    x = torch.tensor([1.0, 0.0, 0.0]).view(1, 3, 1, 1)
    assert torch.allclose(luma(x), torch.tensor(0.299))


@pytest.mark.parametrize("model,arch", [("mobile", {"kernel": 5, "separable": True, "shuffle": 1}),
                                        ("realtime", {"kernel": 3, "separable": False, "shuffle": 2})])
def test_real_time_networks_train_export_and_run(tmp_path, one_thread, model, arch):
    """The real-time networks are one flag away everywhere: train with model=mobile or
    model=realtime, the export records it (and its ONNX and TorchScript graphs agree, odd sizes
    included), the Stylizer runs it (also at scale=0.5)."""
    from stylenet.export import export
    from stylenet.train import run

    from .conftest import compose, make_images, tiny_overrides

    last = run(compose([*tiny_overrides(tmp_path, make_images(tmp_path / "photos")), f"model={model}"]), tmp_path / "run")
    paths = export(last, formats=("safetensors", "onnx", "torchscript"), out_dir=tmp_path / "export")
    safetensors = paths["safetensors"]
    _, recorded = check_architecture(read_model_file(safetensors))  # the file's arch, defaults filled in
    assert {k: recorded[k] for k in arch} == arch
    stylizer = Stylizer.load(safetensors, device="cpu", scale=0.5)
    x = torch.rand(1, 3, 48, 64)
    assert stylizer.stylize_tensor(x).shape == x.shape
    full = Stylizer.load(safetensors, device="cpu")
    session = ort.InferenceSession(str(paths["onnx"]), providers=["CPUExecutionProvider"])
    (onnx_out,) = session.run(None, {"image": x.numpy()})
    assert torch.allclose(torch.from_numpy(onnx_out), full.stylize_tensor(x), atol=1e-4)
    odd = torch.rand(1, 3, 37, 53)
    with torch.no_grad():
        assert torch.allclose(torch.jit.load(str(paths["torchscript"]))(odd), full.stylize_tensor(odd), atol=1e-5)


def test_separable_box_equals_the_2d_window_mean_borders_included():
    from stylenet.upsample import box

    x = torch.rand(2, 5, 13, 17)
    expected = F.avg_pool2d(x, 5, stride=1, padding=2, count_include_pad=False)
    assert torch.allclose(box(x, 2), expected, atol=1e-6)


def test_infer_benchmark_puts_the_real_time_path_beside_the_full_network(capsys, one_thread):
    from .conftest import load_script

    bench = load_script("benchmark")
    code = bench.main(["mode=infer", "models=[full,realtime]", "variants=[fp32]", "sizes=[160x120]", "repeat=1", "device=cpu"])
    out = capsys.readouterr().out
    assert code == 0
    assert "| realtime (model=realtime) | fp32 eager (cpu) |" in out and "| full (32ch, 5 res)" in out
    last = out.strip().splitlines()[-1]
    assert last.startswith("realtime/full fps ratio at 160x120: ") and float(last.rsplit(" ", 1)[1]) > 2
    # the other real-time path: model=mobile on a half-size copy, upsampled along the photo's edges
    assert bench.main(["mode=infer", "models=[realtime]", "realtime.model=mobile", "realtime.scale=0.5", "variants=[fp32]",
                       "sizes=[160x120]", "repeat=1", "device=cpu"]) == 0
    assert "| realtime (model=mobile at 0.5x, guided) | fp32 eager (cpu) |" in capsys.readouterr().out
