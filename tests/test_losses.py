import pytest
import torch

from stylenet.losses import content_loss, gram, perceptual_loss, style_loss, style_loss_per_image, tv_loss


def test_gram_on_hand_computed_tensor():
    f = torch.tensor([[1.0, 2.0], [3.0, 4.0]]).view(1, 2, 1, 2)  # C=2 channels, H=1, W=2
    expected = torch.tensor([[5.0, 11.0], [11.0, 25.0]]) / (2 * 1 * 2)
    torch.testing.assert_close(gram(f), expected.unsqueeze(0))


def test_gram_is_fp32_for_half_features():
    f = torch.rand(2, 4, 8, 8).to(torch.bfloat16)
    g = gram(f)
    assert g.dtype == torch.float32 and g.shape == (2, 4, 4)
    torch.testing.assert_close(g, gram(f.float()))


def test_content_loss_is_mse():
    a, b = torch.tensor([1.0, 2.0, 3.0, 4.0]), torch.tensor([1.0, 0.0, 3.0, 8.0])
    assert content_loss(a, b).item() == pytest.approx((0 + 4 + 0 + 16) / 4)


def test_tv_loss_on_hand_computed_image():
    x = torch.tensor([[0.0, 1.0], [2.0, 4.0]]).view(1, 1, 2, 2)
    # vertical diffs 2, 3 → mean of squares 6.5; horizontal 1, 2 → 2.5
    assert tv_loss(x).item() == pytest.approx(9.0)
    assert tv_loss(torch.ones(1, 3, 5, 5)).item() == 0.0


def test_style_loss_weights_layers_and_broadcasts_one_target():
    grams = {"a": torch.ones(2, 2, 2), "b": torch.zeros(2, 3, 3)}
    targets = {"a": torch.zeros(1, 2, 2), "b": torch.full((1, 3, 3), 2.0)}
    # layer a: mse 1, layer b: mse 4
    assert style_loss(grams, targets, {"a": 1.0, "b": 0.5}).item() == pytest.approx(1.0 + 2.0)
    assert style_loss(grams, targets, {"a": 3.0}).item() == pytest.approx(3.0)
    with pytest.raises(ValueError):
        style_loss(grams, targets, {})


def test_perceptual_loss_terms_add_up_with_weights():
    torch.manual_seed(0)
    out = {"c": torch.rand(2, 4, 6, 6), "s": torch.rand(2, 3, 6, 6)}
    content = {"c": torch.rand(2, 4, 6, 6), "s": torch.rand(2, 3, 6, 6)}
    targets = {"s": gram(torch.rand(1, 3, 6, 6))}
    image = torch.rand(2, 3, 8, 8)
    terms = perceptual_loss(out, content, targets, image, content_layer="c", style_layers={"s": 2.0},
                            content_weight=3.0, style_weight=5.0, tv_weight=7.0)
    assert terms["content"].item() == pytest.approx(3.0 * content_loss(out["c"], content["c"]).item(), rel=1e-6)
    assert terms["style"].item() == pytest.approx(10.0 * style_loss({"s": gram(out["s"])}, targets, {"s": 1.0}).item(), rel=1e-5)
    assert terms["tv"].item() == pytest.approx(7.0 * tv_loss(image).item(), rel=1e-6)
    assert terms["loss"].item() == pytest.approx(sum(terms[k].item() for k in ("content", "style", "tv")), rel=1e-6)


def test_losses_are_pure():
    """Same inputs, same outputs, inputs untouched: no hidden caches."""
    f = torch.rand(1, 3, 4, 4)
    before = f.clone()
    assert torch.equal(gram(f), gram(f))
    assert torch.equal(f, before)


def test_normalized_terms_are_relative_to_their_targets():
    t = torch.full((1, 2, 2, 2), 2.0)  # mean square 4
    o = torch.zeros(1, 2, 2, 2)
    assert content_loss(o, t, normalize=True).item() == pytest.approx(1.0)
    a, b = torch.rand(2, 3, 4, 4), torch.rand(2, 3, 4, 4)
    assert content_loss(3 * a, 3 * b, normalize=True).item() == pytest.approx(content_loss(a, b, normalize=True).item(), rel=1e-5)
    assert content_loss(3 * a, 3 * b).item() == pytest.approx(9 * content_loss(a, b).item(), rel=1e-5)
    grams, targets = {"a": torch.zeros(1, 2, 2)}, {"a": torch.full((1, 2, 2), 3.0)}
    assert style_loss(grams, targets, {"a": 2.0}, normalize=True).item() == pytest.approx(2.0)


def _scale_activations(net, k: float) -> None:
    """Multiply every activation of a ReLU/max-pool network by k: first conv and every bias × k."""
    convs = [m for m in net.features.modules() if isinstance(m, torch.nn.Conv2d)]
    with torch.no_grad():
        convs[0].weight.mul_(k)
        for conv in convs:
            conv.bias.mul_(k)


@pytest.mark.parametrize("network,content,style", [
    ("vgg16", "relu2_2", {"relu1_2": 1.0, "relu2_2": 2.0, "relu3_3": 0.5}),
    ("squeezenet1_1", "fire3", {"relu1": 1.0, "fire3": 1.0, "fire5": 3.0}),
])
def test_term_shares_do_not_depend_on_the_loss_networks_activation_scale(network, content, style):
    """The same weights must balance the terms for any copy of the loss network (issue: caffe
    VGG16's activations are far larger than torchvision's): shares stay put when activations × k."""
    from stylenet.lossnet import LossNetwork

    torch.manual_seed(0)
    net = LossNetwork(network, [content, *style], weights=None)
    photo, output, painting = torch.rand(2, 3, 40, 40), torch.rand(2, 3, 40, 40), torch.rand(1, 3, 48, 48)

    def shares(normalize: bool) -> dict[str, float]:
        with torch.no_grad():
            targets = {n: gram(f) for n, f in net(painting).items() if n in style}
            terms = perceptual_loss(net(output), net(photo), targets, output, content_layer=content, style_layers=style,
                                    content_weight=1.0, style_weight=5.0, tv_weight=0.1, normalize=normalize)
        return {k: (terms[k] / terms["loss"]).item() for k in ("content", "style", "tv")}

    before, raw_before = shares(True), shares(False)
    _scale_activations(net, 30.0)
    after, raw_after = shares(True), shares(False)
    for key in before:
        assert after[key] == pytest.approx(before[key], rel=1e-3, abs=1e-6)
    assert raw_after["style"] > 10 * raw_before["style"]  # without normalising, the Gram term takes over


# -- several styles in one batch ---------------------------------------------------------------
def test_per_image_targets_and_scales():
    """Each image against its own style's Gram, divided by that target's energy, × its style weight."""
    grams = {"a": torch.zeros(3, 2, 2)}
    targets = {"a": torch.stack([torch.full((2, 2), 1.0), torch.full((2, 2), 2.0), torch.full((2, 2), 2.0)])}
    raw = style_loss_per_image(grams, targets, {"a": 2.0})
    torch.testing.assert_close(raw, torch.tensor([2.0, 8.0, 8.0]))  # 2 × mse
    torch.testing.assert_close(style_loss_per_image(grams, targets, {"a": 2.0}, normalize=True), torch.tensor([2.0, 2.0, 2.0]))
    scale = torch.tensor([1.0, 0.5, 2.0])
    assert style_loss(grams, targets, {"a": 2.0}, normalize=True, scale=scale).item() == pytest.approx((2 + 1 + 4) / 3)
    assert style_loss(grams, targets, {"a": 2.0}).item() == pytest.approx(6.0)  # (B,C,C) targets without scale: the mean


def test_one_target_without_scale_is_the_single_style_loss_bit_for_bit():
    torch.manual_seed(1)
    grams = {"a": gram(torch.rand(4, 3, 5, 5)), "b": gram(torch.rand(4, 2, 5, 5))}
    targets = {"a": gram(torch.rand(1, 3, 5, 5)), "b": gram(torch.rand(1, 2, 5, 5))}
    layers = {"a": 1.0, "b": 0.3}
    for normalize in (False, True):
        expected = sum(w * torch.nn.functional.mse_loss(grams[k], targets[k].expand_as(grams[k]))
                       / (targets[k].pow(2).mean() if normalize else 1) for k, w in layers.items())
        assert style_loss(grams, targets, layers, normalize) == expected  # exactly today's arithmetic
        # the per-image form of the same batch agrees to rounding (one style, every image)
        per_image = style_loss_per_image(grams, targets, layers, normalize)
        assert per_image.shape == (4,) and per_image.mean().item() == pytest.approx(expected.item(), rel=1e-5)
        repeated = {k: v.expand(4, -1, -1) for k, v in targets.items()}
        assert style_loss(grams, repeated, layers, normalize).item() == pytest.approx(expected.item(), rel=1e-5)


def test_perceptual_loss_reports_the_style_term_per_image():
    torch.manual_seed(0)
    out, content = {"c": torch.rand(2, 4, 6, 6), "s": torch.rand(2, 3, 6, 6)}, {"c": torch.rand(2, 4, 6, 6)}
    image = torch.rand(2, 3, 8, 8)
    kw = dict(content_layer="c", style_layers={"s": 2.0}, content_weight=3.0, style_weight=5.0, tv_weight=7.0, normalize=True)
    one = {"s": gram(torch.rand(1, 3, 6, 6))}
    assert "style_per_image" not in perceptual_loss(out, content, one, image, **kw)  # single style: as always
    two = {"s": torch.cat([one["s"], gram(torch.rand(1, 3, 6, 6))])}
    terms = perceptual_loss(out, content, two, image, style_scale=torch.tensor([1.0, 0.5]), **kw)
    per = 5.0 * style_loss_per_image({"s": gram(out["s"])}, two, {"s": 2.0}, normalize=True) * torch.tensor([1.0, 0.5])
    torch.testing.assert_close(terms["style_per_image"], per)
    assert terms["style"].item() == pytest.approx(per.mean().item(), rel=1e-6)
    assert terms["loss"].item() == pytest.approx((terms["content"] + terms["style"] + terms["tv"]).item(), rel=1e-6)
