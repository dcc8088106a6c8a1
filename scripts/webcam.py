#!/usr/bin/env python
"""Live style transfer: `python scripts/webcam.py model=PATH[,PATH...] [source=0|VIDEO_FILE]`.

Options: configs/tools/webcam.yaml (`--help` lists them); the same command is `stylenet-webcam`.
"""

import sys

from stylenet.commands.webcam import main

if __name__ == "__main__":
    sys.exit(main())
