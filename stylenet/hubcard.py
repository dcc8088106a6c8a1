"""What a style looks like on the Hugging Face Hub: the folder `export.py push_to_hub=` uploads.

`build_hub_folder` writes, before anything is sent: the export (`<style>.safetensors`), its
ONNX graph, a small JPEG sample grid (photos on the left, each style beside them) and a
`README.md` model card made with `huggingface_hub.ModelCard` (`library_name: stylenet`,
style-transfer tags, the painting, the recipe, quality numbers when the export records them,
the commands that load it). The export's metadata comes from a file that may be a stranger's,
so its text is flattened before it enters the card, a path in it shows only its file name,
and no name from it becomes a path.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import warnings
from collections.abc import Mapping, Sequence
from pathlib import Path

from .imageio import atomic_write
from .modelfile import EXPORT_SUFFIX, ModelFile, read_model_file, safe_filename

TAGS = ("style-transfer", "neural-style-transfer", "image-to-image", "stylenet")
SAMPLE_NAME = "sample.jpg"
CARD_NAME = "README.md"
#: metadata keys of the recipe table, in order, with their labels
RECIPE = (("training_steps", "training steps"), ("image_size", "training crop (px)"), ("batch_size", "batch size"),
          ("dtype", "weights stored as"), ("stylenet_version", "stylenet version"))
#: the loss options the recipe table shows, with their labels
LOSS_FIELDS = (("network", "loss network"), ("weights", "loss network weights"), ("content_layer", "content layer"),
               ("style_layers", "style layers"), ("content_weight", "content weight"), ("style_weight", "style weight"),
               ("tv_weight", "total variation weight"), ("temporal_weight", "temporal weight (stable video)"))


def _text(value, limit: int = 200) -> str:
    """Untrusted metadata as one table-safe line: no control characters, no table breaks, no
    HTML, at most `limit` characters."""
    text = " ".join(re.sub(r"[\x00-\x1f\x7f]", " ", str(value)).split())
    text = text.replace("|", "\\|").replace("<", "&lt;").replace(">", "&gt;")
    return text[:limit] + ("…" if len(text) > limit else "")


def _shown(value) -> str:
    """A loss option as the card shows it: a path only by its file name (the trainer's own
    folders stay private), a mapping by its keys, a number as it is."""
    if isinstance(value, dict):
        return ", ".join(map(str, value))
    if isinstance(value, str) and ("/" in value or "\\" in value):
        return re.split(r"[\\/]", value.rstrip("/\\"))[-1]
    return str(value)


def _json(metadata: dict, key: str):
    try:
        return json.loads(metadata.get(key) or "null")
    except (TypeError, ValueError):
        return None


def sample_grid(model_path: str | os.PathLike, photos: Sequence[str | os.PathLike], cell: int = 192, gap: int = 4):
    """One row per photo: the photo (square-cropped), then the photo in each of the network's
    styles. None when no photo is given."""
    from PIL import Image

    from .gallery import BACKGROUND, load_photos, square_thumbnail, stylize_cells
    from .inference import Stylizer

    if not photos:
        return None
    stylizer = Stylizer.load(model_path, device="cpu", precision="fp32")
    styles = stylizer.styles if len(stylizer.styles) > 1 else [None]
    pictures = load_photos(photos)
    cells = stylize_cells([stylizer] * len(styles), pictures, cell, styles=styles)
    step = cell + gap
    sheet = Image.new("RGB", ((len(styles) + 1) * step + gap, len(pictures) * step + gap), BACKGROUND)
    for i, (photo, row) in enumerate(zip(pictures, cells)):
        sheet.paste(square_thumbnail(photo, cell), (gap, gap + i * step))
        for j, picture in enumerate(row, start=1):
            sheet.paste(picture, (gap + j * step, gap + i * step))
    return sheet


def card_text(model: ModelFile, repo_id: str, *, revision: str | None = None, files: Sequence[str] = (),
              sample: str | None = None, license: str | None = None, paintings: Mapping[str, Mapping] | None = None):
    """The model card (a `huggingface_hub.ModelCard`) of an export pushed to `repo_id`.
    `paintings`: {style name: its preset's title, license, url} for the styles that are presets
    (given by the command, which composes the presets; a stranger's name is never looked up)."""
    from huggingface_hub import ModelCard, ModelCardData

    styles = model.styles
    spec = f"hf://{repo_id}" + (f"@{revision}" if revision and revision != "main" else "")
    data = ModelCardData(library_name="stylenet", pipeline_tag="image-to-image", tags=list(TAGS),
                         **({"license": license} if license else {}))
    shown = [_text(s, 80) for s in styles]
    title = shown[0] if len(shown) == 1 else f"{len(shown)} styles"
    lines = [f"# {title}: fast neural style transfer", "",
             "A feed-forward image-transformation network (Johnson et al. 2016) that paints any photo in "
             f"{'the style of ' + shown[0] if len(shown) == 1 else 'one of its styles or a blend of them: ' + ', '.join(shown)}"
             " in one pass, trained with stylenet against perceptual losses.", ""]
    if sample:
        lines += [f"![photos and their stylized versions]({sample})", "",
                  "*Each row: a photo, then the photo stylized by this network.*", ""]
    lines += ["## Use it", "", "With stylenet installed:", "", "```bash",
              f"python scripts/stylize.py model={spec} input=photo.jpg output=photo_styled.png", "```", "", "```python",
              "from stylenet.inference import Stylizer", "", f'stylizer = Stylizer.load("{spec}")',
              "painted = stylizer.stylize(pil_image)" + (f'  # style="{shown[0]}", or a blend' if len(shown) > 1 else ""),
              "```", "",
              "The weights are a safetensors file (loading it runs no code); the Hub cache keeps it, so it loads "
              "offline once fetched. Pin a version with `@REVISION` (a branch, tag or commit).", ""]
    onnx = [f for f in files if f.endswith(".onnx")]
    if onnx:
        lines += [f"Without stylenet: `{onnx[0]}` runs in ONNX Runtime. Input `image`: (N,3,H,W) float32 RGB in "
                  "[0,1], any size from 16×16; output `stylized`, same shape"
                  + ("; a second input `style`: (N,S) weights over the styles." if len(styles) > 1 else "."), ""]
    lines += ["## The painting" if len(styles) == 1 else "## The paintings", ""]
    for name in styles:
        about = {k: str(v) for k, v in dict((paintings or {}).get(name) or {}).items() if v}
        source = f" ([source]({about['url']}))" if about.get("url", "").startswith("https://") else ""
        words = about.get("title", "")
        licence = f"; licence: {about['license']}" if about.get("license") else ""
        lines.append(f"- `{_text(name, 80)}`" + (f": {_text(words)}" if words else "") + source + _text(licence))
    lines += ["", "## Training recipe", "", "| | |", "| --- | --- |"]
    arch = model.arch if isinstance(model.arch, dict) else {}
    lines.append(f"| network | {_text(arch.get('class', 'TransformerNet'))}("
                 + _text(", ".join(f"{k}={v}" for k, v in arch.items() if k != "class")) + ") |")
    loss = _json(model.metadata, "loss")
    if isinstance(loss, dict):
        for key, label in LOSS_FIELDS:
            if loss.get(key) not in (None, "", {}):
                lines.append(f"| {label} | {_text(_shown(loss[key]))} |")
    for key, label in RECIPE:
        if model.metadata.get(key):
            lines.append(f"| {label} | {_text(model.metadata[key])} |")
    quality = _json(model.metadata, "quality")
    if isinstance(quality, dict) and quality:
        lines += ["", "## Quality", "", "| measure | value |", "| --- | --- |"]
        lines += [f"| {_text(k, 80)} | {_text(v, 80)} |" for k, v in quality.items()]
    if files:
        lines += ["", "## Files", ""] + [f"- `{f}`" for f in files]
    return ModelCard(f"---\n{data.to_yaml()}\n---\n\n" + "\n".join(lines) + "\n")


def build_hub_folder(model_path: str | os.PathLike, folder: str | os.PathLike, *, repo_id: str,
                     onnx_path: str | os.PathLike | None = None, photos: Sequence[str | os.PathLike] = (),
                     cell: int = 192, max_kb: int = 200, revision: str | None = None, license: str | None = None,
                     paintings: Mapping[str, Mapping] | None = None) -> Path:
    """The folder a push uploads, written into `folder` (created): the export, its ONNX graph,
    `sample.jpg` (photos that do not exist are skipped with a warning) and `README.md`."""
    from .gallery import save_jpeg

    model = read_model_file(model_path)
    if Path(model_path).suffix != EXPORT_SUFFIX:
        raise ValueError(f"build_hub_folder takes an exported .safetensors file, not {model_path}")
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    stem = safe_filename(model.style_name)
    files = [f"{stem}{EXPORT_SUFFIX}"]
    atomic_write(folder / files[0], lambda tmp: shutil.copyfile(model_path, tmp))
    if onnx_path is not None:
        files.append(f"{stem}.onnx")
        atomic_write(folder / files[1], lambda tmp: shutil.copyfile(onnx_path, tmp))
    found = [p for p in map(Path, photos) if p.is_file()]
    if missing := [str(p) for p in map(Path, photos) if not p.is_file()]:
        warnings.warn(f"sample photos not found, left out of the card's grid: {', '.join(missing)}", stacklevel=2)
    sample = None
    if found:
        save_jpeg(sample_grid(model_path, found, cell), folder / SAMPLE_NAME, max_bytes=max_kb * 1000 if max_kb else None)
        sample = SAMPLE_NAME
        files.append(SAMPLE_NAME)
    else:
        warnings.warn("no sample photos (card.photos=[...]): the model card has no sample grid", stacklevel=2)
    card = card_text(model, repo_id, revision=revision, files=files, sample=sample, license=license, paintings=paintings)
    atomic_write(folder / CARD_NAME, lambda tmp: Path(tmp).write_text(str(card), encoding="utf-8"))
    return folder


__all__ = ["build_hub_folder", "card_text", "sample_grid"]
