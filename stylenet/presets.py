"""Model names → files: the user's own networks first, then the presets shipped with the package.

`model=hokusai` (any command, `Stylizer.load("hokusai")`) looks in this order:
1. `checkpoints/hokusai/hokusai.safetensors` (else its `last.ckpt`) under the working
   directory: a network the user trained wins over the shipped one of the same name;
2. the presets shipped as package data (`stylenet/presets/`, docs/presets.md): for each
   public-domain painting a full network (`<name>.safetensors`, the default recipe) and a
   real-time one (`<name>-realtime.safetensors`, `model=realtime` trained stable).
`variant=full|realtime` picks one of the two (`auto`: the real-time one on a CPU, the full
one on an accelerator, what the webcam wants). A user's network wins when the variant is unset
or `auto`; asked for `full` or `realtime` by name, it answers only when it is that kind. `hf://OWNER/REPO[/FILE][@REVISION]` goes to the Hugging Face Hub
(stylenet.hub). A path is taken as it is.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path

from .modelfile import EXPORT_SUFFIX, ModelLoadError
from .resources import PRESETS_DIR

#: where a user's trained networks live, relative to the working directory (train.yaml `checkpoint_dir`)
CHECKPOINT_DIRS = ("checkpoints",)
#: the shipped networks of a preset: `full` (the default recipe) and `realtime` (model=realtime, stable)
VARIANTS = ("full", "realtime")
#: the file name of a shipped variant, given the preset's name
VARIANT_FILES = {"full": "{name}" + EXPORT_SUFFIX, "realtime": "{name}-realtime" + EXPORT_SUFFIX}


def shipped_presets(folder: Path | None = None) -> dict[str, dict[str, Path]]:
    """{preset name: {variant: file}} of the networks installed with the package (or in `folder`)."""
    folder = Path(folder) if folder is not None else PRESETS_DIR
    found: dict[str, dict[str, Path]] = {}
    for path in sorted(folder.glob(f"*{EXPORT_SUFFIX}")) if folder.is_dir() else []:
        stem = path.name.removesuffix(EXPORT_SUFFIX)
        name, variant = (stem.removesuffix("-realtime"), "realtime") if stem.endswith("-realtime") else (stem, "full")
        found.setdefault(name, {})[variant] = path
    return found


def pick_variant(variant: str | None, device=None) -> str | None:
    """`variant=` as one of VARIANTS (None: unset). `auto`: realtime on a CPU, full on an
    accelerator (the real-time network keeps a webcam live on 2 CPU cores; a GPU runs the full one)."""
    if variant in (None, "", "null"):
        return None
    variant = str(variant)
    if variant == "auto":
        from .device import pick_device

        return "realtime" if pick_device(device if device is not None else "auto").type == "cpu" else "full"
    if variant not in VARIANTS:
        raise ModelLoadError(f"variant={variant} is not one of auto, {', '.join(VARIANTS)}")
    return variant


def network_variant(path: Path) -> str:
    """Which kind of network a model file holds: `realtime` (run at half size inside: shuffle > 1) or `full`."""
    from .modelfile import read_model_file

    return "realtime" if int(read_model_file(path).arch.get("shuffle") or 1) > 1 else "full"


def user_model(name: str, roots: Sequence[Path]) -> Path | None:
    """The user's own network named `name` (its export, else its last.ckpt), or None."""
    for root in roots:
        for base in CHECKPOINT_DIRS:
            folder = root / base / name
            for candidate in (folder / f"{name}{EXPORT_SUFFIX}", folder / "last.ckpt"):
                if candidate.is_file():
                    return candidate
    return None


def resolve_model(spec: str | os.PathLike, roots: Sequence[Path] | None = None, *, variant: str | None = None,
                  device=None, presets: Path | None = None) -> Path:
    """A model path, an `hf://` spec (downloaded into the Hub cache), or a preset name: the
    user's network under checkpoints/ first, else the shipped file of `variant` (unset: the
    full network where the package has it, else the one it has)."""
    from .hub import download, is_hub_spec

    text = os.fspath(spec)
    if is_hub_spec(text):
        return download(text)
    path = Path(text)
    if not text or path.exists() or path.suffix or len(path.parts) > 1:
        return path
    name = text
    wanted = pick_variant(variant, device)
    roots = list(roots) if roots is not None else [Path.cwd()]
    own = user_model(name, roots)
    explicit = variant in VARIANTS
    if own is not None and (not explicit or network_variant(own) == wanted):
        return own
    shipped = shipped_presets(presets)
    if name in shipped:
        if wanted is None:  # unset: the full network, else whichever the package has
            return shipped[name].get("full") or next(iter(shipped[name].values()))
        choice = wanted
        if choice in shipped[name]:
            return shipped[name][choice]
        have = ", ".join(sorted(shipped[name]))
        raise ModelLoadError(f"the shipped preset {name!r} has no {choice} network (it has: {have}); "
                             f"use variant={next(iter(sorted(shipped[name])))}")
    if own is not None:  # a user's network of the other kind, and nothing shipped under this name
        return own
    found = sorted({p.stem for r in roots for b in CHECKPOINT_DIRS for p in (r / b).glob(f"*/*{EXPORT_SUFFIX}")})
    hint = f"shipped presets: {', '.join(sorted(shipped)) or 'none installed'}; " \
           f"your exports: {', '.join(found) if found else 'none under checkpoints/'}"
    raise ModelLoadError(
        f"no model file or preset named {name!r} ({hint}); train it with python train.py style={name}, "
        f"or name a file (model=path/to/style.safetensors) or a Hub repository (model=hf://OWNER/REPO)"
    )


def is_shipped(path: str | os.PathLike, presets: Path | None = None) -> bool:
    """Whether `path` is one of the networks installed with the package (a folder nothing should write into)."""
    try:
        Path(path).resolve().relative_to(Path(presets if presets is not None else PRESETS_DIR).resolve())
    except ValueError:
        return False
    return True


def describe(path: Path, presets: Path | None = None, spec: str | os.PathLike | None = None) -> str:
    """The log line's words for a resolved model file: which file, and whether it is shipped,
    the user's, or from the Hub (`spec`: what the user asked for)."""
    from .hub import is_hub_spec

    if spec is not None and is_hub_spec(os.fspath(spec)):
        return f"{os.fspath(spec)} ({path})"
    if not is_shipped(path, presets):
        return str(path)
    stem = Path(path).name.removesuffix(EXPORT_SUFFIX)
    kind = "realtime" if stem.endswith("-realtime") else "full"
    return f"{path} (shipped preset {stem.removesuffix('-realtime')}, {kind} network)"
