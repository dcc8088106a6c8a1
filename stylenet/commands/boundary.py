"""The error boundary of every command: whatever goes wrong ends as one `error:` line.

`app.run` sends every exception here, from Hydra's composition of the command line to the
end of the task. A mistake the user can fix is exit code 2: a `UserError` (or a type the
command counts as bad input), an option whose `${...}` names nothing, and Hydra's own
complaints, reworded to name the option and the fix (an unknown key with the nearest known
ones, a group option that does not exist with the ones that do, `a,b` that Hydra would read
as a sweep, text its grammar cannot parse). Anything else is a bug or an input stylenet does
not check yet: exit code 1, and the line says so. `STYLENET_DEBUG=1` prints the traceback
before the line; without it no traceback is ever shown.
"""

from __future__ import annotations

import difflib
import os
import re
import sys
import traceback

from ..errors import UserError

DEBUG = "STYLENET_DEBUG"
#: how an internal error ends: not the user's mistake, so not 2
INTERNAL = 1


def debugging() -> bool:
    return os.environ.get(DEBUG, "").strip().lower() not in ("", "0", "false", "no")


def report(exc: BaseException, user_errors: tuple[type[BaseException], ...] = ()) -> int:
    """Print `exc` as one `error:` line (the traceback first with STYLENET_DEBUG=1); its exit code."""
    if debugging():
        traceback.print_exception(exc)
    message, code = describe(exc, user_errors)
    print(f"error: {' '.join(message.split())}", file=sys.stderr, flush=True)
    return code


def describe(exc: BaseException, user_errors: tuple[type[BaseException], ...] = ()) -> tuple[str, int]:
    """What went wrong in the user's words, and the exit code: 2 for their mistake, 1 for ours."""
    from omegaconf.errors import OmegaConfBaseException

    if isinstance(exc, (UserError, *user_errors)):
        return str(exc) or type(exc).__name__, 2
    if (text := hydra_message(exc)) is not None:
        return text, 2
    if isinstance(exc, OmegaConfBaseException):
        return option_message(exc), 2
    text = str(exc).strip().splitlines()[0][:300] if str(exc).strip() else ""
    return (f"{type(exc).__name__}{': ' + text if text else ''} (an internal error of stylenet, not a mistake of yours; "
            f"rerun with {DEBUG}=1 for the traceback and report it)"), INTERNAL


def option_message(exc) -> str:
    """An OmegaConf error met while reading an option (a `${x}` that names nothing, a type clash)."""
    key = getattr(exc, "full_key", None) or getattr(exc, "key", None)
    first = (getattr(exc, "msg", None) or str(exc)).strip().splitlines()[0]
    hint = ""
    if "nterpolation" in type(exc).__name__ or "${" in first or "interpolation" in first.lower():
        hint = " (a ${...} in a value refers to another option; write a literal $ as \\$, e.g. 'path=\\${HOME}/x')"
    return f"{key}: {first[:1].lower()}{first[1:]}{hint}" if key else f"{first}{hint}"


def hydra_message(exc: BaseException) -> str | None:
    """Hydra's error about the command line in one line naming the option; None: not Hydra's."""
    from hydra.errors import HydraException, MissingConfigException, OverrideParseException

    if not isinstance(exc, HydraException):
        return None
    text = str(exc)
    if isinstance(exc, MissingConfigException):
        found = re.search(r"Could not find '([^']+)/([^']+)'", text)
        options = re.search(r"Available options in '[^']+':\n((?:\t.*\n?)+)", text)
        if found and options:
            group, name = found.groups()
            known = [o.strip() for o in options.group(1).splitlines() if o.strip()]
            close = difflib.get_close_matches(name, known, n=1)
            return (f"{group}={name}: no such {group}{f' (did you mean {group}={close[0]}?)' if close else ''}; "
                    f"the {group} options are {', '.join(known)}")
        return text.split("\nConfig search path")[0]
    if isinstance(exc, OverrideParseException):
        override = getattr(exc, "override", "")
        return (f"cannot read the option {override!r}: {text.splitlines()[0]}; quote a value with special characters "
                f"(key='a value'), a list is key=[a,b]")
    if found := re.match(r"Ambiguous value for argument '([^=]*)=(.*)'", text):
        key, value = found.groups()
        return (f"{key}={value}: the comma makes several values; a list is {key}=[{value}], a value with a comma "
                f"is quoted: {key}='{value}' (a sweep of runs needs --multirun)")
    if found := re.match(r"Could not override '([^']+)'", text):
        key = found.group(1)
        near = did_you_mean(key, option_keys(getattr(exc.__cause__, "parent_node", None), key))
        return (f"{key}: no such option{f' (did you mean {near}?)' if near else ''}; --help lists the options, "
                f"+{key}=VALUE adds a new key")
    cause = exc.__cause__
    detail = f" ({str(cause).strip().splitlines()[0]})" if cause is not None and str(cause).strip() else ""
    return text.strip().splitlines()[0] + detail if text.strip() else type(exc).__name__


def option_keys(node, key: str) -> list[str]:
    """Every dotted key of the config `node` belongs to (Hydra's own settings only when `key` is one)."""
    from omegaconf import DictConfig

    if node is None:
        return []
    try:
        root = node._get_root()
    except Exception:  # noqa: BLE001 - a suggestion is optional
        return []
    keys, stack = [], [(root, "")]
    while stack:
        current, prefix = stack.pop()
        for name in current.keys():
            dotted = f"{prefix}{name}"
            if dotted == "hydra" and not key.startswith("hydra."):
                continue
            keys.append(dotted)
            child = current._get_node(name)
            if isinstance(child, DictConfig) and not child._is_missing() and not child._is_none() \
                    and not child._is_interpolation():
                stack.append((child, dotted + "."))
    return keys


def did_you_mean(key: str, keys: list[str]) -> str:
    """The known keys nearest `key`: the same spelling elsewhere (`batch_size` → data.batch_size),
    else the closest spellings (`data.batchsize` → data.batch_size)."""
    leaf = key.rsplit(".", 1)[-1]
    same = [k for k in keys if k.rsplit(".", 1)[-1] == leaf and k != key]
    close = difflib.get_close_matches(key, keys, n=3, cutoff=0.7)
    if not close:
        leaves = {k.rsplit(".", 1)[-1]: k for k in keys}
        close = [leaves[m] for m in difflib.get_close_matches(leaf, list(leaves), n=2, cutoff=0.8)]
    found = list(dict.fromkeys(same[:3] + close))[:3]
    return " or ".join(found)
