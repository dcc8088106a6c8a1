"""Apply a trained style: load a model file safely, stylize images, frames and tensors.

Independent of the training side (no Lightning, Hydra or loss network): it imports only the
network definition, the model-file reader, tiling, device choice, the image helpers, torch,
safetensors, numpy and Pillow, so an exported style runs anywhere torch does and imports fast.

    s = Stylizer.load("checkpoints/hokusai/hokusai.safetensors")   # or a Lightning last.ckpt
    picture = s.stylize(Image.open("photo.jpg"), strength=0.8, preserve_color=False)
    frame = s.stylize(bgr_frame, bgr=True)                            # OpenCV frames
    y = s.stylize_tensor(x)                                           # (B,3,H,W) in [0,1]

    m = Stylizer.load("checkpoints/hokusai-the_scream/hokusai-the_scream.safetensors")  # several styles
    m.styles                                                          # ['hokusai', 'the_scream']
    m.stylize(photo, style="the_scream")                              # one of them
    m.stylize(photo, style={"hokusai": 0.7, "the_scream": 0.3})       # a blend of their γ, β
"""

from __future__ import annotations

import json
import math
import os
import warnings
from collections.abc import Mapping

import numpy as np
import torch
from PIL import Image

from .device import inference_dtype, pick_device, precision_name
from .errors import UserError
from .imageio import check_pixels, pil_to_tensor, tensor_to_pil, to_rgb
from .modelfile import build_network, read_model_file
from .presets import describe, resolve_model
from .onnxrun import pick as pick_backend
from .tiling import tiled_forward
from .transformer import TransformerNet
from .upsample import check as check_render
from .upsample import luma, render_scaled
from .upsample import options as upsample_options


def preserve_colors(stylized: torch.Tensor, original: torch.Tensor) -> torch.Tensor:
    """Luminance-only transfer (Gatys et al. 2016): the stylized Y with the photo's Cb and Cr.

    With Cb and Cr held fixed, YCbCr → RGB reduces to adding the luminance change to every
    channel; clamping to [0,1] only touches already-saturated pixels.
    """
    return (original + (luma(stylized) - luma(original))).clamp_(0, 1)


class StyleChoiceError(UserError, ValueError):
    """A `style=` that the model does not hold (an unknown name, a bad blend)."""


class Stylizer:
    """A trained network, ready to apply: device and precision chosen, optionally compiled, or
    run by ONNX Runtime (`backend="onnxruntime"`, or "auto": where it runs fp32 on a CPU).

    A multi-style network (`styles`: its style names) takes `style=`: a name, an index, or a
    blend {name: weight, ...} (weights ≥ 0, normalised to sum 1, so {a: 7, b: 3} is
    {a: 0.7, b: 0.3}; γ, β are interpolated with them). The default is its first style.

    Inputs are PIL images, numpy frames (H,W,3 or N,H,W,3; uint8 or float in [0,1]; RGB or,
    with bgr=True, OpenCV's BGR), tensors (3,H,W or B,3,H,W in [0,1]) or lists of these.
    Outputs have the input's type, layout and size. Large images are tiled automatically.
    """

    def __init__(self, net: TransformerNet, *, metadata: dict[str, str] | None = None, device="auto",
                 precision="auto", channels_last="auto", compile: bool = False, batch_size: int = 4,
                 tile_size: int = 1024, tile_blend: int = 32, max_pixels: int = 4_000_000,
                 scale: float = 1.0, upsample: Mapping | None = None, backend: str = "torch"):
        self.device = pick_device(device)
        # the real-time path: the network at `scale` of the resolution, upsampled along the
        # photo's edges (stylenet.upsample); pictures large enough to be tiled run at full size
        self.scale, self.upsample = float(scale), upsample_options(upsample)
        check_render(self.scale, self.upsample["mode"])  # before any picture, not at the first one
        # backend=onnxruntime runs fp32: its precision=auto is fp32 even where torch would pick bf16
        self.dtype = inference_dtype("fp32" if backend == "onnxruntime" and precision in (None, "auto") else precision,
                                     self.device)
        self.backend = pick_backend(str(backend), self.device, self.dtype, bool(compile))
        # auto = off: channels_last measured slower for this network on an H100 (5.1 vs 4.3 ms at
        # 640x480) and on CPUs in fp32 (docs/speed.md)
        self.channels_last = False if channels_last in (None, "auto") else bool(channels_last)
        self.metadata = dict(metadata or {})
        self.source = "(a network given in Python)"  # Stylizer.load: the file it was read from
        self.batch_size = max(1, int(batch_size))
        self.tile_size, self.tile_blend = int(tile_size), int(tile_blend)
        self.max_pixels = int(max_pixels)
        if self.tile_size < 1 or self.max_pixels < 1 or self.tile_blend < 0:
            raise ValueError(f"tile_size and max_pixels must be positive (got tile_size={tile_size}, max_pixels={max_pixels})")
        memory_format = torch.channels_last if self.channels_last else torch.contiguous_format
        self.net = net.eval().requires_grad_(False).to(self.device, self.dtype, memory_format=memory_format)
        self._forward = self.net
        self._compiled = bool(compile)
        if compile:
            self._forward = torch.compile(self.net, dynamic=True)
        # the untiled network through ONNX Runtime (fp32 on a CPU: stylenet.onnxrun); tiles stay in
        # PyTorch, whose instance norms they hook
        self._onnx = None
        if self.backend == "onnxruntime":
            from .onnxrun import OnnxNetwork

            try:
                self._onnx = OnnxNetwork(self.net)
            except Exception as exc:  # noqa: BLE001 - auto falls back to PyTorch; an explicit choice fails loudly
                if backend != "auto":
                    raise
                warnings.warn(f"ONNX Runtime could not take the network ({exc.__class__.__name__}: {exc}); running PyTorch",
                              stacklevel=2)
                self.backend = "torch"

    @classmethod
    def load(cls, path: str | os.PathLike, *, variant: str | None = None, **kwargs) -> Stylizer:
        """From an export (.safetensors), a Lightning .ckpt, an `hf://OWNER/REPO` or a preset
        name: the user's checkpoints/<name>/ first, else the network shipped with the package
        (`variant`: full (default) | realtime | auto: realtime on a CPU; stylenet.presets).
        `source` says which file it was (the commands log it)."""
        source = resolve_model(path, variant=variant, device=kwargs.get("device"))
        model = read_model_file(source)
        stylizer = cls(build_network(model), metadata=model.metadata, **kwargs)
        stylizer.source = describe(source, spec=path)
        return stylizer

    @property
    def name(self) -> str:
        return self.metadata.get("style_name", "style")

    @property
    def styles(self) -> list[str]:
        """The style names the network holds, in order (one: its `name`)."""
        if self.net.num_styles == 1:
            return [self.name]
        names = json.loads(self.metadata["styles"]) if "styles" in self.metadata else []
        return names if len(names) == self.net.num_styles else [f"style{i}" for i in range(self.net.num_styles)]

    def style_weights(self, style=None) -> torch.Tensor | None:
        """`style=` → the network's weights over its styles (S,) on its device (None: a
        single-style network). A name or an index is one-hot, a blend {name: weight} is
        normalised to sum 1 (a weight of 1.0 with the others 0.0 is exactly that style)."""
        names = self.styles
        known = f"it holds {', '.join(names)}" if len(names) > 1 else f"it holds only {names[0]!r}"
        if isinstance(style, Mapping):
            weights = torch.zeros(len(names), dtype=torch.float64)
            for key, value in style.items():
                if str(key) not in names:
                    raise StyleChoiceError(f"style {str(key)!r} is not in the model {self.name!r}: {known}")
                try:
                    value = float(value)
                except (TypeError, ValueError):
                    raise StyleChoiceError(f"style weight {key}={value!r} is not a number") from None
                if not math.isfinite(value) or value < 0:
                    raise StyleChoiceError(f"style weight {key}={value} must be 0 or more (a blend mixes styles, it cannot subtract one)")
                weights[names.index(str(key))] += value
            if weights.sum() <= 0:
                raise StyleChoiceError(f"the style weights {dict(style)} add up to 0: give at least one style a positive weight")
            weights /= weights.sum()
        elif style is None or isinstance(style, (str, int)) and not isinstance(style, bool):
            index = 0 if style is None else style
            if isinstance(index, str):
                if index not in names:
                    raise StyleChoiceError(f"style {index!r} is not in the model {self.name!r}: {known}")
                index = names.index(index)
            if not 0 <= index < len(names):
                raise StyleChoiceError(f"style index {index} is out of range: {known} (0..{len(names) - 1})")
            weights = torch.zeros(len(names), dtype=torch.float64)
            weights[index] = 1.0
        else:
            raise StyleChoiceError(f"style={style!r}: pass a style name, an index or a blend {{name: weight, ...}}")
        return None if len(names) == 1 else weights.to(self.device, torch.float32)

    def label(self, style=None) -> str:
        """A short name for `style=` (file names, the webcam overlay): the style's name, or a
        blend as name+name with percentages (hokusai70+the_scream30)."""
        if isinstance(style, Mapping):
            weights = self.style_weights(style)
            if weights is None:
                return self.name
            return "+".join(f"{n}{round(100 * float(w))}" for n, w in zip(self.styles, weights) if w > 0)
        if self.net.num_styles == 1:
            return self.name
        self.style_weights(style)  # an unknown style is an error here too
        return style if isinstance(style, str) else self.styles[0 if style is None else style]

    def __repr__(self) -> str:
        styles = f", styles={self.styles}" if self.net.num_styles > 1 else ""
        return (f"Stylizer({self.name!r}, {self.net.arch()}{styles}, device={self.device}, dtype={self.dtype}, "
                f"backend={self.backend})")

    @property
    def engine(self) -> str:
        """What runs the network, in words (the webcam prints it)."""
        what = "ONNX Runtime" if self.backend == "onnxruntime" else "PyTorch" + (" (torch.compile)" if self._compiled else "")
        return f"{what}, {precision_name(self.dtype)}, {self.device}"

    # -- tensors ------------------------------------------------------------------------------
    def _network(self, x: torch.Tensor, style: torch.Tensor | None = None) -> torch.Tensor:
        if self._onnx is not None and self._onnx.fits(x):
            return self._onnx(x, style)
        x = x.to(self.device, self.dtype)
        if self.channels_last:
            x = x.contiguous(memory_format=torch.channels_last)
        args = (x,) if style is None else (x, style)
        if not self._compiled:
            return self.net(*args).float()
        try:
            return self._forward(*args).float()
        except Exception as exc:  # noqa: BLE001 - an optional speed-up must not stop a live feed
            warnings.warn(f"torch.compile failed ({exc.__class__.__name__}: {exc}); running eager", stacklevel=3)
            self._forward, self._compiled = self.net, False
            return self.net(*args).float()

    def _stats_pixels(self, tile_size: int) -> int:
        """The size of the copy a tiled picture's statistics come from: max_pixels, but at most
        one tile's area, so the statistics pass costs no more memory than a tile does (a
        stylize process with the Johnson net peaks at 4.3 GB at 4 MP on a CPU, 1.5 GB at 1 MP)."""
        return min(self.max_pixels, tile_size * tile_size)

    def _should_tile(self, h: int, w: int, tile) -> bool:
        if tile in (None, "auto"):
            return h * w > self.max_pixels
        return bool(tile)

    @torch.no_grad()
    def stylize_tensor(self, x: torch.Tensor, *, style=None, strength: float = 1.0, preserve_color: bool = False,
                       tile: bool | int | str = "auto") -> torch.Tensor:
        """(B,3,H,W) or (3,H,W) float in [0,1] → the same shape, device and dtype, stylized.

        style: a multi-style network's style (see `style_weights`); strength blends with the
        input (0 returns it unchanged); preserve_color keeps the input's colours and takes only
        the luminance from the style; tile: "auto" (above max_pixels), True/False, or a tile
        size in pixels. Empty, NaN/inf, meta-device or non-float input is a ValueError
        (`imageio.check_pixels`).
        """
        if not isinstance(x, torch.Tensor):
            raise TypeError(f"stylize_tensor takes a torch.Tensor, got a {type(x).__name__} (Stylizer.stylize takes the rest)")
        if x.dim() == 3:
            return self.stylize_tensor(x[None], style=style, strength=strength, preserve_color=preserve_color, tile=tile)[0]
        weights = self.style_weights(style)
        check_pixels(x)
        if not 0.0 <= float(strength) <= 1.0:
            raise ValueError(f"strength must be between 0 and 1, got {strength}")
        if strength == 0:
            return x.clone()
        h, w = x.shape[-2:]
        tiled = self._should_tile(h, w, tile)
        tile_size = tile if isinstance(tile, int) and not isinstance(tile, bool) else self.tile_size
        outs = []
        for chunk in x.split(1 if tiled else self.batch_size):
            original = chunk.to(self.device, torch.float32)
            if tiled:
                y = tiled_forward(self.net, original.to(self.dtype), tile_size, self.tile_blend, self._stats_pixels(tile_size),
                                  style=weights)
            else:
                y = render_scaled(lambda t: self._network(t, weights), original, self.scale, **self.upsample)
            if preserve_color:
                y = preserve_colors(y, original)
            if strength != 1:
                y = torch.lerp(original, y, float(strength))
            outs.append(y.clamp_(0, 1).to(x.device, x.dtype))
        return outs[0] if len(outs) == 1 else torch.cat(outs)

    # -- images, frames, batches ----------------------------------------------------------------
    def stylize(self, image, *, style=None, strength: float = 1.0, preserve_color: bool = False, bgr: bool = False,
                tile: bool | int | str = "auto"):
        """Stylize a PIL image, a numpy frame/batch, a tensor, or a list of any of these
        (`style`: which of a multi-style network's styles, or a blend: `style_weights`)."""
        self.style_weights(style)  # an unknown style fails before any work, whatever the input
        opts = dict(style=style, strength=strength, preserve_color=preserve_color, tile=tile)
        if isinstance(image, (list, tuple)):
            return self._stylize_list(list(image), bgr=bgr, **opts)
        if isinstance(image, torch.Tensor):
            return self.stylize_tensor(image, **opts)
        if isinstance(image, Image.Image):
            image = to_rgb(image)
            if strength != 0 and self._should_tile(image.height, image.width, tile):
                return Image.fromarray(self._stylize_large(np.array(image), **opts), "RGB")
            return tensor_to_pil(self.stylize_tensor(pil_to_tensor(image), **opts))
        if isinstance(image, np.ndarray) and image.dtype == np.uint8 and image.ndim == 3 and image.shape[-1] == 3 \
                and strength != 0 and self._should_tile(image.shape[0], image.shape[1], tile):
            if bgr:
                return np.ascontiguousarray(self._stylize_large(np.ascontiguousarray(image[..., ::-1]), **opts)[..., ::-1])
            return self._stylize_large(image, **opts)
        if isinstance(image, np.ndarray):
            x, restore = array_to_tensor(image, bgr=bgr)
            return restore(self.stylize_tensor(x, **opts))
        raise TypeError(f"cannot stylize a {type(image).__name__}: pass a PIL image, a numpy array or a tensor")

    __call__ = stylize

    def _stylize_large(self, array: np.ndarray, *, style, strength: float, preserve_color: bool, tile) -> np.ndarray:
        """An (H,W,3) uint8 RGB picture above max_pixels, kept uint8 end to end: tiles become
        float one at a time, so a 12000x12000 photo costs its bytes in and out plus a band of
        tiles (never the 1.7 GB float copies of the whole image)."""
        if not 0.0 <= float(strength) <= 1.0:
            raise ValueError(f"strength must be between 0 and 1, got {strength}")
        array = positive_strides(array)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # a read-only array (np.asarray of a PIL image) is only read here
            x = torch.from_numpy(array).permute(2, 0, 1)[None].to(self.device)

        def finish(y: torch.Tensor, original: torch.Tensor) -> torch.Tensor:
            if preserve_color:
                y = preserve_colors(y, original)
            return torch.lerp(original, y, float(strength)) if strength != 1 else y

        tile_size = tile if isinstance(tile, int) and not isinstance(tile, bool) else self.tile_size
        y = tiled_forward(self.net, x, tile_size, self.tile_blend, self._stats_pixels(tile_size), finish=finish, dtype=self.dtype,
                          style=self.style_weights(style))
        return y[0].permute(1, 2, 0).cpu().numpy()

    def _stylize_list(self, images: list, bgr: bool, **opts) -> list:
        """Batch same-sized items together (video frames, folders of equal photos)."""
        results: list = [None] * len(images)
        groups: dict[tuple, list[int]] = {}
        for i, image in enumerate(images):
            if isinstance(image, Image.Image):
                key = ("pil", image.size)
            elif isinstance(image, np.ndarray) and image.ndim == 3:
                key = ("np", image.shape, image.dtype.str)
            elif isinstance(image, torch.Tensor) and image.dim() == 3:
                key = ("t", tuple(image.shape), image.dtype, image.device)
            else:
                key = ("single", i)
            groups.setdefault(key, []).append(i)
        for key, idx in groups.items():
            if key[0] == "single":
                results[idx[0]] = self.stylize(images[idx[0]], bgr=bgr, **opts)
            elif key[0] == "pil":
                batch = torch.stack([pil_to_tensor(to_rgb(images[i])) for i in idx])
                for i, y in zip(idx, self.stylize_tensor(batch, **opts)):
                    results[i] = tensor_to_pil(y)
            elif key[0] == "np":
                ys = self.stylize(np.stack([images[i] for i in idx]), bgr=bgr, **opts)
                for i, y in zip(idx, ys):
                    results[i] = y
            else:
                for i, y in zip(idx, self.stylize_tensor(torch.stack([images[i] for i in idx]), **opts)):
                    results[i] = y
        return results


def positive_strides(array: np.ndarray) -> np.ndarray:
    """`array`, copied if it has a negative stride (a flipped view, a[::-1]): torch.from_numpy
    refuses those, and np.ascontiguousarray keeps them along axes of length 1."""
    return array.copy() if any(step < 0 for step in array.strides) else array


def array_to_tensor(array: np.ndarray, bgr: bool = False):
    """(H,W,3) or (N,H,W,3) uint8/float array → ((N,3,H,W) float tensor, function back to the array's form)."""
    if array.ndim not in (3, 4) or array.shape[-1] != 3:
        raise ValueError(f"expected an image array (H,W,3) or (N,H,W,3), got shape {array.shape}")
    single, dtype = array.ndim == 3, array.dtype
    batch = array[None] if single else array
    if bgr:
        batch = batch[..., ::-1]
    if dtype == np.uint8:
        x = torch.from_numpy(positive_strides(np.ascontiguousarray(batch))).permute(0, 3, 1, 2).float().div_(255.0)
    elif np.issubdtype(dtype, np.floating):
        x = torch.from_numpy(positive_strides(np.ascontiguousarray(batch, dtype=np.float32))).permute(0, 3, 1, 2)
    else:
        raise ValueError(f"expected a uint8 or float image array, got {dtype}")

    def restore(y: torch.Tensor) -> np.ndarray:
        out = y.permute(0, 2, 3, 1)
        out = out.mul(255).round_().clamp_(0, 255).to(torch.uint8) if dtype == np.uint8 else out.to(torch.float32)
        out = out.cpu().numpy()
        if bgr:
            out = np.ascontiguousarray(out[..., ::-1])
        out = out.astype(dtype, copy=False)
        return out[0] if single else out

    return x, restore
