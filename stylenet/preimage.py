"""Objectives over pixels, built from the training losses (`stylenet.losses`) and a named
`LossNetwork`: Gatys style transfer, feature inversion, texture synthesis, DeepDream and
activation maximisation. Each factory returns `objective(image) -> {term: tensor, "loss"}`
for `stylenet.optimize`; targets are computed once, up front, and passed in.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import torch
import torch.nn.functional as F
from PIL import Image, ImageDraw
from torchvision.utils import make_grid

from .imageio import pil_to_tensor, tensor_to_pil
from .losses import alpha_norm_loss, content_loss, gram, perceptual_loss, style_loss, tv_beta_loss, tv_loss
from .lossnet import LossNetwork
from .optimize import Objective, OptimizeError


def resize(image: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
    if tuple(image.shape[-2:]) == tuple(size):
        return image
    return F.interpolate(image, size=size, mode="bilinear", align_corners=False, antialias=True)


def style_transfer(lossnet: LossNetwork, content: torch.Tensor, target_grams: Mapping[str, torch.Tensor],
                   weights: Mapping) -> Objective:
    """Gatys et al. 2016: the training objective (`perceptual_loss`) of one fixed photo."""
    with torch.no_grad():
        content_features = lossnet(content.float())

    def objective(image: torch.Tensor) -> dict[str, torch.Tensor]:
        return perceptual_loss(lossnet(image), content_features, target_grams, image, **weights)

    return objective


def inversion(lossnet: LossNetwork, layer: str, target: torch.Tensor, *, tv_weight: float, tv_beta: float,
              alpha_weight: float, alpha: float) -> Objective:
    """Mahendran & Vedaldi 2015: match one layer's features (error relative to the target's
    energy, so weights mean the same at every layer) under V^β and α-norm image priors."""
    energy = target.float().pow(2).mean().clamp_min(1e-12)

    def objective(image: torch.Tensor) -> dict[str, torch.Tensor]:
        terms = {
            "features": content_loss(lossnet(image)[layer], target) / energy,
            "tv": tv_weight * tv_beta_loss(image, tv_beta),
            "alpha": alpha_weight * alpha_norm_loss(image, alpha),
        }
        terms["loss"] = terms["features"] + terms["tv"] + terms["alpha"]
        return terms

    return objective


def texture(lossnet: LossNetwork, target_grams: Mapping[str, torch.Tensor], style_layers: Mapping[str, float],
            style_weight: float, tv_weight: float = 0.0) -> Objective:
    """Gatys et al. 2015: the style (Gram) term alone — a new sample of the painting's texture."""

    def objective(image: torch.Tensor) -> dict[str, torch.Tensor]:
        features = lossnet(image)
        grams = {name: gram(features[name]) for name in style_layers}
        terms = {"style": style_weight * style_loss(grams, target_grams, style_layers), "tv": tv_weight * tv_loss(image)}
        terms["loss"] = terms["style"] + terms["tv"]
        return terms

    return objective


def dream(lossnet: LossNetwork, layer: str) -> Objective:
    """DeepDream (Mordvintsev et al. 2015): ascend the mean squared activation of a layer,
    amplifying whatever the layer already sees in the image."""

    def objective(image: torch.Tensor) -> dict[str, torch.Tensor]:
        energy = lossnet(image)[layer].float().pow(2).mean()
        return {"energy": energy, "loss": -energy}

    return objective


def channel_activation(features: torch.Tensor, channel: int, log_softmax: bool = False) -> torch.Tensor:
    """Mean activation of one channel ((B,C,H,W) features) or one class score ((B,K) logits).

    `log_softmax` scores a class by its log-probability: raw scores of a network whose
    classes share features all rise together, so the raw one does not single a class out.
    """
    if not 0 <= channel < features.shape[1]:
        raise OptimizeError(f"channel {channel} out of range: the layer has {features.shape[1]}")
    if log_softmax and features.dim() == 2:
        features = torch.log_softmax(features.float(), dim=1)
    return features[:, channel].float().mean()


def maximize(lossnet: LossNetwork, layer: str, channel: int, *, l2_weight: float, tv_weight: float,
             log_softmax: bool = True) -> Objective:
    """Activation maximisation (Erhan et al. 2009; Simonyan et al. 2014; Yosinski et al.
    2015): ascend one channel (or class score, see `channel_activation`) under L2 and TV
    priors; blur and jitter come from the optimiser (`optimize.blur_every`, `jitter`)."""

    def objective(image: torch.Tensor) -> dict[str, torch.Tensor]:
        activation = channel_activation(lossnet(image)[layer], channel, log_softmax)
        terms = {"activation": activation, "l2": l2_weight * alpha_norm_loss(image, 2.0), "tv": tv_weight * tv_loss(image)}
        terms["loss"] = -activation + terms["l2"] + terms["tv"]
        return terms

    return objective


# -- measurements ------------------------------------------------------------------------
def psnr(image: torch.Tensor, reference: torch.Tensor) -> float:
    """Peak signal-to-noise ratio in dB for images in [0,1]."""
    mse = F.mse_loss(image.float().clamp(0, 1), reference.float().clamp(0, 1)).item()
    return float("inf") if mse == 0 else 10.0 * torch.log10(torch.tensor(1.0 / mse)).item()


@torch.no_grad()
def gram_error(lossnet: LossNetwork, image: torch.Tensor, target_grams: Mapping[str, torch.Tensor],
               style_layers: Mapping[str, float]) -> float:
    """The unweighted style loss of `image` against the targets."""
    features = lossnet(image.float())
    return float(style_loss({n: gram(features[n]) for n in style_layers}, target_grams, style_layers))


def labelled(image: torch.Tensor, label: str, band: int = 14) -> torch.Tensor:
    """The image (1,3,H,W or 3,H,W) with a white caption band on top."""
    pil = tensor_to_pil(image)
    sheet = Image.new("RGB", (pil.width, pil.height + band), (255, 255, 255))
    sheet.paste(pil, (0, band))
    ImageDraw.Draw(sheet).text((3, 1), label, fill=(0, 0, 0))
    return pil_to_tensor(sheet)


def contact_sheet(images: Sequence[torch.Tensor], labels: Sequence[str], nrow: int) -> torch.Tensor:
    """Labelled images on one grid (3,H,W), `nrow` per row; all images must share a size."""
    tiles = [labelled(im, text) for im, text in zip(images, labels, strict=True)]
    return make_grid(torch.stack(tiles), nrow=nrow, padding=4, pad_value=1.0)
