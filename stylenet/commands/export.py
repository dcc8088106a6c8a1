"""`python scripts/export.py ckpt=checkpoints/<style>/last.ckpt [format=onnx|torchscript|all]` /
`stylenet-export`: always the `<style>.safetensors`, plus the graphs asked for (configs/tools/export.yaml)."""

from __future__ import annotations

import sys

from . import app


def export(cfg) -> None:
    from ..export import FORMATS, export
    from ..modelfile import resolve_model

    formats = [str(f).strip() for f in app.as_list(cfg.format)]
    formats = list(FORMATS) if formats == ["all"] else formats
    written = export(resolve_model(cfg.ckpt), formats, out_dir=cfg.out_dir, fp16=bool(cfg.fp16), log=print)
    for kind, path in written.items():
        print(f"{kind + ':':13s}{path}  ({path.stat().st_size / 1e6:.1f} MB)")


def main(argv: list[str] | None = None) -> int:
    return app.run("export", export, argv, config_dir=app.TOOLS_DIR, errors=(ValueError, OSError), lists=("format",))


if __name__ == "__main__":
    sys.exit(main())
