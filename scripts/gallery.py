#!/usr/bin/env python
"""A gallery of trained styles: `python scripts/gallery.py models=[hokusai,...] content=[a.jpg,...] output=docs/gallery.jpg`.

Options: configs/gallery.yaml (`--help` lists them); the same command is `stylenet-gallery`.
"""

import sys

from stylenet.commands.gallery import main

if __name__ == "__main__":
    sys.exit(main())
