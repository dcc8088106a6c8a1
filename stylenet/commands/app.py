"""The one way a command runs: Hydra over `stylenet/configs/<name>.yaml` (the tools: `configs/tools/`), and one error path.

Every command (train, stylize, webcam, export, gatys, gallery, benchmark) calls `run`, so
`--help`, `--cfg job`, overrides and `--multirun` behave the same everywhere, and a mistake
the user can fix (`stylenet.errors.UserError`, a `???` option left unset) ends as one
`error: ...` line on stderr with exit code 2 and nothing half-written. Hydra's own
messages (an unknown key, a missing config group option) stay Hydra's.
"""

from __future__ import annotations

import functools
import sys
import warnings
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import NoReturn

from ..errors import UserError
from ..resources import CONFIG_DIR, TOOLS_DIR  # noqa: F401 (the commands take them from here)


def fail(message) -> NoReturn:
    """Report a user's mistake: one line on stderr, exit code 2."""
    text = " ".join(str(message).split()) or type(message).__name__
    print(f"error: {text}", file=sys.stderr)
    sys.exit(2)


def show_warning(message, category, filename, lineno, file=None, line=None) -> None:
    """A warning as one `warning: ...` line on stderr: for the user, not the source line that raised it."""
    print(f"warning: {message}", file=file or sys.stderr)


def check_run_dir():
    """A Hydra callback (train.yaml, gatys.yaml: hydra.callbacks) that checks the run folder
    before Hydra creates it: Hydra's own failure there is a traceback, this one an `error:` line."""
    from hydra.experimental.callback import Callback

    class CheckRunDir(Callback):
        def on_run_start(self, config, **kwargs) -> None:
            from ..imageio import why_unwritable

            folder = config.hydra.run.dir
            if reason := why_unwritable(folder):
                fail(f"cannot create the run folder hydra.run.dir={folder} ({reason}); pick another with hydra.run.dir=DIR")

    return CheckRunDir()


def _missing(cfg) -> list[str]:
    from omegaconf import OmegaConf

    return sorted(OmegaConf.missing_keys(cfg))


def as_list(value) -> list:
    """A list option given as one value (`model=a`) or a list (`model=[a,b]`, `model=a,b`) → a list."""
    from omegaconf import ListConfig

    return list(value) if isinstance(value, (list, tuple, ListConfig)) else [value]


def number(cfg, key: str, kind: type = float):
    """The option `key` as a float (or int): a UserError naming it, not Python's 'could not convert'."""
    value = cfg[key]
    try:
        number = float(value)
        if kind is int and not number.is_integer():
            raise ValueError
        return kind(number)
    except (TypeError, ValueError, OverflowError):
        raise UserError(f"{key}={value!r} is not a {'whole number' if kind is int else 'number'}") from None


def render_options(cfg) -> dict:
    """The real-time path's options (`scale=`, the `upsample:` block, `backend=`) as Stylizer
    keyword arguments."""
    upsample = dict(cfg.get("upsample") or {})  # defaults for what it leaves out: stylenet.upsample.options
    for key, kind in (("radius", int), ("eps", float)):
        if key in upsample:
            upsample[key] = number({f"upsample.{key}": upsample[key]}, f"upsample.{key}", kind)
    return {"scale": number(cfg, "scale"), "upsample": upsample, "backend": str(cfg.get("backend") or "torch")}


def quote_odd_values(argv: Sequence[str]) -> list[str]:
    """`key=value` overrides that Hydra's grammar cannot read unquoted (a path with `ü`, `{`, `=`)
    quoted for it: asked of Hydra's own override parser, so everything it reads passes unchanged."""
    from hydra.core.override_parser.overrides_parser import OverridesParser
    from hydra.errors import HydraException

    parser, out = OverridesParser.create(), []
    for arg in argv:
        key, sep, value = arg.partition("=")
        if sep and not arg.startswith("-") and value[:1] not in "'\"[{":
            try:
                parser.parse_override(arg)
            except HydraException:
                body = value.replace("'", "\\'")
                tail = len(body) - len(body.rstrip("\\"))  # backslashes before the closing quote are doubled
                quoted = f"{key}='{body + chr(92) * tail}'"
                try:
                    parser.parse_override(quoted)
                    arg = quoted
                except HydraException:
                    pass  # Hydra's own message then says what is wrong
        out.append(arg)
    return out


def comma_lists(argv: Sequence[str], keys: Sequence[str]) -> list[str]:
    """`key=a,b` → `key=[a,b]` for list-valued `keys`: the README's `model=a,b` is a list
    here, not a Hydra sweep (quoted, bracketed or single values pass unchanged)."""
    out = []
    for arg in argv:
        key, sep, value = arg.partition("=")
        if sep and key.lstrip("+~") in keys and "," in value and value[:1] not in "[{'\"":
            arg = f"{key}=[{value}]"
        out.append(arg)
    return out


def run(config_name: str, task: Callable, argv: Sequence[str] | None = None, *, config_dir: Path = CONFIG_DIR,
        errors: tuple[type[BaseException], ...] = (), lists: Sequence[str] = ()) -> int:
    """Compose `<config_dir>/<config_name>.yaml` with the overrides in `argv` (default:
    sys.argv[1:]) and call `task(cfg)`; return the exit code instead of exiting.

    `errors`: exception types this command also reports as user errors (the inference
    commands count a ValueError or OSError as bad input); `lists`: keys whose `a,b` value
    is a list (see `comma_lists`).
    """
    import hydra
    from omegaconf.errors import MissingMandatoryValue

    @functools.wraps(task)  # Hydra names the job after the task's module: `stylize`, `train`, ...
    def job(cfg) -> None:
        if missing := _missing(cfg):
            fail(f"missing {', '.join(f'{key}=...' for key in missing)}")
        try:
            with warnings.catch_warnings():
                warnings.showwarning = show_warning
                code = task(cfg)
        except (UserError, MissingMandatoryValue, *errors) as exc:
            fail(exc)
        if code:
            sys.exit(code)

    main = hydra.main(version_base="1.3", config_path=str(config_dir), config_name=config_name)(job)
    saved = sys.argv
    sys.argv = [saved[0] if saved else config_name,
                *quote_odd_values(comma_lists(saved[1:] if argv is None else argv, lists))]
    try:
        main()
    except SystemExit as exc:
        if exc.code is None or isinstance(exc.code, int):
            return exc.code or 0
        print(exc.code, file=sys.stderr)
        return 1
    finally:
        sys.argv = saved
    return 0
