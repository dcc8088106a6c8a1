"""The Johnson et al. (2016) image transformation network, with the fixes the field adopted.

Reflection padding (no border artefacts), instance norm (Ulyanov et al. 2016: style is a
per-image statistic), and nearest-upsample-then-convolve instead of transposed
convolutions (Odena et al. 2016: no checkerboard). `width` and `num_residual` make a
slimmer network for CPUs one config away.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

#: the input side is padded to a multiple of this (two stride-2 downsamplings) …
SIZE_MULTIPLE = 4
#: … and to at least this, so every reflection pad inside stays smaller than its input
MIN_SIZE = 8


class ConvLayer(nn.Sequential):
    """Reflection pad → conv (→ instance norm → ReLU)."""

    def __init__(self, cin: int, cout: int, kernel: int, stride: int = 1, norm: bool = True, relu: bool = True):
        layers: list[nn.Module] = [nn.ReflectionPad2d(kernel // 2), nn.Conv2d(cin, cout, kernel, stride)]
        if norm:
            layers.append(nn.InstanceNorm2d(cout, affine=True))
        if relu:
            layers.append(nn.ReLU(inplace=True))
        super().__init__(*layers)


class ResidualBlock(nn.Module):
    """Two 3×3 conv layers with an identity skip (He et al. 2016), no ReLU after the sum."""

    def __init__(self, channels: int):
        super().__init__()
        self.body = nn.Sequential(
            ConvLayer(channels, channels, 3), ConvLayer(channels, channels, 3, relu=False)
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.body(x)


class UpsampleConvLayer(nn.Module):
    """Nearest-neighbour ×2 upsampling followed by a conv layer (no checkerboard artefacts)."""

    def __init__(self, cin: int, cout: int, kernel: int = 3):
        super().__init__()
        self.conv = ConvLayer(cin, cout, kernel)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.conv(F.interpolate(x, scale_factor=2, mode="nearest"))


class TransformerNet(nn.Module):
    """Image (B,3,H,W) in [0,1] → stylized image of the same size in [0,1].

    Any H, W works: the input is reflection-padded up to a multiple of 4 (at least 8) and
    the output cropped back, so odd sizes come out exactly as large as they went in.
    """

    def __init__(self, width: int = 32, num_residual: int = 5):
        super().__init__()
        self.width, self.num_residual = width, num_residual
        w = width
        self.encoder = nn.Sequential(
            ConvLayer(3, w, 9), ConvLayer(w, 2 * w, 3, stride=2), ConvLayer(2 * w, 4 * w, 3, stride=2)
        )
        self.residuals = nn.Sequential(*[ResidualBlock(4 * w) for _ in range(num_residual)])
        self.decoder = nn.Sequential(
            UpsampleConvLayer(4 * w, 2 * w),
            UpsampleConvLayer(2 * w, w),
            ConvLayer(w, 3, 9, norm=False, relu=False),
        )

    def arch(self) -> dict[str, int]:
        """What it takes to rebuild this network (stored in checkpoints and exports)."""
        return {"width": self.width, "num_residual": self.num_residual}

    @staticmethod
    def arch_of(state_dict) -> dict[str, int]:
        """The arch() its weights imply (KeyError if they are not this network's): what a model
        file's recorded architecture is checked against before anything is built."""
        blocks = {key.split(".")[1] for key in state_dict if key.startswith("residuals.")}
        return {"width": int(state_dict["encoder.0.1.weight"].shape[0]), "num_residual": len(blocks)}

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h, w = x.shape[-2], x.shape[-1]
        pad_h = max(MIN_SIZE - h, (-h) % SIZE_MULTIPLE)
        pad_w = max(MIN_SIZE - w, (-w) % SIZE_MULTIPLE)
        if pad_h or pad_w:
            # reflection padding needs pad < size; replicate covers 1-3 px images too
            mode = "reflect" if h > pad_h and w > pad_w else "replicate"
            x = F.pad(x, (0, pad_w, 0, pad_h), mode=mode)
        return self.transform(x)[..., :h, :w]

    def transform(self, x: torch.Tensor) -> torch.Tensor:
        """The network proper, on an input already padded to a multiple of 4 (at least 8)."""
        return torch.sigmoid(self.decoder(self.residuals(self.encoder(x))))
