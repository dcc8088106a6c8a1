"""Stylize images larger than memory allows, tile by tile, without seams.

Instance norm makes each tile's output depend on its own statistics; `FrozenNormStats`
takes them once from the whole (downscaled) image so every tile is normalised alike, and
`tiled_forward` blends tiles only where their receptive fields lie inside them.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

from .imageio import check_pixels
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
    """How far (px) an output pixel sees: k//2+1+2 (encoder) + 8 per residual block + 2+1+k//2
    (decoder), k the first and last convs' kernel, + 2+1 for where nearest upsampling rounds
    (17 + 8 per block for the Johnson network); with `shuffle` r all of it is on the 1/r grid,
    plus the r×r block an output pixel sits in."""
    r = int(getattr(net, "shuffle", 1))
    return (2 * (int(net.kernel) // 2) + 9 + 8 * int(net.num_residual)) * r + r - 1


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


def _as_float(x: torch.Tensor, dtype: torch.dtype) -> torch.Tensor:
    """A slice of the input as the network's float dtype in [0,1] (uint8 inputs are 0-255)."""
    return x.to(dtype).div_(255) if x.dtype == torch.uint8 else x.to(dtype)


def _area_downscale(x: torch.Tensor, scale: float, dtype: torch.dtype, rows: int = 256) -> torch.Tensor:
    """`F.interpolate(x, scale_factor=scale, mode="area")`, converting `rows` output rows of the
    input to float at a time: a uint8 12000x12000 photo is never a 1.7 GB float tensor.

    Area interpolation is adaptive average pooling, separable into columns then rows; each
    output row's window of input rows lies inside its chunk, so the result is the same.
    """
    h, w = x.shape[-2:]
    oh, ow = max(1, math.floor(h * scale)), max(1, math.floor(w * scale))
    out = torch.empty(*x.shape[:-2], oh, ow, dtype=dtype, device=x.device)
    for r0 in range(0, oh, rows):
        r1 = min(oh, r0 + rows)
        top, bottom = r0 * h // oh, -(-r1 * h // oh)
        cols = F.adaptive_avg_pool2d(_as_float(x[..., top:bottom, :], dtype), (bottom - top, ow))
        for i in range(r0, r1):
            a, b = i * h // oh - top, -(-(i + 1) * h // oh) - top
            out[..., i, :] = cols[..., a:b, :].mean(dim=-2)
    return out


@torch.no_grad()
def tiled_forward(net: TransformerNet, x: torch.Tensor, tile: int = 1024, blend: int = 32,
                  stats_pixels: int = 4_000_000, finish=None, dtype: torch.dtype | None = None, style=None) -> torch.Tensor:
    """Stylize (B,3,H,W) tile by tile: bounded memory, no seams.

    Every tile is normalised with the same instance-norm statistics, taken once from the whole
    image (downscaled to at most `stats_pixels`: the largest size stylized untiled anyway). A tile's pixels closer than the
    receptive radius to its inner edges are wrong (they see the tile's padding), so they get
    weight 0; the next `blend` px fade in linearly. Tiles therefore overlap by 2*radius + blend
    and agree exactly wherever they are blended. When the image has at most stats_pixels the
    statistics are exact and the result equals untiled stylization (up to float rounding);
    above it, the only difference is the downscaled statistics, which are the same for all tiles.

    `x` is float in [0,1] (result: float32) or uint8 (result: uint8, and no float copy of the
    whole image is ever made). Blended rows are kept for one row of tiles at a time, so memory
    beyond the input and the result is bounded by tile × width, whatever the image's height.
    `finish(y, x)` post-processes each finished band (float, the input's band beside it);
    `dtype`: what the network runs in (default: x's float dtype, float32 for uint8).
    `style`: a multi-style network's style (`TransformerNet.forward`), the same for the
    statistics pass and every tile (γ, β of one layer shape the statistics of the next).
    Empty, NaN/inf or meta-device input is a ValueError (`imageio.check_pixels`).
    """
    check_pixels(x, uint8=True)
    b, _, h, w = x.shape
    dtype = dtype or (x.dtype if x.is_floating_point() else torch.float32)
    m = net.size_multiple  # tiles start on the padded grid of the network (4 px; 4r with shuffle r)
    margin = -(-receptive_radius(net) // m) * m + m
    blend = max(m, -(-blend // m) * m)
    overlap = 2 * margin + blend
    tile = max(-(-tile // m) * m, 2 * overlap)
    # the result in the input's layout family: uint8 stays uint8 (channels last: what PIL wants back)
    if x.dtype == torch.uint8:
        out = torch.empty(b, h, w, 3, device=x.device, dtype=torch.uint8).permute(0, 3, 1, 2)
    else:
        out = torch.empty(b, 3, h, w, device=x.device, dtype=torch.float32)

    def emit(acc: torch.Tensor, weight: torch.Tensor, top: int) -> None:
        """Rows top..top+len(acc) are complete: normalise the blend and store them."""
        if acc.shape[-2] == 0:
            return
        y = acc / weight
        rows = slice(top, top + acc.shape[-2])
        if finish is not None:
            y = finish(y, _as_float(x[..., rows, :], torch.float32))
        if out.dtype == torch.uint8:
            y = y.clamp_(0, 1).mul_(255).round_()
        out[..., rows, :] = y

    ys, xs = tile_starts(h, tile, overlap, m), tile_starts(w, tile, overlap, m)
    run = net if style is None else (lambda part: net(part, style))
    with FrozenNormStats(net) as norms:
        scale = (stats_pixels / (h * w)) ** 0.5
        run(_as_float(x, dtype) if scale >= 1 else _area_downscale(x, scale, dtype))
        norms.mode = "apply"
        top = 0
        acc = torch.zeros(b, 3, 0, w, device=x.device)
        weight = torch.zeros(1, 1, 0, w, device=x.device)
        for i, y0 in enumerate(ys):
            y1 = h if i == len(ys) - 1 else min(h, y0 + tile)
            emit(acc[..., : y0 - top, :], weight[..., : y0 - top, :], top)  # no later tile reaches above y0
            grown = torch.zeros(b, 3, y1 - y0, w, device=x.device)
            grown_weight = torch.zeros(1, 1, y1 - y0, w, device=x.device)
            kept = acc.shape[-2] - (y0 - top)
            if kept > 0:
                grown[..., :kept, :] = acc[..., y0 - top:, :]
                grown_weight[..., :kept, :] = weight[..., y0 - top:, :]
            acc, weight, top = grown, grown_weight, y0
            wy = _ramp(y1 - y0, i > 0, i < len(ys) - 1, margin, blend, x.device)
            for j, x0 in enumerate(xs):
                x1 = w if j == len(xs) - 1 else min(w, x0 + tile)
                wx = _ramp(x1 - x0, j > 0, j < len(xs) - 1, margin, blend, x.device)
                wt = (wy[:, None] * wx[None, :])[None, None]
                acc[..., x0:x1] += run(_as_float(x[..., y0:y1, x0:x1], dtype)).float() * wt
                weight[..., x0:x1] += wt
        emit(acc, weight, top)
    return out
