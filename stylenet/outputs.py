"""Where outputs go: every path a command writes is planned and checked before the first write.

A name that comes from a file (a model's style name, its metadata) passes through `safe_name`
and becomes one harmless path component: no separator, no `..`, no NUL, at most a few hundred
bytes. Every planned output is resolved (links followed) and must lie inside the folder the
user chose (`inside`); a folder run's whole input → output mapping is checked at once (`plan`):
two inputs onto one output, an output onto an input, or a file already there is an error
before anything is written. An option naming a path may not be empty (`require_path`: an unset
shell variable would otherwise mean the current folder), and only regular files and folders are
read (`readable`): a FIFO blocks its reader forever, a device or a socket is no picture.
"""

from __future__ import annotations

import os
import re
import stat
from collections.abc import Iterable, Sequence
from pathlib import Path

from .errors import UserError

#: the longest file name (one path component) ext4, APFS and NTFS take, in bytes
MAX_NAME_BYTES = 255
#: a name taken from a file (a style name) is cut to this: room for the photo's name and a suffix beside it
NAME_BYTES = 100
#: names Windows gives to devices, whatever their extension
RESERVED = {"CON", "PRN", "AUX", "NUL", *(f"COM{i}" for i in range(1, 10)), *(f"LPT{i}" for i in range(1, 10))}
#: what `os.stat` says a path is, for the ones that are not read
KINDS = ((stat.S_ISFIFO, "a FIFO (named pipe)"), (stat.S_ISCHR, "a character device"), (stat.S_ISBLK, "a block device"),
         (stat.S_ISSOCK, "a socket"))


class OutputError(UserError, ValueError):
    """An input or output path that cannot be used safely: empty, not a regular file, outside
    the output folder, or one output claimed twice."""


def safe_name(name, default: str = "style", max_bytes: int = NAME_BYTES) -> str:
    """A name from an untrusted file (a style name) as one safe file-name component.

    Letters, digits and `_ . + -` are kept (a blend's label `hokusai70+the_scream30` stays
    readable); every other run of characters (separators, NUL, spaces, non-ASCII) becomes `_`;
    leading dots, dashes and underscores go (no `..`, no hidden file, no option-like name), the result is
    cut to `max_bytes` and never empty (`default`) nor a Windows device name (`CON`, `NUL`, ...).
    """
    text = re.sub(r"[^A-Za-z0-9_.+-]+", "_", "" if name is None else str(name))
    text = text.lstrip("._-")[:max(1, int(max_bytes))].rstrip("._")
    if not text:
        return default
    return f"_{text}" if text.split(".")[0].upper() in RESERVED else text


def fit_name(stem: str, suffix: str) -> str:
    """`stem + suffix` as a file name of at most MAX_NAME_BYTES (UTF-8): the stem is cut, whole
    characters at a time (a photo's own 250-byte name plus `_hokusai.png` still fits)."""
    budget = MAX_NAME_BYTES - len(suffix.encode())
    if budget < 1:
        raise OutputError(f"the suffix {suffix[:40]!r}... leaves no room for a file name")
    return stem.encode()[:budget].decode("utf-8", "ignore") + suffix


def require_path(value, option: str) -> Path:
    """The path an option names; empty (`input=` from an unset shell variable), whitespace or a
    NUL byte is an error: Path("") is the current folder, which would be read or overwritten."""
    text = "" if value is None else str(value)
    if not text.strip():
        raise OutputError(f"{option}= is empty (an unset shell variable?): give a path, e.g. {option}=photos/")
    if "\0" in text:
        raise OutputError(f"{option}={text!r} contains a NUL byte: no file can have that name")
    return Path(text)


def not_regular(path: str | os.PathLike) -> str | None:
    """What `path` is when it is neither a regular file nor a folder ("a FIFO (named pipe)", ...),
    else None; asks `os.stat` only, so a FIFO is never opened (opening one blocks)."""
    try:
        mode = os.stat(path).st_mode
    except (OSError, ValueError):
        return None  # missing or unreadable: the caller's own error says so
    if stat.S_ISREG(mode) or stat.S_ISDIR(mode):
        return None
    return next((what for test, what in KINDS if test(mode)), "not a regular file")


def readable(value, option: str = "input") -> Path:
    """An input path that exists and is a regular file or a folder (links followed)."""
    path = require_path(value, option)
    if not path.exists():
        raise OutputError(f"{option} not found: {path}")
    if kind := not_regular(path):
        raise OutputError(f"{option}={path} is {kind}, not a file or folder: give a regular file "
                          "(stylenet reads no pipes, devices or sockets)")
    return path


def _resolved(path: Path) -> Path:
    return Path(os.path.realpath(path))


def inside(root: str | os.PathLike, path: str | os.PathLike) -> Path:
    """`path`, checked to resolve (links and `..` followed) to a place inside the folder `root`."""
    root, path = Path(root), Path(path)
    real, real_root = _resolved(path), _resolved(root)
    if real != real_root and not real.is_relative_to(real_root):
        raise OutputError(f"{path} would be written outside the output folder {root} (it resolves to {real}); "
                          "nothing was written: check the names and links in the output folder")
    return path


def nested(inner: str | os.PathLike, outer: str | os.PathLike) -> bool:
    """Whether the folder `inner` is `outer` or inside it (resolved)."""
    a, b = _resolved(Path(inner)), _resolved(Path(outer))
    return a == b or a.is_relative_to(b)


def _existing(path: Path, real: Path) -> bool:
    """Whether an output path is taken: a folder or a non-regular file there is an error."""
    if not (real.exists() or path.is_symlink()):
        return False
    if real.is_dir():
        raise OutputError(f"cannot write {path}: a folder of that name is in the way; move it or pick another output")
    if kind := not_regular(real):
        raise OutputError(f"cannot write {path}: it is {kind}; pick a regular file name")
    return True


def plan(mapping: Iterable[tuple[Path, Path]], root: str | os.PathLike, *, overwrite: bool = False) -> list[tuple[Path, Path]]:
    """Check a whole input → output mapping before the first write, and return it.

    Every output must resolve inside `root`, have a name the file system takes, be claimed by
    one input only, not be one of the inputs, and not exist already unless `overwrite` (a
    folder or a FIFO in the way is an error even then): so a run never writes two inputs to
    one output, never over its own input, never outside the chosen folder.
    """
    mapping = [(Path(src), Path(out)) for src, out in mapping]
    sources = {os.path.normcase(_resolved(src)): src for src, _ in mapping}
    claimed: dict[str, Path] = {}
    taken: list[Path] = []
    for src, out in mapping:
        inside(root, out)
        if len(os.fsencode(out.name)) > MAX_NAME_BYTES:
            raise OutputError(f"the output name for {src} is longer than {MAX_NAME_BYTES} bytes ({out.name[:40]}...); "
                              "shorten the input's name")
        real = _resolved(out)
        key = os.path.normcase(real)
        if key in claimed:
            raise OutputError(f"{claimed[key]} and {src} would both be written to {out}; nothing was written: "
                              "rename one of them")
        if key in sources:
            raise OutputError(f"the output for {src} would replace the input {sources[key]}; nothing was written: "
                              "pick an output folder outside the input")
        claimed[key] = src
        if _existing(out, real):
            taken.append(out)
    if taken and not overwrite:
        more = f" and {len(taken) - 1} more" if len(taken) > 1 else ""
        raise OutputError(f"{taken[0]}{more} exist already; nothing was written: pass overwrite=true to replace them, "
                          "or pick another output folder")
    return mapping


def output_file(value, option: str = "output", *, sources: Sequence[Path] = (), replace_input: bool = False) -> Path:
    """A file the user named as an output: not empty, not a folder or a device, and not one of
    the `sources` (the inputs) unless `replace_input`. A file the user named is replaced
    (atomically) when it exists: that is what naming it asks for."""
    path = require_path(value, option)
    real = _resolved(path)
    _existing(path, real)
    for src in sources:
        if os.path.normcase(real) == os.path.normcase(_resolved(Path(src))) and not replace_input:
            raise OutputError(f"{option}={path} is the input itself; nothing was written: pick another {option}, "
                              "or pass overwrite=true to replace the input with its stylized version")
    return path


__all__ = ["MAX_NAME_BYTES", "NAME_BYTES", "OutputError", "fit_name", "inside", "nested", "not_regular", "output_file", "plan",
           "readable", "require_path", "safe_name"]
