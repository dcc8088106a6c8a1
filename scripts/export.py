#!/usr/bin/env python
"""Export a trained style: `python scripts/export.py ckpt=checkpoints/<style>/last.ckpt [format=onnx|torchscript|all]`.

Options: configs/tools/export.yaml (`--help` lists them); the same command is `stylenet-export`.
"""

import sys

from stylenet.commands.export import main

if __name__ == "__main__":
    sys.exit(main())
