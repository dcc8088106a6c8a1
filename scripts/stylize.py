#!/usr/bin/env python
"""Stylize a picture, a folder or a video: `python scripts/stylize.py model=PATH|PRESET input=PATH output=PATH`.

Options: configs/tools/stylize.yaml (`--help` lists them); the same command is `stylenet-stylize`.
"""

import sys

from stylenet.commands.stylize import main

if __name__ == "__main__":
    sys.exit(main())
