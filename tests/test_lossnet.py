import os
import shutil
import time

import pytest
import torch
import torchvision

from stylenet.lossnet import IMAGENET_MEAN, IMAGENET_STD, LossNetwork, LossNetworkError, layer_names

from .conftest import SQUEEZENET


def normalise(x):
    return (x - torch.tensor(IMAGENET_MEAN).view(1, 3, 1, 1)) / torch.tensor(IMAGENET_STD).view(1, 3, 1, 1)


@pytest.fixture(scope="module")
def vgg16_file(tmp_path_factory):
    torch.manual_seed(0)
    model = torchvision.models.vgg16()
    path = tmp_path_factory.mktemp("w") / "vgg16.pth"
    torch.save(model.state_dict(), path)
    return model.eval(), path


def test_vgg_layer_names_follow_the_papers():
    vgg16, vgg19 = layer_names("vgg16"), layer_names("vgg19")
    assert vgg16[:5] == ["conv1_1", "relu1_1", "conv1_2", "relu1_2", "pool1"]
    assert {"relu2_2", "relu3_3", "relu4_3", "relu5_3"} <= set(vgg16) and "relu5_4" not in vgg16
    assert {"relu3_4", "relu4_2", "relu4_4", "relu5_1", "relu5_4"} <= set(vgg19)
    assert len(vgg16) == len(torchvision.models.vgg16().features)


def test_squeezenet_layer_names():
    assert layer_names("squeezenet1_1") == [
        "conv1", "relu1", "pool1", "fire2", "fire3", "pool3", "fire4", "fire5", "pool5", "fire6", "fire7", "fire8", "fire9"]


def test_named_layers_match_torchvision_indices(vgg16_file):
    model, path = vgg16_file
    net = LossNetwork("vgg16", ["relu4_3", "relu2_2"], weights=str(path))
    x = torch.rand(1, 3, 48, 40)
    out = net(x)
    with torch.no_grad():
        # torchvision's vgg16.features: relu2_2 is index 8, relu4_3 is index 22
        torch.testing.assert_close(out["relu2_2"], model.features[:9](normalise(x)))
        torch.testing.assert_close(out["relu4_3"], model.features[:23](normalise(x)))
    assert len(net.features) == 23  # truncated after the deepest requested layer
    assert list(out) == ["relu2_2", "relu4_3"]


def test_squeezenet_fire_names_match_torchvision_indices(shared):
    net = LossNetwork("squeezenet1_1", ["fire3", "fire7", "relu1"], weights=str(SQUEEZENET))
    model = torchvision.models.squeezenet1_1()
    model.load_state_dict(torch.load(SQUEEZENET, weights_only=True))
    x = torch.rand(1, 3, 64, 64)
    out = net(x)
    with torch.no_grad():
        torch.testing.assert_close(out["relu1"], model.features[:2](normalise(x)))
        torch.testing.assert_close(out["fire3"], model.features[:5](normalise(x)))
        torch.testing.assert_close(out["fire7"], model.features[:11](normalise(x)))


def test_frozen_and_stays_in_eval_mode():
    net = LossNetwork("vgg16", ["relu1_2"], weights=None)
    net.train()
    assert not net.training and not any(m.training for m in net.modules())
    assert not any(p.requires_grad for p in net.parameters())
    x = torch.rand(1, 3, 16, 16, requires_grad=True)
    net(x)["relu1_2"].sum().backward()
    assert x.grad is not None and x.grad.abs().sum() > 0  # gradients reach the input


def test_returned_activations_are_not_overwritten_in_place():
    net = LossNetwork("vgg16", ["conv1_1", "relu1_1"], weights=None)
    out = net(torch.rand(1, 3, 16, 16) - 0.5)
    assert (out["conv1_1"] < 0).any()  # the ReLU did not clobber the conv output


def test_unknown_layer_lists_the_names():
    with pytest.raises(LossNetworkError, match=r"no layer\(s\) \['relu9_9'\].*relu1_1"):
        LossNetwork("vgg16", ["relu9_9"], weights=None)


def test_unknown_network():
    with pytest.raises(LossNetworkError, match="unknown loss network 'resnet50'.*vgg16"):
        LossNetwork("resnet50", ["relu1_1"], weights=None)


def test_missing_corrupt_and_mismatched_weight_files(tmp_path, vgg16_file):
    with pytest.raises(LossNetworkError, match="not found"):
        LossNetwork("vgg16", ["relu1_2"], weights=str(tmp_path / "nope.pth"))
    bad = tmp_path / "bad.pth"
    bad.write_bytes(b"not a checkpoint")
    with pytest.raises(LossNetworkError, match="cannot read"):
        LossNetwork("vgg16", ["relu1_2"], weights=str(bad))
    with pytest.raises(LossNetworkError, match="do not fit torchvision's squeezenet1_1"):
        LossNetwork("squeezenet1_1", ["fire2"], weights=str(vgg16_file[1]))


def test_torchvision_cache_path_loads_real_weights(shared, tmp_path, monkeypatch):
    """The enum path (`loss.weights=IMAGENET1K_V1`) reads torchvision's hub cache."""
    cache = tmp_path / "hub" / "checkpoints"
    cache.mkdir(parents=True)
    shutil.copy(SQUEEZENET, cache / "squeezenet1_1-b8a52dc0.pth")
    monkeypatch.setenv("TORCH_HOME", str(tmp_path))
    monkeypatch.setattr(torch.hub, "_hub_dir", None)
    from_cache = LossNetwork("squeezenet1_1", ["fire5"], weights="IMAGENET1K_V1")
    from_file = LossNetwork("squeezenet1_1", ["fire5"], weights=str(SQUEEZENET))
    x = torch.rand(1, 3, 32, 32)
    torch.testing.assert_close(from_cache(x)["fire5"], from_file(x)["fire5"])


def test_offline_download_fails_fast_with_a_fix(tmp_path, monkeypatch):
    monkeypatch.setenv("TORCH_HOME", str(tmp_path))
    monkeypatch.setattr(torch.hub, "_hub_dir", None)
    for var in ("https_proxy", "HTTPS_PROXY", "http_proxy", "HTTP_PROXY"):
        monkeypatch.setenv(var, "http://127.0.0.1:9")  # nothing listens: the network is "down"
    monkeypatch.delenv("no_proxy", raising=False)
    monkeypatch.delenv("NO_PROXY", raising=False)
    start = time.monotonic()
    with pytest.raises(LossNetworkError, match=r"could not download squeezenet1_1 weights.*loss.weights=/path/to"):
        LossNetwork("squeezenet1_1", ["fire2"], weights="DEFAULT")
    assert time.monotonic() - start < 15
    assert not any(os.scandir(tmp_path / "hub" / "checkpoints")) if (tmp_path / "hub" / "checkpoints").exists() else True


def test_unknown_weights_name():
    with pytest.raises(LossNetworkError, match="unknown weights 'IMAGENET9'.*IMAGENET1K_V1"):
        LossNetwork("vgg16", ["relu1_2"], weights="IMAGENET9")


def test_a_subset_of_layers_stops_the_pass_early(monkeypatch):
    net = LossNetwork("vgg16", ["relu1_2", "relu4_3"], weights=None)
    x = torch.rand(1, 3, 32, 32)
    calls = []
    for name, module in net.features.named_children():
        module.register_forward_hook(lambda m, i, o, name=name: calls.append(name))
    full = net(x)
    ran_full, calls[:] = len(calls), []
    part = net(x, layers=["relu1_2"])
    assert list(part) == ["relu1_2"] and torch.equal(part["relu1_2"], full["relu1_2"])
    assert calls[-1] == "relu1_2" and len(calls) < ran_full
    with pytest.raises(LossNetworkError, match="not requested"):
        net(x, layers=["relu2_2"])


def _features_only(model, upto: int | None = None) -> dict:
    """A state dict like ../shared's VGG16 file: `features.*` only, optionally cut after index `upto`."""
    keep = {}
    for key, value in model.state_dict().items():
        if key.startswith("features.") and (upto is None or int(key.split(".")[1]) <= upto):
            keep[key] = value.half()  # the shared file stores fp16 values
    return keep


def test_features_only_weights_serve_every_layer_they_cover(vgg16_file, tmp_path):
    from safetensors.torch import save_file

    model, _ = vgg16_file
    path = tmp_path / "vgg16-features.safetensors"
    save_file(_features_only(model), str(path))
    net = LossNetwork("vgg16", ["relu2_2", "relu5_3"], weights=str(path))
    x = torch.rand(1, 3, 32, 32)
    with torch.no_grad():
        expected = model.features[:30](normalise(x))
    torch.testing.assert_close(net(x)["relu5_3"], expected, rtol=2e-2, atol=2e-2)  # fp16-rounded weights
    assert net.features.conv1_1.weight.dtype == torch.float32


def test_weights_missing_a_needed_layer_name_the_missing_keys(vgg16_file, tmp_path):
    model, _ = vgg16_file
    path = tmp_path / "vgg16-to-relu2_2.pth"
    torch.save(_features_only(model, upto=8), path)  # conv1_1 … relu2_2
    LossNetwork("vgg16", ["relu1_2", "relu2_2"], weights=str(path))  # enough for these
    with pytest.raises(LossNetworkError, match=r"missing keys features\.10\.weight, features\.10\.bias"):
        LossNetwork("vgg16", ["relu2_2", "relu3_3"], weights=str(path))
    with pytest.raises(LossNetworkError, match=r"classifier.*missing keys .*classifier\.0\.weight"):
        LossNetwork("vgg16", ["relu1_2", "logits"], weights=str(path))


def test_shared_vgg16_features_file_loads(shared):
    path = shared / "weights" / "vgg16-imagenet-features.safetensors"
    net = LossNetwork("vgg16", ["relu1_2", "relu2_2", "relu3_3", "relu4_3"], weights=str(path))
    out = net(torch.rand(1, 3, 32, 32))
    assert out["relu4_3"].shape == (1, 512, 4, 4) and torch.isfinite(out["relu4_3"]).all()
    with pytest.raises(LossNetworkError, match="classifier"):
        LossNetwork("vgg16", ["logits"], weights=str(path))
