#!/usr/bin/env python
"""Write the trained presets into the package as fp16 safetensors (docs/presets.md).

A maintainer's tool, run after `scripts/train_presets.sh`: for each painting whose networks
are trained, `checkpoints/presets/<name>/last.ckpt` → `stylenet/presets/<name>.safetensors`
and `checkpoints/presets/<name>-realtime-stable/last.ckpt` →
`stylenet/presets/<name>-realtime.safetensors`. A file already shipped is left alone unless
`--force` (every re-commit of a weights file stays in git history). Each written file is read
back and must paint a photo within 1/255 (mean) of the fp32 network.

    python scripts/ship_presets.py [NAME ...] [--force]
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import torch

from stylenet.export import export_checkpoint
from stylenet.inference import Stylizer
from stylenet.modelfile import build_network, read_model_file
from stylenet.resources import PRESETS_DIR

NAMES = ("hokusai", "starry_night", "the_scream", "composition_vii", "shipwreck")
SOURCES = {"full": "checkpoints/presets/{name}/last.ckpt",
           "realtime": "checkpoints/presets/{name}-realtime-stable/last.ckpt"}
TARGETS = {"full": "{name}.safetensors", "realtime": "{name}-realtime.safetensors"}
TRAINED_STEPS = {"full": 2000, "realtime": 150}  # the stable phase: 150 steps on top of 2000 (init_from)


def agreement(ckpt: Path, shipped: Path) -> float:
    """Mean absolute difference (0-1 pixels) between the fp32 network and the shipped fp16 file."""
    photo = torch.rand(1, 3, 96, 128, generator=torch.Generator().manual_seed(0))
    reference = Stylizer(build_network(read_model_file(ckpt)), precision="fp32", device="cpu")
    shipped_net = Stylizer.load(shipped, precision="fp32", device="cpu")
    return float((reference.stylize(photo) - shipped_net.stylize(photo)).abs().mean())


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("names", nargs="*", default=list(NAMES))
    parser.add_argument("--force", action="store_true", help="replace files already shipped")
    args = parser.parse_args(argv)
    PRESETS_DIR.mkdir(parents=True, exist_ok=True)
    for name in args.names:
        for variant, source in SOURCES.items():
            ckpt, out = Path(source.format(name=name)), PRESETS_DIR / TARGETS[variant].format(name=name)
            if out.exists() and not args.force:
                print(f"{out}: already shipped (--force replaces it)")
                continue
            if not ckpt.is_file():
                print(f"{out}: not yet trained ({ckpt} missing)")
                continue
            step = int(torch.load(ckpt, map_location="cpu", weights_only=True).get("global_step", 0))
            if step < TRAINED_STEPS[variant]:
                print(f"{out}: {ckpt} is at step {step} of {TRAINED_STEPS[variant]}: still training")
                continue
            export_checkpoint(ckpt, out, fp16=True)
            diff = agreement(ckpt, out)
            if diff > 1 / 255:
                out.unlink()
                print(f"error: {out}: fp16 differs from fp32 by {diff * 255:.2f}/255 on average", file=sys.stderr)
                return 1
            print(f"{out}: {out.stat().st_size / 1e6:.2f} MB, step {step}, fp16 vs fp32 {diff * 255:.3f}/255")
    return 0


if __name__ == "__main__":
    sys.exit(main())
