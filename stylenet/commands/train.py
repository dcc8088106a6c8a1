"""`python train.py style=hokusai ...` / `stylenet-train`: configs/train.yaml → a Lightning run (README).

Several styles: `style=[a,b,...]` and `style=all` become `style=a styles=[a,b,...]` here,
before Hydra sees them (Hydra would merge a list of group options into one `style` node);
`name_run` (a Hydra callback) names such a run after all its styles (docs/multistyle.md).
"""

from __future__ import annotations

import sys
from collections.abc import Sequence
from pathlib import Path

from . import app


def train(cfg) -> None:
    import warnings

    from hydra.core.hydra_config import HydraConfig

    from ..train import run

    warnings.filterwarnings("ignore", message=".*does not have many workers.*")
    warnings.filterwarnings("ignore", message=".*module\\(s\\) in eval mode.*")  # the frozen loss network, on purpose
    run(cfg, Path(HydraConfig.get().runtime.output_dir))


def style_lists(argv: Sequence[str]) -> list[str]:
    """`style=[a,b,...]` → `style=a styles=[a,b,...]`; `style=all` → every preset in
    configs/style/ (custom aside) the same way; a one-item list is that style alone."""
    from hydra.core.override_parser.overrides_parser import OverridesParser
    from hydra.errors import HydraException

    from ..styles import preset_names

    out = []
    for arg in argv:
        key, sep, value = arg.partition("=")
        if sep and key == "style" and (value == "all" or value.startswith("[")):
            if value == "all":
                names = preset_names()
            else:
                try:
                    names = [str(n) for n in OverridesParser.create().parse_override(arg).value()]
                except (HydraException, TypeError):
                    out.append(arg)  # Hydra's own message then says what is wrong
                    continue
            if not names:
                app.fail("style=[] names no style: give one (style=hokusai) or several (style=[hokusai,the_scream])")
            out.append(f"style={names[0]}")
            if len(names) > 1:
                out.append(f"styles=[{','.join(names)}]")
            continue
        out.append(arg)
    return out


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
    try:
        argv = style_lists(sys.argv[1:] if argv is None else argv)
    except SystemExit as exc:  # app.fail: the error line is printed
        return int(exc.code or 0)
    return app.run("train", train, argv, errors=(FileNotFoundError,))


if __name__ == "__main__":
    sys.exit(main())
