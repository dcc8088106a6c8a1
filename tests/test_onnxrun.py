"""ONNX Runtime as the Stylizer's fp32 CPU engine (stylenet.onnxrun)."""

import pytest
import torch

from stylenet import onnxrun
from stylenet.inference import Stylizer
from stylenet.onnxrun import BackendError, OnnxNetwork, cached_graph, pick
from stylenet.transformer import TransformerNet

CPU, CUDA = torch.device("cpu"), torch.device("cuda")


@pytest.fixture
def realtime_net() -> TransformerNet:
    torch.manual_seed(0)
    return TransformerNet(width=8, num_residual=1, kernel=3, shuffle=2).eval()


def test_it_gives_the_pytorch_result_and_exports_once(realtime_net, tmp_path, monkeypatch, one_thread):
    monkeypatch.setenv("STYLENET_CACHE", str(tmp_path))
    fast = Stylizer(realtime_net, device="cpu", precision="fp32", backend="onnxruntime")
    assert fast.backend == "onnxruntime" and fast.engine == "ONNX Runtime, fp32, cpu"
    graphs = list((tmp_path / "onnx").glob("*.onnx"))
    assert len(graphs) == 1 and graphs[0].name == f"{onnxrun.weights_key(realtime_net)}.onnx"
    reference = Stylizer(realtime_net, device="cpu", precision="fp32")
    assert reference.backend == "torch"
    x = torch.rand(2, 3, 37, 53)
    assert torch.allclose(fast.stylize_tensor(x), reference.stylize_tensor(x), atol=1e-4)
    # the second time it opens the cached graph: no export
    monkeypatch.setattr("stylenet.export.write_onnx", lambda *a, **k: pytest.fail("exported again"))
    again = Stylizer(realtime_net, device="cpu", precision="fp32", backend="onnxruntime")
    assert torch.allclose(again.stylize_tensor(x), reference.stylize_tensor(x), atol=1e-4)


def test_other_weights_get_their_own_graph_and_tiny_inputs_run_in_pytorch(realtime_net, tmp_path, one_thread):
    other = TransformerNet(width=8, num_residual=1, kernel=3, shuffle=2).eval()
    assert onnxrun.weights_key(other) != onnxrun.weights_key(realtime_net)
    key = onnxrun.weights_key(other)
    assert onnxrun.weights_key(other.use_phase_upsample(False)) != key  # the classic upsampling is another graph
    assert onnxrun.weights_key(other.use_phase_upsample(True)) == key
    net = OnnxNetwork(realtime_net, folder=tmp_path)
    assert net.path == cached_graph(realtime_net, tmp_path) and not net.fits(torch.rand(1, 3, 12, 40))
    s = Stylizer(realtime_net, device="cpu", precision="fp32", backend="onnxruntime")
    tiny = torch.rand(1, 3, 12, 40)  # below the graph's 16 px: PyTorch pads it
    assert torch.allclose(s.stylize_tensor(tiny), Stylizer(realtime_net, device="cpu", precision="fp32").stylize_tensor(tiny),
                          atol=1e-6)


def test_a_multi_style_network_takes_its_blend(tmp_path, one_thread):
    torch.manual_seed(1)
    net = TransformerNet(width=8, num_residual=1, num_styles=3).eval()
    for module in net.modules():  # distinct styles, so a wrong blend would show
        if hasattr(module, "num_styles") and isinstance(getattr(module, "weight", None), torch.nn.Parameter):
            torch.nn.init.uniform_(module.weight, 0.5, 1.5)
            torch.nn.init.uniform_(module.bias, -0.5, 0.5)
    onnx = OnnxNetwork(net, folder=tmp_path)
    x = torch.rand(2, 3, 24, 32)
    blend = torch.tensor([0.7, 0.3, 0.0])
    with torch.no_grad():
        assert torch.allclose(onnx(x, blend), net(x, blend), atol=1e-4)
        assert torch.allclose(onnx(x, None), net(x, 0), atol=1e-4)
        assert not torch.allclose(onnx(x, blend), onnx(x, None), atol=1e-3)


def test_a_cached_graph_that_no_longer_opens_is_made_anew(realtime_net, tmp_path, one_thread):
    path = cached_graph(realtime_net, tmp_path)
    path.write_bytes(b"not an onnx graph")
    net = OnnxNetwork(realtime_net, folder=tmp_path)
    assert path.stat().st_size > 1000
    with torch.no_grad():
        x = torch.rand(1, 3, 32, 32)
        assert torch.allclose(net(x), realtime_net(x), atol=1e-4)


def test_auto_picks_onnxruntime_only_for_fp32_on_a_cpu(monkeypatch):
    fp32, bf16 = torch.float32, torch.bfloat16
    assert pick("auto", CPU, fp32, compile=False) == "onnxruntime"
    assert pick("auto", CPU, bf16, compile=False) == "torch"
    assert pick("auto", CUDA, fp32, compile=False) == "torch"
    assert pick("auto", CPU, fp32, compile=True) == "torch"
    assert pick("torch", CPU, fp32, compile=False) == "torch"
    with pytest.raises(BackendError, match="runs on the CPU"):
        pick("onnxruntime", CUDA, fp32, compile=False)
    with pytest.raises(BackendError, match="precision=fp32"):
        pick("onnxruntime", CPU, bf16, compile=False)
    with pytest.raises(BackendError, match="compile=true"):
        pick("onnxruntime", CPU, fp32, compile=True)
    with pytest.raises(BackendError, match="use auto, torch, onnxruntime"):
        pick("tensorrt", CPU, fp32, compile=False)
    monkeypatch.setattr(onnxrun, "available", lambda: False)
    assert pick("auto", CPU, fp32, compile=False) == "torch"
    with pytest.raises(BackendError, match="pip install onnxruntime"):
        pick("onnxruntime", CPU, fp32, compile=False)


def test_backend_onnxruntime_makes_precision_auto_fp32(realtime_net, tmp_path, monkeypatch):
    monkeypatch.setenv("STYLENET_CACHE", str(tmp_path))
    monkeypatch.setattr("stylenet.device.cpu_has_fast_bf16", lambda: True)
    assert Stylizer(realtime_net, device="cpu", backend="auto").backend == "torch"  # bf16 here: PyTorch
    s = Stylizer(realtime_net, device="cpu", backend="onnxruntime")
    assert s.dtype == torch.float32 and s.backend == "onnxruntime"


def test_a_skip_network_runs_the_same_in_onnx_runtime(tmp_path, monkeypatch, one_thread):
    """model=realtime model.skip=true: the photo's detail (its box blur, the clamp) exports too."""
    monkeypatch.setenv("STYLENET_CACHE", str(tmp_path))
    torch.manual_seed(0)
    net = TransformerNet(width=8, num_residual=1, kernel=3, shuffle=2, skip=True).eval()
    with torch.no_grad():
        net.skip_gain.copy_(torch.tensor([0.9, 1.0, 3.0]))
    x = torch.rand(2, 3, 37, 53)
    x[0, :, :3] = 0.0  # clamped pixels too
    fast = Stylizer(net, device="cpu", precision="fp32", backend="onnxruntime")
    assert fast.backend == "onnxruntime"
    torch.testing.assert_close(fast.stylize_tensor(x), Stylizer(net, device="cpu", precision="fp32").stylize_tensor(x),
                               atol=1e-4, rtol=0)
