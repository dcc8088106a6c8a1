import pytest
import torch
from torch import nn

from stylenet.transformer import TransformerNet


@pytest.fixture(scope="module")
def net():
    torch.manual_seed(0)
    return TransformerNet().eval()


@pytest.mark.parametrize("shape", [(2, 3, 64, 64), (1, 3, 37, 53), (1, 3, 255, 17), (1, 3, 3, 5), (1, 3, 1, 1)])
def test_output_has_input_shape_and_range(net, shape):
    with torch.no_grad():
        y = net(torch.rand(shape))
    assert y.shape == shape
    assert y.min() >= 0 and y.max() <= 1


def test_johnson_architecture():
    net = TransformerNet()
    convs = [m for m in net.modules() if isinstance(m, nn.Conv2d)]
    assert [c.out_channels for c in convs[:3]] == [32, 64, 128]
    assert len(net.residuals) == 5
    assert all(isinstance(m, nn.Sequential) or True for m in net.residuals)
    assert not any(isinstance(m, nn.ConvTranspose2d) for m in net.modules())  # resize-convolution only
    assert any(isinstance(m, nn.ReflectionPad2d) for m in net.modules())
    assert not any(isinstance(m, nn.BatchNorm2d) for m in net.modules())
    assert sum(isinstance(m, nn.InstanceNorm2d) for m in net.modules()) == 3 + 2 * 5 + 2
    assert net.arch() == {"width": 32, "num_residual": 5}


def test_width_and_depth_are_knobs():
    full, slim = TransformerNet(), TransformerNet(width=16, num_residual=3)
    count = lambda m: sum(p.numel() for p in m.parameters())  # noqa: E731
    assert len(slim.residuals) == 3
    assert count(slim) < count(full) / 3
    assert slim(torch.rand(1, 3, 20, 24)).shape == (1, 3, 20, 24)


def test_images_are_stylized_independently_of_their_batch(net):
    """Instance norm: an image's result does not depend on the other images in its batch."""
    x = torch.rand(3, 3, 32, 32)
    with torch.no_grad():
        batched = net(x)
        single = net(x[1:2])
    torch.testing.assert_close(batched[1:2], single, atol=1e-5, rtol=1e-4)


def test_gradients_reach_every_parameter():
    net = TransformerNet(width=8, num_residual=1)
    net(torch.rand(2, 3, 16, 16)).mean().backward()
    assert all(p.grad is not None and p.grad.abs().sum() > 0 for p in net.parameters())
