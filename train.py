#!/usr/bin/env python
"""Train a fast style transfer network: `python train.py style=hokusai` (see README).

Options: configs/train.yaml and its groups (`--help` lists them); the same command is `stylenet-train`.
"""

import sys

from stylenet.commands.train import main

if __name__ == "__main__":
    sys.exit(main())
