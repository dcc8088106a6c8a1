"""Where the package's own data lives: the Hydra config tree and the shipped presets.

Found through `importlib.resources`, so an installed wheel and an editable checkout read the
same files; nothing here is derived from the checkout (user folders such as `checkpoints/`
are relative to the working directory, or set in the config)."""

from __future__ import annotations

from importlib.resources import files
from pathlib import Path

#: the config tree: train.yaml, gatys.yaml, gallery.yaml, the config groups and tools/
CONFIG_DIR = Path(str(files("stylenet") / "configs"))
#: the tools' own root (stylize, webcam, export, benchmark/<mode>): no groups, so `model=PATH` is an option
TOOLS_DIR = CONFIG_DIR / "tools"
#: the trained presets shipped with the package (docs/presets.md): <name>.safetensors, <name>-realtime.safetensors
PRESETS_DIR = Path(str(files("stylenet") / "presets"))
