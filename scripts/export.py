#!/usr/bin/env python
"""Export a trained style: `python scripts/export.py ckpt=checkpoints/<style>/last.ckpt [format=onnx|torchscript|all]`.

Always writes checkpoints/<style>/<style>.safetensors (weights + metadata, a few MB);
format=onnx / torchscript / all add those graphs beside it. ONNX files are checked
against onnxruntime at an odd size.
"""

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from stylenet.cli import UsageError, parse_overrides  # noqa: E402

DEFAULTS = {"ckpt": None, "format": "safetensors", "fp16": False, "out_dir": None}
USAGE = __doc__


def main(argv: list[str]) -> int:
    try:
        cfg = parse_overrides(argv, DEFAULTS, required=("ckpt",), usage=USAGE)
    except UsageError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    from stylenet.export import FORMATS, ExportError, export
    from stylenet.inference import ModelLoadError, resolve_model

    formats = cfg["format"] if isinstance(cfg["format"], list) else str(cfg["format"]).split(",")
    formats = list(FORMATS) if formats == ["all"] else [f.strip() for f in formats]
    try:
        written = export(resolve_model(cfg["ckpt"]), formats, out_dir=cfg["out_dir"], fp16=bool(cfg["fp16"]), log=print)
    except (ModelLoadError, ExportError, ValueError, OSError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    for kind, path in written.items():
        print(f"{kind + ':':13s}{path}  ({path.stat().st_size / 1e6:.1f} MB)")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
