#!/usr/bin/env python
"""The webcam in a browser: `python scripts/web.py [port=8000] [models=FILE,...] [build=DIR]` (docs/web.md).

Options: configs/tools/web.yaml (`--help` lists them); the same command is `stylenet-web`.
"""

import sys

from stylenet.commands.web import main

if __name__ == "__main__":
    sys.exit(main())
