"""Perceptual losses as pure functions: features and targets in, scalars out; no state."""

from __future__ import annotations

from collections.abc import Mapping

import torch
import torch.nn.functional as F


def gram(features: torch.Tensor) -> torch.Tensor:
    """Gram matrix (B,C,C) of (B,C,H,W) features, normalised by C·H·W, accumulated in fp32.

    fp32 because the sum over H·W products overflows/underflows half precision.
    """
    b, c, h, w = features.shape
    f = features.reshape(b, c, h * w).float()
    return torch.bmm(f, f.transpose(1, 2)) / (c * h * w)


def content_loss(output: torch.Tensor, target: torch.Tensor, normalize: bool = False) -> torch.Tensor:
    """Feature reconstruction loss: mean squared error between activations.

    `normalize` divides by the target's mean square: the error relative to the target's own
    magnitude, the same for any copy of the loss network (activations scaled by k: k²/k²).
    """
    loss = F.mse_loss(output.float(), target.float())
    return loss / _energy(target) if normalize else loss


def _energy(target: torch.Tensor) -> torch.Tensor:
    """Mean square of a (detached) target: the scale that makes a term relative."""
    return target.detach().float().pow(2).mean().clamp_min(1e-12)


def style_loss(
    grams: Mapping[str, torch.Tensor],
    target_grams: Mapping[str, torch.Tensor],
    layer_weights: Mapping[str, float],
    normalize: bool = False,
    scale: torch.Tensor | None = None,
) -> torch.Tensor:
    """Weighted sum over layers of the MSE between Gram matrices.

    A target of batch size 1 (one style image) is broadcast over the batch. `normalize`
    divides each layer's error by its target Gram's mean square, so every layer counts by
    its weight alone, whatever its (or the network's) activation scale (k⁴/k⁴).

    Several styles in one batch (a multi-style network): targets (B,C,C), one per image,
    and `scale` (B,), each image's style weight; the result is the mean of
    `style_loss_per_image` × scale. One target and no scale is the single-style loss above.
    """
    if not layer_weights:
        raise ValueError("style_loss needs at least one layer")
    if scale is not None or any(target_grams[name].shape[0] != 1 for name in layer_weights):
        per_image = style_loss_per_image(grams, target_grams, layer_weights, normalize)
        return (per_image * scale.to(per_image)).mean() if scale is not None else per_image.mean()
    total = None
    for name, weight in layer_weights.items():
        g, t = grams[name], target_grams[name]
        term = weight * F.mse_loss(g, t.expand_as(g))
        if normalize:
            term = term / _energy(t)
        total = term if total is None else total + term
    return total


def style_loss_per_image(
    grams: Mapping[str, torch.Tensor],
    target_grams: Mapping[str, torch.Tensor],
    layer_weights: Mapping[str, float],
    normalize: bool = False,
) -> torch.Tensor:
    """The style term of each image (B,): its Gram error against its own target, (B,C,C) or
    (1,C,C) broadcast; `normalize` divides by that target's own energy, so every style counts
    by its weight alone, however far its Grams lie from photos'. What the losses per style
    of a multi-style run are logged from."""
    total = None
    for name, weight in layer_weights.items():
        g, t = grams[name], target_grams[name].expand_as(grams[name])
        term = weight * (g.float() - t.float()).pow(2).mean(dim=(1, 2))
        if normalize:
            term = term / t.detach().float().pow(2).mean(dim=(1, 2)).clamp_min(1e-12)
        total = term if total is None else total + term
    if total is None:
        raise ValueError("style_loss needs at least one layer")
    return total


def tv_loss(image: torch.Tensor) -> torch.Tensor:
    """Total variation: mean squared difference between vertical plus horizontal neighbours."""
    dy = image[..., 1:, :] - image[..., :-1, :]
    dx = image[..., :, 1:] - image[..., :, :-1]
    return dy.float().pow(2).mean() + dx.float().pow(2).mean()


def temporal_loss(moved_output: torch.Tensor, output_of_moved: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """Stability: mean squared difference, over the pixels `mask` (B,1,H,W) keeps, between the
    stylized batch moved afterwards and the moved batch stylized (equal for a stable network)."""
    diff = (moved_output.float() - output_of_moved.float()).pow(2) * mask.float()
    return diff.sum() / (mask.float().sum() * moved_output.shape[1]).clamp_min(1.0)


def distill_loss(output: torch.Tensor, teacher_output: torch.Tensor) -> torch.Tensor:
    """Distillation: mean squared difference, in [0,1] pixels, between a network's output and
    a trained teacher network's output for the same photos (the teacher's is a target, never
    differentiated)."""
    return F.mse_loss(output.float(), teacher_output.detach().float())


def tv_beta_loss(image: torch.Tensor, beta: float = 2.0, eps: float = 1e-8) -> torch.Tensor:
    """Mahendran & Vedaldi's V^β: mean of (dx² + dy²)^(β/2); β < 2 keeps edges, β = 1 is classic TV.

    `eps` keeps the gradient finite where the image is flat and β < 2.
    """
    dy = image[..., 1:, :-1] - image[..., :-1, :-1]
    dx = image[..., :-1, 1:] - image[..., :-1, :-1]
    return (dx.float().pow(2) + dy.float().pow(2) + eps).pow(beta / 2).mean()


def alpha_norm_loss(image: torch.Tensor, alpha: float = 6.0, center: float = 0.5) -> torch.Tensor:
    """Mahendran & Vedaldi's α-norm: mean |x − center|^α; a large α penalises only out-of-range pixels."""
    return (image.float() - center).abs().pow(alpha).mean()


def style_scale(style: Mapping) -> float:
    """A style preset's `weight` (its taste for strong strokes, stylenet/configs/style/<name>.yaml):
    the factor on `loss.style_weight` for that style's images. The one route from a preset to
    the loss: a single-style run (as `loss.style_scale`), each image of a multi-style run
    (`style_scales`) and the Gatys benchmark's scoring of one style of a file."""
    return float(style.get("weight", 1.0))


def perceptual_weights(loss: Mapping) -> dict:
    """The keyword arguments of `perceptual_loss` from a loss config (`configs/loss/*.yaml`),
    read the same way by training, Gatys and the benchmarks (style weight × the preset's
    `style_scale`; a config without `normalize`, as saved before it existed, means raw terms)."""
    return {
        "content_layer": loss["content_layer"],
        "style_layers": {k: float(v) for k, v in loss["style_layers"].items()},
        "content_weight": float(loss["content_weight"]),
        "style_weight": float(loss["style_weight"]) * float(loss.get("style_scale", 1.0)),
        "tv_weight": float(loss["tv_weight"]),
        "normalize": bool(loss.get("normalize", False)),
    }


def perceptual_loss(
    output_features: Mapping[str, torch.Tensor],
    content_features: Mapping[str, torch.Tensor],
    target_grams: Mapping[str, torch.Tensor],
    output_image: torch.Tensor,
    *,
    content_layer: str,
    style_layers: Mapping[str, float],
    content_weight: float,
    style_weight: float,
    tv_weight: float,
    normalize: bool = False,
    style_scale: torch.Tensor | None = None,
) -> dict[str, torch.Tensor]:
    """The composite objective of Johnson et al.: weighted content + style + TV terms.

    `normalize`: content and style terms relative to their targets' magnitudes (see
    `content_loss`, `style_loss`), so one set of weights suits any loss network. Returns the
    weighted terms and their sum under `loss` (what is optimised); each term is already
    multiplied by its weight so the parts add up to the total in the logs.

    Per-image targets (B,C,C) and/or `style_scale` (B,) (a multi-style batch): `style` is
    the mean of the weighted per-image terms, also returned as `style_per_image` (B,).
    """
    grams = {name: gram(output_features[name]) for name in style_layers}
    terms = {
        "content": content_weight * content_loss(output_features[content_layer], content_features[content_layer], normalize),
    }
    if style_scale is not None or any(target_grams[name].shape[0] != 1 for name in style_layers):
        per_image = style_weight * style_loss_per_image(grams, target_grams, style_layers, normalize)
        if style_scale is not None:
            per_image = per_image * style_scale.to(per_image)
        terms["style"], terms["style_per_image"] = per_image.mean(), per_image.detach()
    else:
        terms["style"] = style_weight * style_loss(grams, target_grams, style_layers, normalize)
    terms["tv"] = tv_weight * tv_loss(output_image)
    terms["loss"] = terms["content"] + terms["style"] + terms["tv"]
    return terms
