"""The one way a command runs: Hydra over `stylenet/configs/<name>.yaml` (the tools: `configs/tools/`), and one error path.

Every command (train, stylize, webcam, export, gatys, gallery, benchmark) calls `run`, so
`--help`, `--cfg job`, overrides and `--multirun` behave the same everywhere, and a mistake
the user can fix (`stylenet.errors.UserError`, a `???` option left unset, an option of the
wrong type or out of its range: `stylenet/configs/constraints.yaml`, an unknown key or group
option) ends as one `error: ...` line on stderr with exit code 2 and nothing half-written;
anything else as one `error:` line with exit code 1 (`stylenet.commands.boundary`). A
traceback only with STYLENET_DEBUG=1.
"""

from __future__ import annotations

import functools
import os
import sys
import warnings
from collections.abc import Callable, Mapping, Sequence
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


def hydra_overrides(argv: Sequence[str], lists: Sequence[str] = (),
                    groups: Mapping[str, Sequence[str]] | None = None) -> list[str]:
    """The command line as Hydra's grammar reads it: the one place argv is adapted.

    - `key=a,b` → `key=[a,b]` for the list options `lists` (the README's `model=a,b` is a
      list here, not a Hydra sweep; quoted, bracketed or single values pass unchanged);
    - several options of a config group in `groups` (`style=[a,b]`; `style=all`: the group's
      listed options) → `style=a styles=[a,b]` plus `+style@style_presets.a=a ...`, so Hydra
      composes every one of them (a bare `styles=[a,b]` gets its presets the same way);
    - a value Hydra's grammar cannot read unquoted (a path with `ü`, `{`, `=`) quoted, as
      Hydra's own override parser decides: everything it reads passes unchanged.
    """
    from hydra.core.override_parser.overrides_parser import OverridesParser
    from hydra.errors import HydraException

    parser, out = OverridesParser.create(), []

    def chosen(group: str, names: list[str]) -> list[str]:
        known = sorted(p.stem for p in (CONFIG_DIR / group).glob("*.yaml"))
        if not names:
            raise UserError(f"{group}=[] names no {group}: give one ({group}={known[0]}) or several ({group}=[{','.join(known[:2])}])")
        if unknown := [n for n in names if n not in known]:
            raise UserError(f"no {group} preset {unknown[0]!r} (stylenet/configs/{group}/{unknown[0]}.yaml); "
                            f"presets: {', '.join(groups[group])}")
        presets = [f"+{group}@{group}_presets.{n}={n}" for n in names]
        if bare != group:  # `styles=[a,b]` as given, with its presets
            return [arg, *presets]
        if len(names) == 1:
            return [f"{group}={names[0]}"]  # one: the single-option run, as always
        return [f"{group}={names[0]}", f"{group}s=[{','.join(names)}]", *presets]

    for arg in argv:
        key, sep, value = arg.partition("=")
        bare = key.lstrip("+~")
        group = bare if bare in (groups or {}) else bare[:-1] if bare.endswith("s") and bare[:-1] in (groups or {}) else None
        if sep and bare in lists and "," in value and value[:1] not in "[{'\"":
            arg = f"{key}=[{value}]"
        elif sep and group and (value.startswith("[") or value == "all" and bare == group):
            try:
                names = list(groups[group]) if value == "all" else [str(n) for n in parser.parse_override(arg).value()]
            except (HydraException, TypeError):
                out.append(arg)  # Hydra's own message then says what is wrong
                continue
            out.extend(chosen(group, names))
            continue
        elif sep and not arg.startswith("-") and value[:1] not in "'\"[{":
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


def compose(overrides: Sequence[str] = (), config_name: str = "train", config_dir: Path = CONFIG_DIR):
    """`<config_dir>/<config_name>.yaml` composed with `overrides` by Hydra's compose API: how a
    tool reads the training's own config tree (a benchmark's model, speed, loss and data
    options; a style preset and the mirrors) without opening YAML itself. Works inside a
    running command too (Hydra's global state is set aside and put back). An unknown option
    of a config group is a UserError listing the options."""
    from hydra import compose as hydra_compose
    from hydra import initialize_config_dir
    from hydra.core.global_hydra import GlobalHydra
    from hydra.errors import MissingConfigException

    outer = GlobalHydra.instance().hydra  # the running command's Hydra, if any
    GlobalHydra.instance().clear()
    try:
        with initialize_config_dir(config_dir=str(config_dir), version_base="1.3"):
            return hydra_compose(config_name=config_name, overrides=list(overrides))
    except MissingConfigException as exc:
        raise UserError(" ".join(str(exc).split("Config search path")[0].split())) from None
    finally:
        GlobalHydra.instance().hydra = outer


def style_image(spec) -> Path:
    """A painting file, or a style preset's image: the preset and its mirrors composed as
    training composes them (`train.py style=<spec>`), for the tools that take `style=`."""
    from ..styles import preset_names, style_image_path

    if str(spec) not in preset_names():
        return style_image_path(spec)
    preset = compose([f"style={spec}"])
    return style_image_path(spec, preset.style, preset.style_mirrors)


def run(config_name: str, task: Callable, argv: Sequence[str] | None = None, *, config_dir: Path = CONFIG_DIR,
        errors: tuple[type[BaseException], ...] = (), lists: Sequence[str] = ()) -> int:
    """Compose `<config_dir>/<config_name>.yaml` with the overrides in `argv` (default:
    sys.argv[1:]) and call `task(cfg)`; return the exit code instead of exiting.

    `errors`: exception types this command also reports as user errors (the inference
    commands count a ValueError or OSError as bad input); `lists`: keys whose `a,b` value
    is a list (see `hydra_overrides`).

    The one error boundary: every exception, Hydra's included, ends as one `error:` line
    (`boundary.report`); the options are checked against `configs/constraints.yaml` and every
    `${...}` resolved before the task starts.
    """
    import hydra
    from omegaconf import OmegaConf
    from omegaconf.errors import MissingMandatoryValue

    from . import boundary, options

    user_errors = (UserError, MissingMandatoryValue, *errors)

    @functools.wraps(task)  # Hydra names the job after the task's module: `stylize`, `train`, ...
    def job(cfg) -> None:
        try:
            options.check(cfg, config_name)
            if missing := _missing(cfg):
                fail(f"missing {', '.join(f'{key}=...' for key in missing)}")
            OmegaConf.to_container(cfg, resolve=True)  # a `${x}` naming nothing: an error now, not mid-run
            with warnings.catch_warnings():
                warnings.showwarning = show_warning
                code = task(cfg)
        except Exception as exc:  # noqa: BLE001 - the boundary: one error line, whatever it was
            sys.exit(boundary.report(exc, user_errors))
        if code:
            sys.exit(code)

    main = hydra.main(version_base="1.3", config_path=str(config_dir), config_name=config_name)(job)
    saved, full_error = sys.argv, os.environ.get("HYDRA_FULL_ERROR")
    os.environ["HYDRA_FULL_ERROR"] = "1"  # Hydra raises its errors to the boundary below instead of printing them
    try:
        sys.argv = [saved[0] if saved else config_name,
                    *hydra_overrides(saved[1:] if argv is None else argv, lists)]
        main()
    except SystemExit as exc:
        if exc.code is None or isinstance(exc.code, int):
            return exc.code or 0
        print(exc.code, file=sys.stderr)
        return 1
    except Exception as exc:  # noqa: BLE001 - Hydra's own (composition, callbacks): the same boundary
        return boundary.report(exc, user_errors)
    finally:
        sys.argv = saved
        if full_error is None:
            os.environ.pop("HYDRA_FULL_ERROR", None)
        else:
            os.environ["HYDRA_FULL_ERROR"] = full_error
    return 0
