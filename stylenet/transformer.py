"""The Johnson et al. (2016) image transformation network, with the fixes the field adopted.

Reflection padding (no border artefacts), instance norm (Ulyanov et al. 2016: style is a
per-image statistic), and nearest-upsample-then-convolve instead of transposed
convolutions (Odena et al. 2016: no checkerboard). `width` and `num_residual` make a
slimmer network for CPUs one config away; `kernel` (of the first and last conv) and
`separable` (depthwise-separable residual and upsampling convs, Howard et al. 2017) make
`model=mobile`; `shuffle` (space-to-depth in, sub-pixel convolution out: Shi et al. 2016)
runs the whole network at 1/shuffle of the image's size while still drawing every output
pixel: `model=realtime`, the real-time path's network (docs/inference.md).

`num_styles > 1` holds several styles in one network (Dumoulin et al. 2017, "A Learned
Representation for Artistic Style"): every instance norm becomes a conditional one with its
own scale and shift (γ, β) per style, everything else is shared. The style is passed
explicitly through the network (`forward(x, style)`), as an index or as weights over the
styles (a blend interpolates γ, β). `num_styles == 1` is the plain network, module for
module and key for key, so every file written before the option existed loads unchanged.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

#: the input side is padded to a multiple of this (two stride-2 downsamplings) …
SIZE_MULTIPLE = 4
#: … and to at least this, so every reflection pad inside stays smaller than its input
MIN_SIZE = 8


class ConditionalInstanceNorm2d(nn.Module):
    """Instance norm with one (γ, β) per style (Dumoulin et al. 2017); `forward(x, w)` takes
    style weights w (B, S) and uses γ = w @ weight, β = w @ bias, so a one-hot w is a pure
    style and any other w interpolates the styles' γ, β (style mixing).

    The normalisation is a plain `nn.InstanceNorm2d(affine=False)` child, so code that hooks
    instance-norm modules (`tiling.FrozenNormStats`) sees it like any other; γ, β follow it.
    """

    def __init__(self, channels: int, num_styles: int):
        super().__init__()
        self.norm = nn.InstanceNorm2d(channels, affine=False)
        self.weight = nn.Parameter(torch.ones(num_styles, channels))
        self.bias = nn.Parameter(torch.zeros(num_styles, channels))

    @property
    def num_styles(self) -> int:
        return self.weight.shape[0]

    def forward(self, x: torch.Tensor, style: torch.Tensor) -> torch.Tensor:
        w = style.to(self.weight.dtype)
        gamma, beta = w @ self.weight, w @ self.bias
        return self.norm(x) * gamma[:, :, None, None] + beta[:, :, None, None]


class _NarrowConv2d(torch.autograd.Function):
    """A stride-1 conv with few output channels whose gradients are computed as forward convs.

    oneDNN runs both gradients of a conv like the network's last layer (32 → 3 channels, 9×9)
    at a twentieth of its usual rate on AVX2: 898 ms for a batch of 4 at 256 px, where its
    forward takes 120 ms. Swapping roles gives the same sums as convs it runs fast: the input
    gradient is the zero-padded output gradient convolved with the flipped, transposed kernel,
    and the weight gradient is the weight gradient of *that* conv with the layer's input as its
    output gradient (flipped back). The forward runs on a channels-last copy of the input
    (2.5× faster on AVX2, returned NCHW). Forward + backward: 982 → 142 ms on AVX2, 250 → 135 ms
    with AVX-512 (docs/speed.md)."""

    @staticmethod
    def forward(ctx, x, weight, bias):
        ctx.save_for_backward(x, weight)
        ctx.has_bias = bias is not None
        return F.conv2d(x.contiguous(memory_format=torch.channels_last), weight, bias).contiguous()

    @staticmethod
    def backward(ctx, grad):
        x, weight = ctx.saved_tensors
        kh, kw = weight.shape[-2:]
        padded = F.pad(grad.contiguous(), (kw - 1, kw - 1, kh - 1, kh - 1))
        flipped = weight.flip(2, 3).transpose(0, 1)  # (C_in, C_out, kh, kw): the conv from grad to x
        grad_x = F.conv2d(padded, flipped) if ctx.needs_input_grad[0] else None
        grad_w = None
        if ctx.needs_input_grad[1]:
            grad_w = torch.ops.aten.convolution_backward(
                x, padded, flipped, None, [1, 1], [0, 0], [1, 1], False, [0, 0], 1, [False, True, False],
            )[1].flip(2, 3).transpose(0, 1)
        grad_b = grad.sum((0, 2, 3)) if ctx.has_bias and ctx.needs_input_grad[2] else None
        return grad_x, grad_w, grad_b


def narrow_conv2d(x: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor | None) -> torch.Tensor:
    """`F.conv2d(x, weight, bias)` (stride 1, no padding) with its gradients computed as
    forward convs (`_NarrowConv2d`): the same function and gradients up to float rounding,
    several times faster on CPUs for a conv with few output channels (the network's last)."""
    return _NarrowConv2d.apply(x, weight, bias)


#: convs with at most this many output channels may use `narrow_conv2d` (measured: it wins for
#: 32 → 3 at 9×9, 1.9× with AVX-512 to 7× on AVX2; it loses for `model=realtime`'s 16 → 12 at 3×3)
NARROW_MAX_CHANNELS = 4


class ConvLayer(nn.Sequential):
    """Reflection pad → conv (→ instance norm → ReLU); with `num_styles > 1` the norm is
    conditional; `separable`: the conv is depthwise then pointwise.

    `narrow` (off by default; `TransformerNet.use_narrow_conv`) computes a dense stride-1
    conv with few output channels as `narrow_conv2d` in fp32 (under autocast it runs as usual)."""

    def __init__(self, cin: int, cout: int, kernel: int, stride: int = 1, norm: bool = True, relu: bool = True,
                 num_styles: int = 1, separable: bool = False):
        layers: list[nn.Module] = [nn.ReflectionPad2d(kernel // 2)]
        if separable:  # depthwise k×k then pointwise 1×1 (MobileNet): ~k² fewer multiply-adds
            layers += [nn.Conv2d(cin, cin, kernel, stride, groups=cin), nn.Conv2d(cin, cout, 1)]
        else:
            layers.append(nn.Conv2d(cin, cout, kernel, stride))
        if norm:
            layers.append(nn.InstanceNorm2d(cout, affine=True) if num_styles == 1 else ConditionalInstanceNorm2d(cout, num_styles))
        if relu:
            layers.append(nn.ReLU(inplace=True))
        super().__init__(*layers)
        #: whether the narrow form applies (a dense stride-1 conv with few outputs), and whether it is used
        self.narrow_capable = not separable and stride == 1 and cout <= NARROW_MAX_CHANNELS
        self.narrow = False

    def forward(self, x: torch.Tensor, style: torch.Tensor | None = None, start: int = 0) -> torch.Tensor:
        """`start`: skip the first layers (the upsampling layer's phase form does pad and conv itself)."""
        for index, layer in enumerate(list(self)[start:], start):
            if index == 1 and self.narrow and not torch.is_autocast_enabled(x.device.type):
                x = narrow_conv2d(x, layer.weight, layer.bias)
            else:
                x = layer(x, style) if isinstance(layer, ConditionalInstanceNorm2d) else layer(x)
        return x


class ResidualBlock(nn.Module):
    """Two 3×3 conv layers with an identity skip (He et al. 2016), no ReLU after the sum."""

    def __init__(self, channels: int, num_styles: int = 1, separable: bool = False):
        super().__init__()
        self.body = nn.Sequential(
            ConvLayer(channels, channels, 3, num_styles=num_styles, separable=separable),
            ConvLayer(channels, channels, 3, relu=False, num_styles=num_styles, separable=separable),
        )

    def forward(self, x: torch.Tensor, style: torch.Tensor | None = None) -> torch.Tensor:
        return x + self.body[1](self.body[0](x, style), style)


def upsample_conv3x3(x: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor | None) -> torch.Tensor:
    """conv3×3(reflection-pad(nearest-upsample×2(x))) computed at the input's size: the same
    function with 16 instead of 36 multiply-adds per input pixel and no 4× upsampled copy.

    After nearest ×2 upsampling a 3×3 window sees only 2×2 input pixels, so each of the four
    output phases (even/odd row × even/odd column) is a 2×2 conv of the input whose taps are
    sums of the 3×3 taps (even rows: rows i−1, i with taps w₀, w₁+w₂; odd rows: rows i, i+1
    with w₀+w₁, w₂), and reflecting the upsampled image by one pixel repeats the input's edge
    pixel (replicate padding). One conv computes all four phases as 4·C_out channels on the
    padded input; each phase is its slice, and pixel_shuffle interleaves them. Exact up to
    float rounding (tests: outputs and gradients equal to 1e-5)."""
    b, _, h, w = x.shape
    cout = weight.shape[0]
    rows = (torch.stack([weight[:, :, 0], weight[:, :, 1] + weight[:, :, 2]], 2),   # even output rows
            torch.stack([weight[:, :, 0] + weight[:, :, 1], weight[:, :, 2]], 2))   # odd output rows
    taps = [torch.stack(cols, -1) for r in rows
            for cols in ((r[..., 0], r[..., 1] + r[..., 2]), (r[..., 0] + r[..., 1], r[..., 2]))]
    kernel = torch.stack(taps, 1).reshape(cout * 4, weight.shape[1], 2, 2)  # channel c·4 + 2·row phase + column phase
    y = F.conv2d(F.pad(x, (1, 1, 1, 1), mode="replicate"), kernel, None if bias is None else bias.repeat_interleave(4))
    y = y.view(b, cout, 2, 2, h + 1, w + 1)  # phase (a, c) starts a rows and c columns in
    phases = torch.stack([y[:, :, a, c, a:a + h, c:c + w] for a in (0, 1) for c in (0, 1)], 2)
    return F.pixel_shuffle(phases.reshape(b, cout * 4, h, w), 2)


class UpsampleConvLayer(nn.Module):
    """Nearest-neighbour ×2 upsampling followed by a conv layer (no checkerboard artefacts).

    A dense 3×3 conv on an NCHW input runs as `upsample_conv3x3` (the same function, 2.25×
    fewer multiply-adds) while `phase` is on (the default; `speed.phase_upsample=false`
    trains the classic way); channels-last inputs take the classic path, measured faster
    there (the phase slices cost more copies in NHWC)."""

    def __init__(self, cin: int, cout: int, kernel: int = 3, num_styles: int = 1, separable: bool = False):
        super().__init__()
        self.conv = ConvLayer(cin, cout, kernel, num_styles=num_styles, separable=separable)
        #: whether the phase form applies (a dense 3×3 conv), and whether it is used
        self.phase_capable = kernel == 3 and not separable
        self.phase = self.phase_capable

    def forward(self, x: torch.Tensor, style: torch.Tensor | None = None) -> torch.Tensor:
        if not (self.phase and x.is_contiguous()):
            return self.conv(F.interpolate(x, scale_factor=2, mode="nearest"), style)
        conv = self.conv[1]
        return self.conv(upsample_conv3x3(x, conv.weight, conv.bias), style, start=2)  # then its norm and ReLU


def fine_detail(image: torch.Tensor) -> torch.Tensor:
    """The image minus its 3×3 box blur (edges replicated): its one-pixel detail, what a network
    run at half size cannot redraw. Summed from shifted slices, row sums then column sums: plain
    Slice/Add ops in an ONNX graph, and on a CPU 1.4 ms for 640×480 RGB where avg_pool2d took
    3.7 ms and a depthwise conv of ones (as `upsample.box` computes its windows) about 13 ms."""
    p = F.pad(image, (1, 1, 1, 1), mode="replicate")
    rows = p[..., :-2] + p[..., 1:-1]
    rows = rows + p[..., 2:]
    box = rows[..., :-2, :] + rows[..., 1:-1, :]
    box = box + rows[..., 2:, :]
    return torch.add(image, box, alpha=-1 / 9)


class TransformerNet(nn.Module):
    """Image (B,3,H,W) in [0,1] → stylized image of the same size in [0,1].

    Any H, W works: the input is reflection-padded up to a multiple of 4 (at least 8; with
    `shuffle` r, of 4r, at least 8r) and
    the output cropped back, so odd sizes come out exactly as large as they went in.
    """

    def __init__(self, width: int = 32, num_residual: int = 5, num_styles: int = 1, kernel: int = 9,
                 separable: bool = False, shuffle: int = 1, skip: bool = False):
        super().__init__()
        if shuffle < 1:
            raise ValueError(f"shuffle must be at least 1, got {shuffle}")
        if num_styles < 1:
            raise ValueError(f"num_styles must be at least 1, got {num_styles}")
        if kernel < 1 or kernel % 2 == 0:
            raise ValueError(f"kernel must be an odd number of pixels, got {kernel}")
        self.width, self.num_residual, self.num_styles = width, num_residual, num_styles
        self.kernel, self.separable, self.shuffle = int(kernel), bool(separable), int(shuffle)
        # skip: the photo's finest detail carried around the network to its output (see
        # `transform`); its per-channel gain is a weight, so a model file's weights show whether
        # it has one
        self.skip_gain = nn.Parameter(torch.zeros(3)) if skip else None
        w, s, k, sep, r = width, num_styles, self.kernel, self.separable, self.shuffle
        #: the padded input is a multiple of this, and at least `min_size`
        self.size_multiple, self.min_size = SIZE_MULTIPLE * r, MIN_SIZE * r
        # shuffle r: pixels → r×r×3 channels at 1/r size, and back at the end (no weights, so
        # the state-dict keys stay those of the plain network)
        self.unshuffle = nn.PixelUnshuffle(r) if r > 1 else nn.Identity()
        self.reshuffle = nn.PixelShuffle(r) if r > 1 else nn.Identity()
        self.encoder = nn.Sequential(
            ConvLayer(3 * r * r, w, k, num_styles=s), ConvLayer(w, 2 * w, 3, stride=2, num_styles=s),
            ConvLayer(2 * w, 4 * w, 3, stride=2, num_styles=s),
        )
        self.residuals = nn.Sequential(*[ResidualBlock(4 * w, num_styles=s, separable=sep) for _ in range(num_residual)])
        self.decoder = nn.Sequential(
            UpsampleConvLayer(4 * w, 2 * w, num_styles=s, separable=sep),
            UpsampleConvLayer(2 * w, w, num_styles=s, separable=sep),
            ConvLayer(w, 3 * r * r, k, norm=False, relu=False),
        )

    def use_phase_upsample(self, on: bool = True) -> "TransformerNet":
        """Run the dense 3×3 upsampling convs as `upsample_conv3x3` (on) or the classic way (off)."""
        for layer in self.decoder:
            if isinstance(layer, UpsampleConvLayer):
                layer.phase = bool(on) and layer.phase_capable
        return self

    def use_narrow_conv(self, on: bool = True) -> "TransformerNet":
        """Run convs with few output channels (the last one, drawing RGB) as `narrow_conv2d` (on)
        or as usual (off): the same function, its gradients several times faster on CPUs."""
        for layer in self.modules():
            if isinstance(layer, ConvLayer):
                layer.narrow = bool(on) and layer.narrow_capable
        return self

    def arch(self) -> dict[str, int | bool]:
        """What it takes to rebuild this network (stored in checkpoints and exports)."""
        return {"width": self.width, "num_residual": self.num_residual, "num_styles": self.num_styles,
                "kernel": self.kernel, "separable": self.separable, "shuffle": self.shuffle,
                "skip": self.skip_gain is not None}

    @staticmethod
    def arch_of(state_dict) -> dict[str, int]:
        """The arch() its weights imply (KeyError if they are not this network's): what a model
        file's recorded architecture is checked against before anything is built. The first
        norm's γ is (C,) in a plain network and (S, C) in a conditional one."""
        blocks = {key.split(".")[1] for key in state_dict if key.startswith("residuals.")}
        gamma = state_dict["encoder.0.2.weight"]
        first = state_dict["encoder.0.1.weight"]
        return {"width": int(first.shape[0]), "num_residual": len(blocks),
                "num_styles": 1 if gamma.dim() == 1 else int(gamma.shape[0]), "kernel": int(first.shape[-1]),
                # depthwise: one input channel per group (a plain 3×3 conv here has 4·width)
                "separable": bool(state_dict["decoder.0.conv.1.weight"].shape[1] == 1),
                # space-to-depth by r feeds the first conv 3·r² channels
                "shuffle": round(math.sqrt(int(first.shape[1]) / 3)),
                "skip": "skip_gain" in state_dict}

    def style_weights(self, style, batch: int, device=None) -> torch.Tensor | None:
        """`style` as weights (B, S) over this network's styles; None for a single-style network.

        `style`: None (style 0), an index, or weights (S,) for every image / (B, S) one row per
        image. Weights are used as given (a blend interpolates γ, β; no normalisation here).
        """
        if self.num_styles == 1:
            if style is None or (isinstance(style, int) and style == 0):
                return None
            if isinstance(style, torch.Tensor) and style.shape[-1:] == (1,):
                return None  # one style: γ, β are the plain norm's whatever the weight
            raise ValueError(f"style={style!r}: this network holds one style")
        device = device or self.encoder[0][1].weight.device
        if style is None or isinstance(style, int):
            index = 0 if style is None else style
            if isinstance(index, bool) or not 0 <= index < self.num_styles:
                raise ValueError(f"style index {style!r} out of range: this network holds {self.num_styles} styles")
            return F.one_hot(torch.full((batch,), index, device=device), self.num_styles).float()
        if not isinstance(style, torch.Tensor):
            raise TypeError(f"style must be an index or a weight tensor, got {type(style).__name__}")
        if style.dim() == 1:
            style = style.expand(batch, -1)
        if style.dim() != 2 or style.shape[1] != self.num_styles or style.shape[0] != batch:
            raise ValueError(f"style weights of shape {tuple(style.shape)}: expected ({self.num_styles},) or "
                             f"({batch}, {self.num_styles}) for a batch of {batch}")
        return style.to(device)

    def forward(self, x: torch.Tensor, style=None) -> torch.Tensor:
        h, w = x.shape[-2], x.shape[-1]
        weights = self.style_weights(style, x.shape[0], x.device)
        pad_h = max(self.min_size - h, (-h) % self.size_multiple)
        pad_w = max(self.min_size - w, (-w) % self.size_multiple)
        if pad_h or pad_w:
            # reflection padding needs pad < size; replicate covers 1-3 px images too
            mode = "reflect" if h > pad_h and w > pad_w else "replicate"
            x = F.pad(x, (0, pad_w, 0, pad_h), mode=mode)
        return self.transform(x, weights)[..., :h, :w]

    def transform(self, x: torch.Tensor, style: torch.Tensor | None = None) -> torch.Tensor:
        """The network proper, on an input already padded to a multiple of `size_multiple` (at
        least `min_size`); `style`: weights (B, S) for a multi-style network (see
        `style_weights`), else None.

        With `skip` the photo's finest detail (itself minus its 3×3 box blur) is added to the
        output, times a per-channel gain that starts at 0 (the plain network) and is learnt: a
        network that runs at half size cannot redraw the photo's one-pixel edges, this hands
        them over. (Carrying the whole photo instead, sigmoid(network + logit(photo)), was
        tried: the photo's colours and saturated pixels held the painting off; docs/inference.md.)"""
        photo = x
        x = self.unshuffle(x)
        if self.num_styles == 1:
            x = self.decoder(self.residuals(self.encoder(x)))
        else:
            if style is None:
                raise ValueError("a multi-style network needs style weights (B, S): see TransformerNet.style_weights")
            for part in (self.encoder, self.residuals, self.decoder):
                for layer in part:
                    x = layer(x, style)
        y = torch.sigmoid(self.reshuffle(x))
        if self.skip_gain is None:
            return y
        return torch.addcmul(y, self.skip_gain.view(1, 3, 1, 1), fine_detail(photo.float())).clamp(0, 1)


def append_styles(state_dict: dict[str, torch.Tensor], count: int) -> dict[str, torch.Tensor]:
    """A network's weights with `count` more styles: every norm's γ, β gets `count` new rows,
    each the mean of the existing styles' rows (a plain network's norm is its one style), so
    a new style starts between the known ones instead of from an untrained γ = 1, β = 0."""
    arch = TransformerNet.arch_of(state_dict)
    with torch.device("meta"):
        grown = TransformerNet(**{**arch, "num_styles": arch["num_styles"] + count})
    out = dict(state_dict)
    for path, module in grown.named_modules():
        if isinstance(module, ConditionalInstanceNorm2d):
            for name in ("weight", "bias"):
                rows = state_dict[f"{path}.{name}"]
                rows = rows[None] if rows.dim() == 1 else rows
                out[f"{path}.{name}"] = torch.cat([rows, rows.mean(0, keepdim=True).expand(count, -1)])
    return out
