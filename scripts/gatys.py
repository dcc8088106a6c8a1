#!/usr/bin/env python
"""Optimisation over pixels with the training losses: Gatys style transfer and pre-images.

`python scripts/gatys.py style=hokusai content=PATH output=PATH [mode=style|invert|texture|dream|maximize|sweep]`
(options: configs/gatys.yaml and configs/mode/; docs/gatys.md); the same command is `stylenet-gatys`.
"""

import sys

from stylenet.commands.gatys import main

if __name__ == "__main__":
    sys.exit(main())
