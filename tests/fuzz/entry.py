"""The user entry points as the fuzz cases call them: each command's `main(argv)` (what
`python scripts/<command>.py ...` runs), returning its exit code."""

from __future__ import annotations

from pathlib import Path

from ..conftest import tiny_overrides


def stylize(*args: str) -> int:
    from stylenet.commands.stylize import main

    return main(["progress=false", "device=cpu", *map(str, args)])


def export(*args: str) -> int:
    from stylenet.commands.export import main

    return main(list(map(str, args)))


def webcam(*args: str) -> int:
    from stylenet.commands.webcam import main

    return main(["headless=true", "device=cpu", "realtime=false", "overlay=false", *map(str, args)])


def train(tmp: Path, photos: Path, *extra: str, steps: int = 2) -> int:
    """The training CLI on the tiny recipe (32 px, slim net, SqueezeNet), its files under `tmp`."""
    from stylenet.commands.train import main

    return main([*tiny_overrides(tmp, photos, steps), f"hydra.run.dir={tmp / 'run'}", *map(str, extra)])
