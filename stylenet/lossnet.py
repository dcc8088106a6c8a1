"""A frozen torchvision ImageNet network that returns its activations by layer *name*.

Naming (nothing else in stylenet holds a layer index):
- VGG16/VGG19: `conv{block}_{i}`, `relu{block}_{i}`, `pool{block}` — e.g. `relu2_2`,
  `relu4_3`, `relu5_4` (the names of Johnson et al. and Gatys et al.).
- SqueezeNet 1.1: the paper's numbering, `conv1`, `relu1`, `pool1`, `fire2`, `fire3`,
  `pool3`, `fire4`, `fire5`, `pool5`, `fire6` … `fire9` (a fire module's output is
  already ReLU'd).

The network is truncated after the deepest requested layer, normalises its [0,1] RGB
input with ImageNet statistics itself, and returns every requested layer from one pass.
The pseudo-layer `logits` (the classifier's class scores) makes a class addressable by
name like any channel (activation maximisation); asking for it keeps the whole network.
"""

from __future__ import annotations

import socket
from collections import OrderedDict
from pathlib import Path

import torch
import torchvision
from torch import nn

from .errors import UserError
from .losses import gram

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
NETWORKS = ("vgg16", "vgg19", "squeezenet1_1")
DOWNLOAD_TIMEOUT_S = 10
LOGITS = "logits"


class LossNetworkError(UserError, RuntimeError):
    """The loss network cannot be built (unknown name or layer, unloadable weights)."""


def _vgg_names(features: nn.Sequential) -> list[str]:
    names, block, i = [], 1, 0
    for layer in features:
        if isinstance(layer, nn.Conv2d):
            i += 1
            names.append(f"conv{block}_{i}")
        elif isinstance(layer, nn.ReLU):
            names.append(f"relu{block}_{i}")
        elif isinstance(layer, nn.MaxPool2d):
            names.append(f"pool{block}")
            block, i = block + 1, 0
        else:  # pragma: no cover - torchvision's VGG has nothing else in features
            raise LossNetworkError(f"unexpected VGG layer {layer}")
    return names


def _squeezenet_names(features: nn.Sequential) -> list[str]:
    names, fire = [], 1
    for layer in features:
        if isinstance(layer, nn.Conv2d):
            names.append("conv1")
        elif isinstance(layer, nn.ReLU):
            names.append("relu1")
        elif isinstance(layer, nn.MaxPool2d):
            names.append(f"pool{fire}")
        else:  # torchvision.models.squeezenet.Fire
            fire += 1
            names.append(f"fire{fire}")
    return names


def layer_names(network: str) -> list[str]:
    """Every addressable layer name of `network`, in forward order."""
    return _named_features(_build(network, weights=None))[0]


def _build(network: str, weights) -> nn.Module:
    if network not in NETWORKS:
        raise LossNetworkError(f"unknown loss network {network!r}; choose one of {', '.join(NETWORKS)}")
    return torchvision.models.get_model(network, weights=weights)


def _named_features(model: nn.Module) -> tuple[list[str], nn.Sequential]:
    features = model.features
    names = _squeezenet_names(features) if "squeezenet" in type(model).__name__.lower() else _vgg_names(features)
    return names, features


def _head(model: nn.Module) -> nn.Sequential:
    """torchvision's classifier after `features`: (B,C,H,W) features → (B,1000) class scores."""
    if "squeezenet" in type(model).__name__.lower():
        return nn.Sequential(model.classifier, nn.Flatten(1))
    return nn.Sequential(model.avgpool, nn.Flatten(1), model.classifier)


def _load_state_dict_file(path: Path) -> dict[str, torch.Tensor]:
    if not path.is_file():
        raise LossNetworkError(f"loss network weights file not found: {path}")
    try:
        if path.suffix == ".safetensors":
            from safetensors.torch import load_file

            return load_file(str(path))
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # noqa: BLE001 - any unreadable file gets the same clear message
        raise LossNetworkError(f"cannot read loss network weights {path}: {exc}") from exc
    if isinstance(state, dict) and "state_dict" in state and isinstance(state["state_dict"], dict):
        state = state["state_dict"]
    if not isinstance(state, dict):
        raise LossNetworkError(f"{path} does not hold a state dict")
    return state


def _download(network: str, weights: str):
    """Resolve a torchvision weights enum name and fetch it through torchvision's cache."""
    try:
        enum = torchvision.models.get_model_weights(network)[weights]
    except KeyError:
        options = ", ".join(w.name for w in torchvision.models.get_model_weights(network))
        raise LossNetworkError(f"unknown weights {weights!r} for {network}; use one of {options}, DEFAULT, a file path or null") from None
    old = socket.getdefaulttimeout()
    socket.setdefaulttimeout(DOWNLOAD_TIMEOUT_S)
    try:
        return enum.get_state_dict(progress=True, check_hash=False)
    except Exception as exc:  # noqa: BLE001 - URLError, timeouts, proxies: all mean "no weights"
        cache = Path(torch.hub.get_dir()) / "checkpoints"
        raise LossNetworkError(
            f"could not download {network} weights {enum.name} ({exc.__class__.__name__}: {exc}); "
            f"offline? pass a local file with loss.weights=/path/to/{network}.pth, "
            f"or put the file in {cache}"
        ) from None
    finally:
        socket.setdefaulttimeout(old)


def _load_weights(model: nn.Module, network: str, weights: str, kept: list[nn.Module], head: bool) -> None:
    """Load `weights` into `model`; only the layers kept (and the classifier for `logits`) must be in it.

    A features-only file (e.g. VGG16 conv layers without the classifier) serves any layer it
    covers; a key the model does not have, or a needed one the file lacks, is an error.
    """
    as_path = Path(str(weights)).expanduser()
    if as_path.suffix in (".pth", ".pt", ".safetensors", ".bin") or as_path.exists():
        state = _load_state_dict_file(as_path)
    else:
        state = _download(network, str(weights))
    try:
        result = model.load_state_dict(state, strict=False)
    except RuntimeError as exc:  # shape mismatches
        first = str(exc).splitlines()[0]
        raise LossNetworkError(f"weights {weights} do not fit torchvision's {network}: {first}") from None
    if result.unexpected_keys:
        extra = ", ".join(result.unexpected_keys[:6]) + (" …" if len(result.unexpected_keys) > 6 else "")
        raise LossNetworkError(f"weights {weights} do not fit torchvision's {network}: unexpected keys {extra}")
    needed_modules = list(kept) + ([m for name, m in model.named_children() if name != "features"] if head else [])
    needed_params = {id(p) for m in needed_modules for p in m.parameters()}
    needed = [k for k, p in model.named_parameters() if id(p) in needed_params]
    absent = set(result.missing_keys)
    missing = [k for k in needed if k in absent]
    if missing:
        parts = []
        for what, keys in (("the layers up to the deepest requested one", [k for k in missing if k.startswith("features.")]),
                           ("the classifier that `logits` needs", [k for k in missing if not k.startswith("features.")])):
            if keys:
                shown = ", ".join(keys[:6]) + (f" … ({len(keys)} in all)" if len(keys) > 6 else "")
                parts.append(f"{what} (missing keys {shown})")
        raise LossNetworkError(f"weights {weights} lack {' and '.join(parts)}; use a file that holds them, or request shallower layers")


class LossNetwork(nn.Module):
    """Frozen feature extractor: `forward(x) -> {layer name: activation}` for `layers`.

    `weights`: a torchvision enum name (`DEFAULT`, `IMAGENET1K_V1`, …; downloaded into
    torch's hub cache), a path to a state-dict file (`.pth` loaded with
    `weights_only=True`, or `.safetensors`), or `None` for random weights (tests).
    """

    def __init__(self, network: str, layers, weights: str | None = "DEFAULT"):
        super().__init__()
        model = _build(network, weights=None)
        names, features = _named_features(model)
        self.network = network
        self.layers = list(dict.fromkeys(layers))
        unknown = [n for n in self.layers if n not in names and n != LOGITS]
        if unknown:
            raise LossNetworkError(f"{network} has no layer(s) {unknown}; it has: {', '.join(names)}, {LOGITS}")
        deepest = len(names) - 1 if LOGITS in self.layers else max(names.index(n) for n in self.layers)
        if weights is not None:
            _load_weights(model, network, weights, kept=list(features)[: deepest + 1], head=LOGITS in self.layers)
        self.features = nn.Sequential(OrderedDict(zip(names[: deepest + 1], list(features)[: deepest + 1])))
        for module in self.features:
            if isinstance(module, nn.ReLU):
                module.inplace = False  # a returned activation must not be overwritten by the next layer
        self.head = _head(model) if LOGITS in self.layers else None
        self.register_buffer("mean", torch.tensor(IMAGENET_MEAN).view(1, 3, 1, 1), persistent=False)
        self.register_buffer("std", torch.tensor(IMAGENET_STD).view(1, 3, 1, 1), persistent=False)
        self.requires_grad_(False)
        self.eval()

    def train(self, mode: bool = True) -> LossNetwork:
        """Always eval: a frozen loss network must not change behaviour with the trainer's mode."""
        return super().train(False)

    def forward(self, x: torch.Tensor, layers=None) -> dict[str, torch.Tensor]:
        """`{name: activation}` for `layers` (default: all requested at construction).

        The pass stops after the deepest layer asked for: a content batch that needs only
        `relu2_2` does not pay for `relu4_3`.
        """
        wanted = set(self.layers if layers is None else layers)
        if unknown := wanted - set(self.layers):
            raise LossNetworkError(f"layer(s) {sorted(unknown)} were not requested when building this loss network")
        features_wanted = wanted - {LOGITS}
        x = (x - self.mean.to(x.dtype)) / self.std.to(x.dtype)
        out = {}
        for name, module in self.features.named_children():
            x = module(x)
            if name in features_wanted:
                out[name] = x
                if len(out) == len(features_wanted) and LOGITS not in wanted:
                    break
        if LOGITS in wanted:
            out[LOGITS] = self.head(x)
        return out

    @torch.no_grad()
    def style_grams(self, image: torch.Tensor, layers=None) -> dict[str, torch.Tensor]:
        """Gram matrices (fp32) of `image`'s features at `layers`: the style targets that
        training keeps as buffers and the Gatys tools optimise towards."""
        layers = list(self.layers if layers is None else layers)
        features = self(image.to(self.mean.device, self.mean.dtype), layers=layers)
        return {name: gram(features[name]) for name in layers}
