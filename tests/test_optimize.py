"""The pixel optimiser and its objectives, on the real ImageNet SqueezeNet from ../shared.

Images are 32–48 px and runs a few dozen iterations: each test checks that an objective
moved the right way by a clear margin, not that it converged.
"""

from __future__ import annotations

import pytest
import torch
import torchvision

from stylenet import preimage
from stylenet.imageio import load_tensor
from stylenet.losses import alpha_norm_loss, perceptual_loss, perceptual_weights, tv_beta_loss, tv_loss
from stylenet.lossnet import IMAGENET_MEAN, IMAGENET_STD, LOGITS, LossNetwork
from stylenet.optimize import OptimizeError, blur_every, initial_image, jitter, optimize, optimize_multiscale

from .conftest import CHICAGO, HOKUSAI, SQUEEZENET, compose

SQUEEZE_STYLE = {"relu1": 1.0, "fire2": 1.0, "fire3": 1.0, "fire5": 1.0}


@pytest.fixture(scope="module")
def photo(shared) -> torch.Tensor:
    return load_tensor(CHICAGO, 40)


def squeezenet(layers) -> LossNetwork:
    return LossNetwork("squeezenet1_1", list(layers), str(SQUEEZENET))


def noise(like: torch.Tensor, seed: int = 0) -> torch.Tensor:
    return initial_image("noise", tuple(like.shape[-2:]), generator=torch.Generator().manual_seed(seed))


# -- the optimiser -------------------------------------------------------------------------
def quadratic(target: torch.Tensor):
    return lambda x: {"loss": (x - target).pow(2).sum()}


@pytest.mark.parametrize("name,lr,steps", [("lbfgs", 1.0, 10), ("adam", 0.05, 60)])
def test_optimizers_reach_a_known_minimum(name, lr, steps):
    target = torch.rand(1, 3, 8, 8, generator=torch.Generator().manual_seed(1)) * 0.8 + 0.1
    result = optimize(torch.full_like(target, 0.5), quadratic(target), steps=steps, optimizer=name, lr=lr)
    assert result.final["loss"] < 1e-3 * result.history[0]["loss"]
    assert len(result.history) == steps and result.image.shape == target.shape and not result.image.requires_grad


def test_three_ways_to_keep_pixels_in_range():
    target = torch.full((1, 3, 8, 8), 2.0)  # the unconstrained minimum is outside [0,1]
    start, best_valid = torch.full_like(target, 0.5), 192.0  # all pixels at 1: (2 − 1)² · 192
    seen = []
    projected = optimize(start, quadratic(target), steps=5, clamp="project", callback=lambda s, x, t: seen.append((s, x.max().item())))
    assert [s for s, _ in seen] == [1, 2, 3, 4, 5] and max(m for _, m in seen) <= 1.0
    assert torch.allclose(projected.image, torch.ones_like(target))
    # straight-through: the objective sees the clipped image, so no value is better than a valid image's
    through = optimize(start, quadratic(target), steps=5, clamp="straight_through")
    assert min(h["loss"] for h in through.history) >= best_valid - 1e-3
    assert through.final["loss"] == pytest.approx(best_valid) and through.image.max() <= 1.0
    free_max = []
    free = optimize(start, quadratic(target), steps=5, clamp="none", callback=lambda s, x, t: free_max.append(x.max().item()))
    assert free_max[-1] > 1.5  # unconstrained ...
    assert torch.equal(free.image, torch.ones_like(target)) and free.final["loss"] == pytest.approx(best_valid)  # ... result clipped
    with pytest.raises(OptimizeError, match="unknown clamp"):
        optimize(start, quadratic(target), steps=1, clamp="wrap")


def test_multiscale_runs_coarse_to_fine_and_counts_steps_over_scales():
    sizes, steps = [], []
    target = torch.rand(1, 3, 32, 24)

    def make(size):
        sizes.append(size)
        return quadratic(preimage.resize(target, size))

    result = optimize_multiscale(torch.full_like(target, 0.5), make, scales=[0.25, 0.5, 1.0], steps=3,
                                 callback=lambda s, x, t: steps.append((s, tuple(x.shape[-2:]))))
    assert sizes == [(8, 8), (16, 12), (32, 24)]  # at least 8 px a side
    assert [s for s, _ in steps] == list(range(1, 10)) and steps[-1][1] == (32, 24)
    assert len(result.history) == 9 and result.image.shape == target.shape


def test_initial_images(photo, tmp_path):
    size = tuple(photo.shape[-2:])
    assert torch.equal(initial_image("content", size, photo), photo)
    n = initial_image("noise", size, generator=torch.Generator().manual_seed(0))
    assert n.min() >= 0 and n.max() <= 1 and n.std() > 0.2
    g = initial_image("gray", size)
    assert (g - 0.5).abs().max() <= 0.01 and g.std() > 0
    assert initial_image(str(HOKUSAI), (20, 30)).shape == (1, 3, 20, 30)
    with pytest.raises(OptimizeError, match="content"):
        initial_image("content", size, None)
    with pytest.raises(OptimizeError, match="unknown init"):
        initial_image("zeros", size)
    with pytest.raises(OptimizeError, match="unknown optimizer"):
        optimize(photo, quadratic(photo), steps=1, optimizer="sgd")
    with pytest.raises(OptimizeError, match="steps"):
        optimize(photo, quadratic(photo), steps=0)


def test_jitter_shifts_the_input_and_blur_smooths():
    seen = []
    shifted = jitter(lambda x: seen.append(x) or {"loss": x.sum()}, 3, torch.Generator().manual_seed(0))
    x = torch.arange(64.0).view(1, 1, 8, 8)
    for _ in range(4):
        shifted(x)
    assert any(not torch.equal(s, x) for s in seen)  # shifted ...
    assert all(torch.equal(s.flatten().sort().values, x.flatten()) for s in seen)  # ... but the same pixels
    image = torch.rand(1, 3, 16, 16, generator=torch.Generator().manual_seed(0))
    before = tv_loss(image)
    blur = blur_every(2, 1.0)
    blur(1, image)
    assert tv_loss(image) == before  # not on odd steps
    blur(2, image)
    assert tv_loss(image) < 0.5 * before


def test_new_regularisers():
    x = torch.tensor([[0.0, 3.0], [4.0, 4.0]]).view(1, 1, 2, 2)
    # one 2x2 cell: dx = 3, dy = 4 → (9 + 16)^(β/2)
    assert tv_beta_loss(x, beta=1.0).item() == pytest.approx(5.0, rel=1e-5)
    assert tv_beta_loss(x, beta=2.0).item() == pytest.approx(25.0, rel=1e-5)
    assert alpha_norm_loss(torch.tensor([0.5, 1.5, -0.5]), alpha=2.0).item() == pytest.approx(2 / 3)


# -- loss network: class logits ------------------------------------------------------------
def test_logits_pseudo_layer_is_torchvisions_classifier(shared, photo):
    model = torchvision.models.squeezenet1_1()
    model.load_state_dict(torch.load(SQUEEZENET, weights_only=True))
    model.eval()
    mean, std = torch.tensor(IMAGENET_MEAN).view(1, 3, 1, 1), torch.tensor(IMAGENET_STD).view(1, 3, 1, 1)
    out = squeezenet(["fire3", LOGITS])(photo)
    with torch.no_grad():
        torch.testing.assert_close(out[LOGITS], model((photo - mean) / std), rtol=1e-4, atol=1e-4)
    assert out[LOGITS].shape == (1, 1000) and out["fire3"].dim() == 4


# -- the objectives --------------------------------------------------------------------------
def invert(photo, layer, steps=40):
    net = squeezenet([layer])
    with torch.no_grad():
        target = net(photo)[layer]
    objective = preimage.inversion(net, layer, target, tv_weight=0.05, tv_beta=2.0, alpha_weight=1.0, alpha=6.0)
    start = initial_image("gray", tuple(photo.shape[-2:]), generator=torch.Generator().manual_seed(0))
    result = optimize(start, objective, steps=steps, clamp="none")  # as mode=invert: the α-norm keeps the range
    assert result.final["features"] < 0.5 * result.history[0]["features"]
    return preimage.psnr(result.image, photo)


def test_inversion_from_a_shallow_layer_reconstructs_and_a_deep_one_loses_detail(photo):
    shallow, deep = invert(photo, "relu1"), invert(photo, "fire9")
    assert shallow > 22.0, shallow  # close to the photo
    assert deep < 14.0 and shallow - deep > 8.0, (shallow, deep)


def test_texture_synthesis_matches_the_style_grams(shared):
    style = load_tensor(HOKUSAI, 48)
    net = squeezenet(SQUEEZE_STYLE)
    targets = net.style_grams(style, list(SQUEEZE_STYLE))
    start = noise(style[..., :40, :40])
    before = preimage.gram_error(net, start, targets, SQUEEZE_STYLE)
    result = optimize(start, preimage.texture(net, targets, SQUEEZE_STYLE, style_weight=1e4), steps=30, clamp="straight_through")
    after = preimage.gram_error(net, result.image, targets, SQUEEZE_STYLE)
    assert after < before / 20, (before, after)
    assert result.final["style"] == pytest.approx(1e4 * after, rel=1e-4)  # the same loss code


def test_deepdream_raises_the_layer_energy(photo):
    net = squeezenet(["fire5"])
    measure = preimage.dream(net, "fire5")
    gen = torch.Generator().manual_seed(0)
    result = optimize_multiscale(photo, lambda size: jitter(measure, 4, gen), scales=[0.6, 1.0], steps=8, optimizer="adam", lr=0.02)
    with torch.no_grad():
        before, after = measure(photo)["energy"].item(), measure(result.image)["energy"].item()
    assert after > 1.5 * before, (before, after)
    assert preimage.psnr(result.image, photo) > 15  # amplified, not replaced


@pytest.mark.parametrize("layer,channel", [("fire7", 10), (LOGITS, 1)])  # class 1: goldfish
def test_activation_maximisation_raises_the_channel(layer, channel):
    net = squeezenet([layer])
    measure = preimage.maximize(net, layer, channel, l2_weight=1.0, tv_weight=1.0)
    start = initial_image("noise", (40, 40), generator=torch.Generator().manual_seed(0), noise=0.5)
    result = optimize(start, jitter(measure, 4, torch.Generator().manual_seed(0)), steps=25, optimizer="adam", lr=0.05,
                      post_step=[blur_every(4, 0.5)])
    with torch.no_grad():
        before, after = measure(start)["activation"].item(), measure(result.image)["activation"].item()
        others = net(result.image)[layer]
    assert after > before + 5.0, (before, after)  # log-probability for the class
    if layer == LOGITS:
        assert (others > others[0, channel]).sum() < 10  # from a random rank into the top ten


def test_style_objective_is_the_training_loss(photo, shared):
    cfg = compose(["loss.network=squeezenet1_1", f"loss.weights={SQUEEZENET}", "style.weight=2.0"], config_name="gatys")
    from omegaconf import OmegaConf

    loss = OmegaConf.to_container(cfg.loss, resolve=True)
    weights = perceptual_weights({**loss, "style_scale": 2.0})
    assert weights["style_weight"] == 2.0 * loss["style_weight"]
    net = squeezenet([weights["content_layer"], *weights["style_layers"]])
    targets = net.style_grams(load_tensor(HOKUSAI, 48), list(weights["style_layers"]))
    objective = preimage.style_transfer(net, photo, targets, weights)
    x = noise(photo)
    expected = perceptual_loss(net(x), net(photo), targets, x, **weights)
    assert objective(x)["loss"].item() == pytest.approx(expected["loss"].item(), rel=1e-6)
    result = optimize(photo, objective, steps=15, clamp="straight_through")
    first = result.history[0]
    assert first["content"] == 0.0 and result.final["style"] < 0.5 * first["style"]
    assert result.final["loss"] < 0.5 * first["loss"]


def test_contact_sheet_lays_out_labelled_tiles():
    tiles = [torch.full((1, 3, 20, 30), v) for v in (0.0, 0.5, 1.0, 0.25)]
    sheet = preimage.contact_sheet(tiles, ["a", "b", "c", "d"], nrow=2)
    band, pad = 14, 4
    assert sheet.shape == (3, 2 * (20 + band) + 3 * pad, 2 * 30 + 3 * pad)
    assert sheet[:, pad:pad + band, pad:pad + 30].min() < 0.5  # dark label text on the white band
