"""`python train.py style=hokusai ...` / `stylenet-train`: configs/train.yaml → a Lightning run (README).

Several styles: `style=[a,b,...]` and `style=all` become `style=a styles=[a,b,...]` with each
preset composed by Hydra under `style_presets.<name>` (`app.hydra_overrides`: Hydra would
merge a list of group options into one `style` node); `name_run` (a Hydra callback) names
such a run after all its styles (docs/multistyle.md).
"""

from __future__ import annotations

import contextlib
import sys
from pathlib import Path

from . import app


def train(cfg) -> None:
    import warnings

    from hydra.core.hydra_config import HydraConfig

    from ..train import run

    warnings.filterwarnings("ignore", message=".*does not have many workers.*")
    warnings.filterwarnings("ignore", message=".*module\\(s\\) in eval mode.*")  # the frozen loss network, on purpose
    run(cfg, Path(HydraConfig.get().runtime.output_dir))


def name_run():
    """A Hydra callback (train.yaml `hydra.callbacks`, before the run folder is checked): a
    multi-style run (`styles`, or train_only=norm) left at the default `run_name` gets the
    names of all the network's styles joined by '-' (checkpoints/hokusai-the_scream/), so it
    never writes into a single-style run's folders."""
    from hydra.experimental.callback import Callback

    class NameRun(Callback):
        def on_run_start(self, config, **kwargs) -> None:
            from omegaconf import read_write

            from ..errors import UserError
            from ..train import run_styles

            if not (config.get("styles") or config.get("train_only")) or config.run_name != config.style.name:
                return
            try:
                name = run_styles(config).run_name
            except UserError as exc:
                app.fail(exc)
            with read_write(config):
                config.run_name = name

    return NameRun()


def main(argv: list[str] | None = None) -> int:
    from ..errors import UserError
    from ..styles import preset_names

    try:  # `style=[a,b]`, `style=all`: every preset but custom
        argv = app.hydra_overrides(sys.argv[1:] if argv is None else argv, groups={"style": preset_names()})
    except UserError as exc:
        with contextlib.suppress(SystemExit):
            app.fail(exc)  # the one `error:` line, exit code 2
        return 2
    return app.run("train", train, argv, errors=(FileNotFoundError,))


if __name__ == "__main__":
    sys.exit(main())
