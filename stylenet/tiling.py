"""Stylize images larger than memory allows, tile by tile, without seams.

Instance norm makes each tile's output depend on its own statistics; `FrozenNormStats`
takes them once from the whole (downscaled) image so every tile is normalised alike, and
`tiled_forward` blends tiles only where their receptive fields lie inside them.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from .transformer import TransformerNet


class FrozenNormStats:
    """Record every InstanceNorm's statistics on one input, then normalise tiles with them.

    Instance norm makes each tile's output depend on that tile's own statistics, so tiles
    stylized independently disagree at their seams. Taking the statistics from the whole
    image once (downscaled when large) gives every tile the same normalisation: tiles then
    agree wherever their receptive fields are inside them, and the blend hides the rest.
    """

    def __init__(self, net: nn.Module):
        self.norms = [m for m in net.modules() if isinstance(m, nn.modules.instancenorm._InstanceNorm)]
        self.stats: dict[nn.Module, tuple[torch.Tensor, torch.Tensor]] = {}
        self.mode = "record"
        self._handles = []

    def __enter__(self) -> FrozenNormStats:
        self._handles = [m.register_forward_hook(self._hook) for m in self.norms]
        return self

    def __exit__(self, *exc) -> None:
        for h in self._handles:
            h.remove()
        self._handles = []

    def _hook(self, module, inputs, output):
        x = inputs[0]
        if self.mode == "record":
            var, mean = torch.var_mean(x.float(), dim=(-2, -1), keepdim=True, unbiased=False)
            self.stats[module] = (mean, var)
            return None
        mean, var = self.stats[module]
        y = (x.float() - mean) * torch.rsqrt(var + module.eps)
        if module.affine:
            y = y * module.weight.float().view(1, -1, 1, 1) + module.bias.float().view(1, -1, 1, 1)
        return y.to(output.dtype)


def receptive_radius(net: TransformerNet) -> int:
    """How far (px) an output pixel sees: 4+1+2 (encoder) + 8 per residual block + 2+1+4 (decoder)."""
    return 14 + 8 * int(net.num_residual)


def tile_starts(length: int, tile: int, overlap: int, align: int = 4) -> list[int]:
    """Tile origins along one axis: aligned to `align` so every tile sees the global pixel grid."""
    if length <= tile:
        return [0]
    step = max(align, (tile - overlap) // align * align)
    starts = list(range(0, length - tile, step))
    last = (length - tile) // align * align
    if last > starts[-1]:
        starts.append(last)
    return starts


def _ramp(n: int, start: bool, end: bool, margin: int, blend: int, device) -> torch.Tensor:
    """Blend weights along one tile side that has a neighbour: 0 over `margin` px, then a linear rise."""
    w = torch.ones(n, device=device)
    side = torch.cat([torch.zeros(margin, device=device), (torch.arange(blend, device=device) + 0.5) / blend])
    side = side[: n // 2]
    if start:
        w[: len(side)] = side
    if end:
        w[n - len(side):] = torch.minimum(w[n - len(side):], side.flip(0))
    return w


@torch.no_grad()
def tiled_forward(net: TransformerNet, x: torch.Tensor, tile: int = 1024, blend: int = 32,
                  stats_pixels: int = 4_000_000) -> torch.Tensor:
    """Stylize (B,3,H,W) tile by tile: bounded memory, no seams.

    Every tile is normalised with the same instance-norm statistics, taken once from the whole
    image (downscaled to at most `stats_pixels`: the largest size stylized untiled anyway). A tile's pixels closer than the
    receptive radius to its inner edges are wrong (they see the tile's padding), so they get
    weight 0; the next `blend` px fade in linearly. Tiles therefore overlap by 2*radius + blend
    and agree exactly wherever they are blended. When the image has at most stats_pixels the
    statistics are exact and the result equals untiled stylization (up to float rounding);
    above it, the only difference is the downscaled statistics, which are the same for all tiles.
    """
    b, _, h, w = x.shape
    margin = -(-receptive_radius(net) // 4) * 4 + 4
    blend = max(4, -(-blend // 4) * 4)
    overlap = 2 * margin + blend
    tile = max(-(-tile // 4) * 4, 2 * overlap)
    out = torch.zeros(b, 3, h, w, device=x.device, dtype=torch.float32)
    weight = torch.zeros(1, 1, h, w, device=x.device, dtype=torch.float32)
    ys, xs = tile_starts(h, tile, overlap), tile_starts(w, tile, overlap)
    with FrozenNormStats(net) as norms:
        scale = (stats_pixels / (h * w)) ** 0.5
        net(x if scale >= 1 else F.interpolate(x, scale_factor=scale, mode="area"))
        norms.mode = "apply"
        for i, y0 in enumerate(ys):
            y1 = h if i == len(ys) - 1 else min(h, y0 + tile)
            wy = _ramp(y1 - y0, i > 0, i < len(ys) - 1, margin, blend, x.device)
            for j, x0 in enumerate(xs):
                x1 = w if j == len(xs) - 1 else min(w, x0 + tile)
                wx = _ramp(x1 - x0, j > 0, j < len(xs) - 1, margin, blend, x.device)
                wt = (wy[:, None] * wx[None, :])[None, None]
                out[..., y0:y1, x0:x1] += net(x[..., y0:y1, x0:x1]).float() * wt
                weight[..., y0:y1, x0:x1] += wt
    return out.div_(weight)

