import pytest
import torch
from torch import nn

from stylenet.transformer import ConditionalInstanceNorm2d, ResidualBlock, TransformerNet, append_styles, fine_detail


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
    for block in net.residuals:  # each: two 3x3 convs over 128 channels, with an identity skip
        assert isinstance(block, ResidualBlock)
        assert [(c.in_channels, c.out_channels, c.kernel_size) for c in block.modules() if isinstance(c, nn.Conv2d)] == \
            [(128, 128, (3, 3))] * 2
    assert not any(isinstance(m, nn.ConvTranspose2d) for m in net.modules())  # resize-convolution only
    assert any(isinstance(m, nn.ReflectionPad2d) for m in net.modules())
    assert not any(isinstance(m, nn.BatchNorm2d) for m in net.modules())
    assert sum(isinstance(m, nn.InstanceNorm2d) for m in net.modules()) == 3 + 2 * 5 + 2
    assert net.arch() == {"width": 32, "num_residual": 5, "num_styles": 1, "kernel": 9, "separable": False, "shuffle": 1, "skip": False}


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


# -- several styles: conditional instance norm ------------------------------------------------
def test_one_style_is_the_plain_network_key_for_key():
    """num_styles=1 builds exactly the network every existing file was saved from."""
    shapes = {k: tuple(v.shape) for k, v in TransformerNet(4, 1).state_dict().items()}
    assert shapes == {
        "encoder.0.1.weight": (4, 3, 9, 9), "encoder.0.1.bias": (4,), "encoder.0.2.weight": (4,), "encoder.0.2.bias": (4,),
        "encoder.1.1.weight": (8, 4, 3, 3), "encoder.1.1.bias": (8,), "encoder.1.2.weight": (8,), "encoder.1.2.bias": (8,),
        "encoder.2.1.weight": (16, 8, 3, 3), "encoder.2.1.bias": (16,), "encoder.2.2.weight": (16,), "encoder.2.2.bias": (16,),
        "residuals.0.body.0.1.weight": (16, 16, 3, 3), "residuals.0.body.0.1.bias": (16,),
        "residuals.0.body.0.2.weight": (16,), "residuals.0.body.0.2.bias": (16,),
        "residuals.0.body.1.1.weight": (16, 16, 3, 3), "residuals.0.body.1.1.bias": (16,),
        "residuals.0.body.1.2.weight": (16,), "residuals.0.body.1.2.bias": (16,),
        "decoder.0.conv.1.weight": (8, 16, 3, 3), "decoder.0.conv.1.bias": (8,), "decoder.0.conv.2.weight": (8,),
        "decoder.0.conv.2.bias": (8,), "decoder.1.conv.1.weight": (4, 8, 3, 3), "decoder.1.conv.1.bias": (4,),
        "decoder.1.conv.2.weight": (4,), "decoder.1.conv.2.bias": (4,), "decoder.2.1.weight": (3, 4, 9, 9), "decoder.2.1.bias": (3,),
    }
    assert not any(isinstance(m, ConditionalInstanceNorm2d) for m in TransformerNet(4, 1).modules())


def multi_and_plain(styles: int = 3, seed: int = 0):
    """A multi-style net with distinct random γ, β per style, and a plain net with its shared weights."""
    torch.manual_seed(seed)
    multi, plain = TransformerNet(8, 1, num_styles=styles).eval(), TransformerNet(8, 1).eval()
    with torch.no_grad():
        for m in multi.modules():
            if isinstance(m, ConditionalInstanceNorm2d):
                m.weight.copy_(1 + 0.5 * torch.randn_like(m.weight))
                m.bias.copy_(0.3 * torch.randn_like(m.bias))
    plain.load_state_dict({k: v for k, v in multi.state_dict().items() if v.dim() != 2}, strict=False)
    return multi, plain


def as_plain(multi: TransformerNet, plain: TransformerNet, row) -> TransformerNet:
    """`plain` with the norms' γ, β set to `row` of the multi net's (an index, or weights (S,))."""
    state = {k: (v[row] if isinstance(row, int) else row @ v) if v.dim() == 2 else v for k, v in multi.state_dict().items()}
    plain.load_state_dict(state)
    return plain


def test_a_style_of_a_multi_style_net_is_a_plain_net_with_its_gamma_beta():
    multi, plain = multi_and_plain()
    x = torch.rand(2, 3, 29, 35)
    with torch.no_grad():
        outs = [multi(x, s) for s in range(3)]
        for s in range(3):
            torch.testing.assert_close(outs[s], as_plain(multi, plain, s)(x), atol=1e-6, rtol=1e-5)
        assert (outs[0] - outs[1]).abs().mean() > 1e-3  # the styles differ
        assert torch.equal(multi(x), outs[0])  # None: style 0
        assert torch.equal(multi(x, torch.tensor([0.0, 1.0, 0.0])), outs[1])  # one-hot weights = the index


def test_blends_interpolate_gamma_beta_per_image():
    multi, plain = multi_and_plain()
    w = torch.tensor([0.2, 0.5, 0.3])
    x = torch.rand(2, 3, 24, 24)
    with torch.no_grad():
        blended = multi(x, w)
        torch.testing.assert_close(blended, as_plain(multi, plain, w)(x), atol=1e-6, rtol=1e-5)
        rows = torch.stack([w, torch.tensor([0.0, 0.0, 1.0])])
        per_image = multi(x, rows)  # (B, S): each image its own style
        torch.testing.assert_close(per_image[0], blended[0])
        torch.testing.assert_close(per_image[1], multi(x[1:], 2)[0])


def test_conditional_norm_is_instance_norm_then_gamma_beta():
    cin = ConditionalInstanceNorm2d(4, 2)
    with torch.no_grad():
        cin.weight.copy_(torch.rand(2, 4) + 0.5)
        cin.bias.copy_(torch.rand(2, 4))
    x = torch.randn(3, 4, 5, 6) * 3 + 1
    w = torch.tensor([[1.0, 0.0], [0.0, 1.0], [0.25, 0.75]])
    normed = (x - x.mean(dim=(2, 3), keepdim=True)) / torch.sqrt(x.var(dim=(2, 3), unbiased=False, keepdim=True) + 1e-5)
    gamma, beta = w @ cin.weight, w @ cin.bias
    torch.testing.assert_close(cin(x, w), normed * gamma[..., None, None] + beta[..., None, None], atol=1e-5, rtol=1e-5)
    assert isinstance(cin.norm, nn.InstanceNorm2d) and not cin.norm.affine  # what tiling's FrozenNormStats hooks


def test_style_argument_errors():
    multi = TransformerNet(4, 1, num_styles=2)
    x = torch.rand(1, 3, 16, 16)
    with pytest.raises(ValueError, match="style index 2 out of range: this network holds 2 styles"):
        multi(x, 2)
    with pytest.raises(ValueError, match=r"expected \(2,\) or \(1, 2\)"):
        multi(x, torch.ones(3))
    with pytest.raises(ValueError, match="holds one style"):
        TransformerNet(4, 1)(x, 1)
    with pytest.raises(ValueError, match="needs style weights"):
        multi.transform(torch.rand(1, 3, 16, 16))


def test_arch_of_reads_the_number_of_styles_and_append_styles_adds_mean_rows():
    multi, plain = multi_and_plain(styles=3)
    johnson = {"kernel": 9, "separable": False, "shuffle": 1, "skip": False}
    assert TransformerNet.arch_of(multi.state_dict()) == {"width": 8, "num_residual": 1, "num_styles": 3, **johnson}
    assert TransformerNet.arch_of(plain.state_dict()) == {"width": 8, "num_residual": 1, "num_styles": 1, **johnson}
    grown = append_styles(multi.state_dict(), 2)
    assert TransformerNet.arch_of(grown)["num_styles"] == 5
    old = multi.state_dict()
    for key, value in grown.items():
        if value.dim() == 2:
            assert torch.equal(value[:3], old[key]) and torch.allclose(value[3], old[key].mean(0)) and torch.equal(value[3], value[4])
        else:
            assert torch.equal(value, old[key])
    from_plain = append_styles(plain.state_dict(), 1)  # a plain network's norm is its one style
    assert torch.equal(from_plain["encoder.0.2.weight"], plain.state_dict()["encoder.0.2.weight"].expand(2, -1))
    TransformerNet(8, 1, num_styles=2).load_state_dict(from_plain)


def test_only_the_used_styles_get_gradients():
    net = TransformerNet(8, 1, num_styles=3)
    net(torch.rand(2, 3, 16, 16), torch.tensor([[1.0, 0.0, 0.0], [0.0, 1.0, 0.0]])).mean().backward()
    for m in net.modules():
        if isinstance(m, ConditionalInstanceNorm2d):
            assert m.weight.grad[:2].abs().sum() > 0 and torch.equal(m.weight.grad[2], torch.zeros_like(m.weight.grad[2]))
    assert all(p.grad is not None and p.grad.abs().sum() > 0 for n, p in net.named_parameters() if p.dim() != 2)


@pytest.mark.parametrize("styles", [1, 2])
def test_mobile_network_separable_convs_small_kernels_and_its_arch_read_back(styles):
    """model=mobile: depthwise-separable residual and upsampling convs, 5×5 first/last convs;
    arch_of recovers kernel and separable from the weights alone."""
    mobile = TransformerNet(width=16, num_residual=3, num_styles=styles, kernel=5, separable=True)
    slim = TransformerNet(width=16, num_residual=3, num_styles=styles)
    depthwise = mobile.residuals[0].body[0][1]
    assert depthwise.groups == 64 and depthwise.weight.shape == (64, 1, 3, 3)
    assert mobile.encoder[0][1].weight.shape == (16, 3, 5, 5) and mobile.decoder[2][1].weight.shape == (3, 16, 5, 5)
    count = lambda m: sum(p.numel() for p in m.parameters())  # noqa: E731
    assert count(mobile) < count(slim) / 3
    assert TransformerNet.arch_of(mobile.state_dict()) == mobile.arch() == {
        "width": 16, "num_residual": 3, "num_styles": styles, "kernel": 5, "separable": True, "shuffle": 1, "skip": False}
    x = torch.rand(2, 3, 37, 50)
    y = mobile(x) if styles == 1 else mobile(x, 1)
    assert y.shape == x.shape and 0 <= float(y.min()) and float(y.max()) <= 1
    with pytest.raises(ValueError, match="odd"):
        TransformerNet(kernel=4)


@pytest.mark.parametrize("styles", [1, 2])
def test_shuffle_network_runs_at_half_size_inside_and_draws_every_pixel(styles):
    """model=realtime: space-to-depth in, sub-pixel conv out. Every layer runs at half size, the
    output has the input's size (odd sizes, tiny ones), its 2×2 blocks are not copies of one value,
    and arch_of recovers shuffle from the first conv's 3·r² input channels."""
    net = TransformerNet(width=8, num_residual=1, num_styles=styles, kernel=3, separable=True, shuffle=2)
    assert net.encoder[0][1].weight.shape == (8, 12, 3, 3) and net.decoder[2][1].weight.shape == (12, 8, 3, 3)
    assert (net.size_multiple, net.min_size) == (8, 16)
    assert TransformerNet.arch_of(net.state_dict()) == net.arch() == {
        "width": 8, "num_residual": 1, "num_styles": styles, "kernel": 3, "separable": True, "shuffle": 2, "skip": False}
    assert list(net.state_dict()) == list(TransformerNet(width=8, num_residual=1, num_styles=styles, kernel=3,
                                                         separable=True).state_dict())  # the same keys: no new tensors
    sizes = []
    net.encoder[0].register_forward_hook(lambda m, i, o: sizes.append(tuple(o.shape[-2:])))
    for shape in [(2, 3, 37, 50), (1, 3, 5, 3)]:
        x = torch.rand(*shape)
        y = net(x) if styles == 1 else net(x, 1)
        assert y.shape == x.shape and 0 <= float(y.min()) and float(y.max()) <= 1
    assert sizes[0] == (20, 28)  # 37×50 padded to 40×56, run at half size
    blocks = net(torch.rand(1, 3, 32, 32), 0)
    assert float((blocks[..., 0::2, 0::2] - blocks[..., 1::2, 1::2]).abs().max()) > 1e-3
    with pytest.raises(ValueError, match="shuffle"):
        TransformerNet(shuffle=0)


@pytest.mark.parametrize("shape", [(2, 3, 37, 50), (1, 3, 1, 1), (1, 3, 2, 5)])
def test_fine_detail_is_the_image_minus_its_3x3_box_blur(shape):
    x = torch.rand(*shape)
    blur = torch.nn.functional.avg_pool2d(torch.nn.functional.pad(x, (1, 1, 1, 1), mode="replicate"), 3, stride=1)
    torch.testing.assert_close(fine_detail(x), x - blur)
    assert float(fine_detail(torch.full((1, 3, 8, 8), 0.7)).abs().max()) < 1e-6  # a flat image has none


@pytest.mark.parametrize("styles", [1, 2])
def test_skip_adds_the_photos_finest_detail_with_a_learnt_gain(styles):
    """skip: output = clamp(network + gain · (photo − its 3×3 box blur)). The gain starts at 0,
    so a new skip network is the plain one; it is a weight (learnt, and what arch_of reads)."""
    torch.manual_seed(0)
    net = TransformerNet(width=8, num_residual=1, num_styles=styles, kernel=3, shuffle=2, skip=True)
    plain = TransformerNet(width=8, num_residual=1, num_styles=styles, kernel=3, shuffle=2)
    assert net.arch()["skip"] is True and TransformerNet.arch_of(net.state_dict()) == net.arch()
    assert set(net.state_dict()) - set(plain.state_dict()) == {"skip_gain"}
    plain.load_state_dict({k: v for k, v in net.state_dict().items() if k != "skip_gain"})
    run = (lambda m, x: m(x)) if styles == 1 else (lambda m, x: m(x, 1))
    x = torch.rand(2, 3, 37, 50)
    torch.testing.assert_close(run(net, x), run(plain, x))  # gain 0: the plain network
    with torch.no_grad():
        net.skip_gain.copy_(torch.tensor([1.0, 0.5, 0.0]))
    flat = torch.full((1, 3, 24, 24), 0.3)  # no detail to add: still the plain network
    torch.testing.assert_close(run(net, flat), run(plain, flat))
    edge = flat.clone()
    edge[..., 12] = 0.9  # a one-pixel line: its detail is 0.4 on it, -0.2 beside it
    added = run(net, edge) - run(plain, edge)
    base = run(plain, edge)
    on_line = (base[0, 0, 12, 12] + 0.4).clamp(0, 1) - base[0, 0, 12, 12]
    assert float(added[0, 0, 12, 12]) == pytest.approx(float(on_line), abs=1e-5)
    assert float(added[0, 1, 12, 11]) == pytest.approx(float((base[0, 1, 12, 11] - 0.1).clamp(0, 1) - base[0, 1, 12, 11]), abs=1e-5)
    assert float(added[0, 2].abs().max()) == 0 and float(added[..., 2:10].abs().max()) < 1e-6  # gain 0; far from the line
    y = run(net, edge)
    assert 0 <= float(y.min()) and float(y.max()) <= 1
    y.sum().backward()
    assert float(net.skip_gain.grad.abs().max()) > 0


def _classic_upsample_conv(x, conv):
    """The definition: nearest ×2, reflection pad 1, the 3×3 conv."""
    up = torch.nn.functional.interpolate(x, scale_factor=2, mode="nearest")
    return conv(torch.nn.functional.pad(up, (1, 1, 1, 1), mode="reflect"))


@pytest.mark.parametrize("shape", [(2, 6, 5, 7), (1, 6, 1, 1), (1, 6, 2, 9)])
def test_upsample_conv3x3_is_upsample_then_conv(shape):
    """The four-phase form equals nearest-upsample → reflect-pad → conv, value and gradients
    (input, weight, bias), at odd and 1-px sizes."""
    from stylenet.transformer import upsample_conv3x3

    torch.manual_seed(0)
    conv = nn.Conv2d(6, 5, 3)
    x = torch.randn(*shape, requires_grad=True)
    expected = _classic_upsample_conv(x, conv)
    got = upsample_conv3x3(x, conv.weight, conv.bias)
    assert got.shape == expected.shape == (shape[0], 5, 2 * shape[2], 2 * shape[3])
    assert torch.allclose(got, expected, atol=1e-5)
    g = torch.randn_like(expected)
    want = torch.autograd.grad(expected, [x, conv.weight, conv.bias], g)
    have = torch.autograd.grad(upsample_conv3x3(x, conv.weight, conv.bias), [x, conv.weight, conv.bias], g)
    for a, b in zip(have, want):
        assert torch.allclose(a, b, atol=1e-4, rtol=1e-5)


def assert_same_gradients(net, reference, y, y0, g):
    """Backpropagate g from the two networks' outputs: every parameter's gradient agrees (1e-4 relative)."""
    (y * g).sum().backward()
    (y0 * g).sum().backward()
    total = torch.cat([q.grad.flatten() for q in reference.parameters()]).norm()
    for (name, p), q in zip(net.named_parameters(), reference.parameters()):
        if q.grad.norm() > 1e-6 * total:  # conv biases before instance norm: zero gradient by construction
            assert float((p.grad - q.grad).norm() / q.grad.norm()) < 1e-4, name


@pytest.mark.parametrize("kw", [{}, {"num_styles": 3}, {"kernel": 3, "shuffle": 2}])
def test_phase_upsampling_is_the_same_network(kw):
    """use_phase_upsample changes how the decoder computes, not what: outputs and every
    gradient match the classic upsampling (odd size, a blend for the multi-style net);
    channels-last inputs and depthwise convs keep the classic path."""
    import copy

    torch.manual_seed(0)
    net = TransformerNet(width=8, num_residual=1, **kw)
    classic = copy.deepcopy(net).use_phase_upsample(False)
    assert all(layer.phase for layer in net.decoder[:2]) and not any(layer.phase for layer in classic.decoder[:2])
    style = torch.tensor([0.2, 0.8, 0.0]) if kw.get("num_styles") else None
    x = torch.rand(2, 3, 37, 29)
    g = torch.randn(2, 3, 37, 29)
    y, y0 = net(x, style), classic(x, style)
    assert torch.allclose(y, y0, atol=1e-6)
    assert_same_gradients(net, classic, y, y0, g)
    calls = []  # the classic path reflection-pads the upsampled input; the phase form pads the input itself
    net.decoder[0].conv[0].register_forward_pre_hook(lambda m, i: calls.append(tuple(i[0].shape[-2:])))
    h = torch.rand(1, 32, 5, 6)
    weights = None if style is None else style[None]
    net.decoder[0](h, weights)
    assert calls == []
    net.decoder[0](h.contiguous(memory_format=torch.channels_last), weights)
    assert calls == [(10, 12)]
    assert not TransformerNet(width=8, separable=True, kernel=5).decoder[0].phase


@pytest.mark.parametrize("shape, kernel, bias", [((2, 6, 13, 11), (3, 3), True), ((1, 5, 12, 20), (9, 9), True),
                                                 ((2, 4, 7, 9), (3, 5), False)])
def test_narrow_conv2d_is_conv2d(shape, kernel, bias):
    """The narrow form (gradients as forward convs with swapped roles) equals F.conv2d: value,
    and gradients of input, weight and bias, for square and non-square kernels."""
    from stylenet.transformer import narrow_conv2d

    torch.manual_seed(0)
    x = torch.randn(*shape, requires_grad=True)
    w = torch.randn(3, shape[1], *kernel, requires_grad=True)
    b = torch.randn(3, requires_grad=True) if bias else None
    expected = torch.nn.functional.conv2d(x, w, b)
    got = narrow_conv2d(x, w, b)
    assert got.shape == expected.shape and got.is_contiguous()
    assert torch.allclose(got, expected, atol=1e-5)
    inputs = [t for t in (x, w, b) if t is not None]
    g = torch.randn_like(expected)
    for a, e in zip(torch.autograd.grad(got, inputs, g), torch.autograd.grad(expected, inputs, g, retain_graph=True)):
        assert a.shape == e.shape and torch.allclose(a, e, atol=1e-4, rtol=1e-5)
    (only_x,) = torch.autograd.grad(narrow_conv2d(x, w.detach(), None), [x], g)  # frozen weights: input only
    assert torch.allclose(only_x, torch.autograd.grad(expected, [x], g)[0], atol=1e-4)


@pytest.mark.parametrize("kw", [{}, {"kernel": 5, "num_styles": 2}])
def test_narrow_conv_is_the_same_network(kw):
    """use_narrow_conv changes how the RGB-drawing last conv computes, not what: outputs and every
    gradient match; no other layer qualifies, nor model=realtime's 12-channel last conv; under
    autocast the plain conv runs."""
    import copy

    torch.manual_seed(0)
    net = TransformerNet(width=8, num_residual=1, **kw)
    narrow = copy.deepcopy(net).use_narrow_conv(True)
    layers = [m for m in narrow.modules() if getattr(m, "narrow", False)]
    assert layers == [narrow.decoder[-1]]
    assert not any(getattr(m, "narrow", False) for m in TransformerNet(width=16, kernel=3, shuffle=2).use_narrow_conv().modules())
    style = torch.tensor([0.3, 0.7]) if kw.get("num_styles") else None
    x, g = torch.rand(2, 3, 23, 30), torch.randn(2, 3, 23, 30)
    calls = []
    narrow.decoder[-1][1].register_forward_pre_hook(lambda m, i: calls.append(1))  # the module's own conv call
    y, y0 = narrow(x, style), net(x, style)
    assert calls == [] and torch.allclose(y, y0, atol=1e-6)
    assert_same_gradients(narrow, net, y, y0, g)
    with torch.no_grad(), torch.autocast("cpu", torch.bfloat16):
        narrow(x, style)
    assert calls == [1]  # bf16: the plain conv
    assert not any(m.narrow for m in narrow.use_narrow_conv(False).modules() if hasattr(m, "narrow_capable"))
