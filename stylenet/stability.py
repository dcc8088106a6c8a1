"""The stability term's moved copies: small random camera motions of a training batch.

A network that paints a photo and the same photo moved by a few pixels with different
strokes flickers on video. Training on both and penalising the difference after undoing the
motion (Gupta et al. 2017, "Characterizing and Improving Stability in Neural Style
Transfer"; ReCoNet 2018 uses real flow) makes an ordinary per-frame network stable without
any flow at test time. The motion is an affine warp (shift, rotation, zoom) applied with
`grid_sample`, so the same warp moves the input and the output exactly alike, plus a little
sensor noise on the moved input.
"""

from __future__ import annotations

import math
from collections.abc import Mapping

import torch
import torch.nn.functional as F


def random_motion(batch: int, height: int, width: int, *, shift: float, rotate: float, zoom: float,
                  device=None, generator: torch.Generator | None = None) -> torch.Tensor:
    """(B,2,3) affine maps (for `F.affine_grid`): each a random shift of up to `shift` pixels,
    rotation of up to `rotate` degrees and zoom of up to ±`zoom` (relative), uniformly drawn."""
    u = torch.rand(batch, 4, generator=generator).mul_(2).sub_(1)  # uniform in [-1, 1]
    angle = u[:, 0] * math.radians(rotate)
    scale = 1.0 + u[:, 1] * zoom
    cos, sin = torch.cos(angle) / scale, torch.sin(angle) / scale
    tx, ty = u[:, 2] * 2 * shift / width, u[:, 3] * 2 * shift / height  # pixels → normalised [-1, 1] units
    theta = torch.stack([torch.stack([cos, -sin * height / width, tx], 1),
                         torch.stack([sin * width / height, cos, ty], 1)], 1)
    return theta.to(device)


def move(images: torch.Tensor, theta: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Warp a (B,C,H,W) batch by `theta`: (moved images, (B,1,H,W) mask of pixels whose source is inside)."""
    grid = F.affine_grid(theta.to(images.dtype), list(images.shape), align_corners=False)
    moved = F.grid_sample(images, grid, mode="bilinear", padding_mode="zeros", align_corners=False)
    inside = (grid.abs() <= 1).all(-1, keepdim=True).permute(0, 3, 1, 2)
    return moved, inside.to(images.dtype)


def moved_copy(images: torch.Tensor, cfg: Mapping, generator: torch.Generator | None = None):
    """The batch under one random motion per image, with sensor noise: (moved + noise, theta, mask)."""
    b, _, h, w = images.shape
    theta = random_motion(b, h, w, shift=float(cfg.get("shift", 4.0)), rotate=float(cfg.get("rotate", 1.0)),
                          zoom=float(cfg.get("zoom", 0.02)), device=images.device, generator=generator)
    moved, inside = move(images, theta)
    noise = float(cfg.get("noise", 0.0))
    if noise > 0:
        moved = moved + noise * torch.randn(moved.shape, generator=generator).to(moved)
    return moved.clamp(0, 1), theta, inside
