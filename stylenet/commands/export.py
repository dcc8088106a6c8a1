"""`python scripts/export.py ckpt=checkpoints/<style>/last.ckpt [format=onnx|torchscript|all]
[push_to_hub=OWNER/REPO]` / `stylenet-export`: always the `<style>.safetensors`, plus the graphs
asked for (configs/tools/export.yaml); with `push_to_hub=` also its ONNX graph and a model card,
uploaded to the Hugging Face Hub (stylenet.hub, stylenet.hubcard)."""

from __future__ import annotations

import sys

from . import app


def export(cfg) -> None:
    from ..errors import UserError
    from ..export import FORMATS, export
    from ..hub import check_push, is_hub_spec
    from ..presets import is_shipped, resolve_model

    formats = [str(f).strip() for f in app.as_list(cfg.format)]
    formats = list(FORMATS) if formats == ["all"] else formats
    repo = str(cfg.push_to_hub).strip() if cfg.get("push_to_hub") else None
    if repo:  # every reason a push cannot happen, before any work
        check_push(repo, revision=_text(cfg.hub_revision))
        formats = list(dict.fromkeys([*formats, "safetensors", *(["onnx"] if cfg.push_onnx else [])]))
        if cfg.push_onnx:
            from ..onnxrun import INSTALL, available

            if not available():
                raise UserError(f"push_to_hub uploads the ONNX graph too, which needs onnx: {INSTALL}; or push_onnx=false")
    source = resolve_model(cfg.ckpt)
    # a model from the Hub lives in the Hub's cache, a shipped preset in the installed package:
    # their exports go to the working directory
    out_dir = cfg.out_dir or ("." if is_hub_spec(cfg.ckpt) or is_shipped(source) else None)
    written = export(source, formats, out_dir=out_dir, fp16=bool(cfg.fp16), log=print)
    for kind, path in written.items():
        print(f"{kind + ':':13s}{path}  ({path.stat().st_size / 1e6:.1f} MB)")
    if repo:
        push(cfg, repo, written)


def push(cfg, repo: str, written: dict) -> None:
    """The export, its ONNX graph and a model card → one commit to `repo` on the Hub."""
    import tempfile

    from .. import __version__
    from ..hub import push as upload
    from ..hubcard import build_hub_folder

    card = cfg.card
    with tempfile.TemporaryDirectory(prefix="stylenet-hub-") as tmp:
        folder = build_hub_folder(written["safetensors"], tmp, repo_id=repo, onnx_path=written.get("onnx"),
                                  photos=[str(p) for p in app.as_list(card.photos or [])],
                                  cell=app.number({"card.cell": card.cell}, "card.cell", int),
                                  max_kb=app.number({"card.max_kb": card.max_kb}, "card.max_kb", int),
                                  revision=_text(cfg.hub_revision), license=_text(card.license),
                                  paintings=paintings(written["safetensors"]))
        names = sorted(p.name for p in folder.iterdir())
        revision = _text(cfg.hub_revision)
        print(f"pushing {', '.join(names)} to {repo}" + (f"@{revision}" if revision else "") + " ...")
        message = _text(cfg.commit_message) or f"Upload {written['safetensors'].stem} (stylenet {__version__})"
        url = upload(folder, repo, private=bool(cfg.private), revision=revision, commit_message=message)
    spec = f"hf://{repo}" + (f"@{revision}" if revision and revision != "main" else "")
    print(f"{'pushed:':13s}{url}")
    print(f"{'load it:':13s}python scripts/stylize.py model={spec} input=photo.jpg output=out.png")


def paintings(export_path) -> dict[str, dict]:
    """{style name: title, license, url} of the export's styles that are style presets, as
    Hydra composes them (a name from the file is only compared, never made a path)."""
    from ..modelfile import read_model_file
    from ..styles import preset_names

    known = set(preset_names())
    found = {}
    for name in read_model_file(export_path).styles:
        if name in known:
            style = app.compose([f"style={name}"]).style
            found[name] = {key: style.get(key) for key in ("title", "license", "url")}
    return found


def _text(value) -> str | None:
    """An optional text option (Hydra reads `hub_revision=2` as a number)."""
    return None if value is None or str(value) == "" else str(value)


def main(argv: list[str] | None = None) -> int:
    return app.run("export", export, argv, config_dir=app.TOOLS_DIR, errors=(ValueError, OSError), lists=("format",))


if __name__ == "__main__":
    sys.exit(main())
