"""Styles on the Hugging Face Hub: `hf://OWNER/REPO…` → a file in the Hub cache, and a push.

Everything goes through `huggingface_hub` (its cache, revisions, offline mode, token
resolution); nothing here speaks HTTP. The grammar of a spec (`SPEC_GRAMMAR`):

    hf://OWNER/REPO[/FILE][@REVISION]
    hf://OWNER/REPO@REVISION/FILE          (huggingface_hub's own order, also accepted)

OWNER/REPO is a model repository id (`models/` may prefix it; datasets and spaces are
refused). FILE is a path inside it (folders allowed: `sub/style.safetensors`), ending in
`.safetensors` or `.onnx`; without it the repository's single `.safetensors` file is taken,
else its single `.onnx`. REVISION is a branch, tag or commit hash (default: main); in the
first form it is everything after the `@` (so `@refs/pr/3` works), in the second the part
up to the next `/`. Neither FILE nor REVISION contains `@`.

A pickle (`.bin`, `.ckpt`, `.pt`, `.pth`, `.pkl`) is never downloaded: it can run code when
loaded, and a repository is a stranger's. The file that does come back is untrusted too: the
caller reads it with `read_model_file`, like any file. With no network (or
`HF_HUB_OFFLINE=1`) the cache answers, and what it lacks fails at once with one line.
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass
from pathlib import Path, PurePosixPath

from .modelfile import ModelLoadError

PREFIX = "hf://"
SPEC_GRAMMAR = "hf://OWNER/REPO[/FILE][@REVISION] (e.g. hf://alice/hokusai, hf://alice/styles/wave.safetensors@v1)"
#: files a Hub model may be, in order of preference when the spec names none
MODEL_SUFFIXES = (".safetensors", ".onnx")
#: files that unpickle (run code) when loaded: refused from the Hub, whatever their content
PICKLE_SUFFIXES = (".bin", ".ckpt", ".pt", ".pth", ".pkl", ".pickle")
_REVISION = re.compile(r"[A-Za-z0-9_][A-Za-z0-9_./-]*")
_BAD_PATH_CHARS = re.compile(r"[\\\x00-\x1f\x7f]")


class HubError(ModelLoadError):
    """A Hub spec that is malformed, names nothing that exists, or cannot be fetched."""


@dataclass(frozen=True)
class HubRef:
    """A parsed spec: the repository, the file in it (None: pick one), the revision (None: main)."""

    repo_id: str
    filename: str | None = None
    revision: str | None = None

    def __str__(self) -> str:
        return PREFIX + self.repo_id + (f"/{self.filename}" if self.filename else "") + \
            (f"@{self.revision}" if self.revision else "")


def is_hub_spec(spec) -> bool:
    """Whether a model option names the Hub (`hf://…`) rather than a file or a preset."""
    return isinstance(spec, (str, os.PathLike)) and os.fspath(spec).startswith(PREFIX)


def _malformed(spec: str, why: str) -> HubError:
    return HubError(f"malformed Hub model {spec!r}: {why}; write {SPEC_GRAMMAR}")


def _check_file(spec: str, name: str) -> str:
    """A FILE of a spec, or a file name a repository lists: a relative path with no `.`, `..`
    or empty part, no backslash or control character (it becomes a path in the cache)."""
    parts = name.split("/")
    if not name or name.startswith("/") or _BAD_PATH_CHARS.search(name) or any(p in ("", ".", "..") for p in parts):
        raise _malformed(spec, f"{name!r} is not a file path inside the repository")
    return name


def parse(spec: str) -> HubRef:
    """`hf://…` → HubRef (see the module's grammar); a HubError naming the grammar otherwise."""
    text = os.fspath(spec)
    if not text.startswith(PREFIX):
        raise _malformed(text, f"it does not start with {PREFIX}")
    body = text[len(PREFIX):].strip()
    kind, _, rest = body.partition("/")
    if kind in ("datasets", "spaces", "buckets"):
        raise _malformed(text, f"{kind} are not models: name a model repository")
    if kind == "models":
        body = rest
    if body.count("@") > 1:
        raise _malformed(text, "it has more than one @")
    path, at, revision = body.partition("@")
    segments = path.split("/")
    if len(segments) < 2 or not segments[0] or not segments[1]:
        raise _malformed(text, "it names no OWNER/REPO")
    repo_id, filename = "/".join(segments[:2]), "/".join(segments[2:]) or None
    if at and filename is None and "/" in revision:  # hf://OWNER/REPO@REVISION/FILE (huggingface_hub's order)
        head, _, tail = revision.partition("/")
        if tail.lower().endswith(MODEL_SUFFIXES + PICKLE_SUFFIXES):
            revision, filename = head, tail
    if at and not revision:
        raise _malformed(text, "nothing follows the @ (a branch, tag or commit)")
    if revision and (not _REVISION.fullmatch(revision) or ".." in revision or revision.endswith(("/", ".lock"))):
        raise _malformed(text, f"{revision!r} is not a branch, tag or commit name")
    from huggingface_hub.utils import HFValidationError, validate_repo_id

    try:
        validate_repo_id(repo_id)
    except HFValidationError:
        raise _malformed(text, f"{repo_id!r} is not a repository id (letters, digits, '-', '_', '.'; "
                               "no '--' or '..'; at most 96 characters)") from None
    if filename is not None:
        _check_file(text, filename)
        suffix = PurePosixPath(filename).suffix.lower()
        if suffix in PICKLE_SUFFIXES:
            raise HubError(f"{text}: {filename} is a pickle ({suffix}), which runs code when loaded; stylenet "
                           f"loads only {' or '.join(MODEL_SUFFIXES)} from the Hub: ask its author for a .safetensors export")
        if suffix not in MODEL_SUFFIXES:
            raise HubError(f"{text}: {filename} is not a model file stylenet reads from the Hub "
                           f"({' or '.join(MODEL_SUFFIXES)})")
    return HubRef(repo_id, filename, revision or None)


def pick_file(names, ref: HubRef, where: str = "") -> str:
    """The model file of a repository that lists `names`: its only .safetensors, else its only
    .onnx. Several of a kind: the user names one. Only pickles: refused, saying so."""
    names = sorted(names)
    for suffix in MODEL_SUFFIXES:
        found = [n for n in names if n.lower().endswith(suffix)]
        if len(found) == 1:
            return _check_file(str(ref), found[0])
        if found:
            shown = ", ".join(found[:6]) + (f", … ({len(found) - 6} more)" if len(found) > 6 else "")
            raise HubError(f"{ref}{where} holds {len(found)} {suffix} files ({shown}): name one, e.g. "
                           f"model={HubRef(ref.repo_id, found[0], ref.revision)}")
    pickles = [n for n in names if n.lower().endswith(PICKLE_SUFFIXES)]
    if pickles:
        raise HubError(f"{ref}{where} holds only pickle files ({', '.join(pickles[:4])}), which run code when loaded; "
                       f"stylenet loads only {' or '.join(MODEL_SUFFIXES)} from the Hub: ask its author for a .safetensors export")
    raise HubError(f"{ref}{where} holds no model file ({' or '.join(MODEL_SUFFIXES)}); it has: "
                   f"{', '.join(names[:6]) or 'nothing'}")


def offline() -> bool:
    """huggingface_hub's offline mode (`HF_HUB_OFFLINE=1`)."""
    from huggingface_hub import constants

    check = getattr(constants, "is_offline_mode", None)
    return bool(check() if check else constants.HF_HUB_OFFLINE)


def timeout() -> float:
    """Seconds to wait for the Hub before taking the cache: huggingface_hub's own
    `HF_HUB_ETAG_TIMEOUT` (10 s by default). No network at all fails at once."""
    from huggingface_hub import constants

    return float(constants.HF_HUB_ETAG_TIMEOUT)


def _errors():
    """huggingface_hub's exception classes: `huggingface_hub.utils` holds them in every version
    from 0.23 (later ones, such as IncompleteSnapshotError, only in `huggingface_hub.errors`)."""
    import types

    from huggingface_hub import utils

    try:
        from huggingface_hub import errors as newer
    except ImportError:
        newer = None
    names = ("GatedRepoError", "DisabledRepoError", "RevisionNotFoundError", "RepositoryNotFoundError",
             "LocalEntryNotFoundError", "EntryNotFoundError", "HfHubHTTPError", "HFValidationError",
             "IncompleteSnapshotError")
    found = {n: getattr(utils, n, None) or getattr(newer, n, None) for n in names}
    return types.SimpleNamespace(**{n: cls if isinstance(cls, type) else () for n, cls in found.items()})


def _network_errors() -> tuple[type[BaseException], ...]:
    """What huggingface_hub raises when the Hub cannot be reached (httpx in 1.x+, requests before)."""
    import importlib

    found: list[type[BaseException]] = []
    for module, names in (("huggingface_hub.errors", ("OfflineModeIsEnabled",)),
                          ("huggingface_hub.utils", ("OfflineModeIsEnabled",)),
                          ("httpx2", ("TransportError",)), ("httpx", ("TransportError",)),
                          ("requests", ("ConnectionError", "Timeout"))):
        try:
            mod = importlib.import_module(module)
        except ImportError:
            continue
        found += [getattr(mod, n) for n in names if isinstance(getattr(mod, n, None), type)]
    return tuple(found) or (ConnectionError,)


def _token_hint() -> str:
    from huggingface_hub import get_token

    if get_token():
        return "your Hugging Face token cannot read it"
    return "no Hugging Face token was found: set HF_TOKEN or log in with `hf auth login`"


def _hub_error(exc: BaseException, ref: HubRef) -> HubError:
    """huggingface_hub's exception → one line that says what is wrong and what to do."""
    errors = _errors()
    url = f"https://huggingface.co/{ref.repo_id}"
    rev = ref.revision or "main"
    if isinstance(exc, errors.GatedRepoError):
        return HubError(f"{ref}: the repository is gated: accept its conditions at {url} while logged in, "
                        f"then set HF_TOKEN or log in with `hf auth login`")
    if isinstance(exc, errors.DisabledRepoError):
        return HubError(f"{ref}: the repository {ref.repo_id} has been disabled on the Hub")
    if isinstance(exc, errors.RevisionNotFoundError):
        return HubError(f"{ref}: {ref.repo_id} has no revision {rev!r} (a branch, tag or commit hash); see {url}/tree/main")
    if isinstance(exc, errors.RepositoryNotFoundError):
        return HubError(f"{ref}: no model repository {ref.repo_id} on the Hub, or it is private and {_token_hint()}")
    if isinstance(exc, errors.LocalEntryNotFoundError):
        return HubError(f"{ref} is not in the Hugging Face cache; connect once to download it")
    if isinstance(exc, errors.EntryNotFoundError):
        return HubError(f"{ref}: {ref.repo_id}@{rev} has no file {ref.filename!r}; see {url}/tree/{rev}")
    if isinstance(exc, errors.HfHubHTTPError):
        status = getattr(getattr(exc, "response", None), "status_code", "?")
        if status == 401:
            return HubError(f"{ref}: the Hub refused the request (401): {_token_hint()}")
        first = next((line for line in str(exc).splitlines() if line.strip()), type(exc).__name__)
        return HubError(f"{ref}: the Hub answered {status}: {first[:200]}")
    return HubError(f"{ref}: {type(exc).__name__}: {str(exc).splitlines()[0][:200] if str(exc) else ''}")


def _cache_dir(cache_dir) -> str:
    from huggingface_hub import constants

    return str(cache_dir or constants.HF_HUB_CACHE)


def _cached_pick(ref: HubRef, cache_dir, reason: str) -> str:
    """The model file of a repository as far as the cache knows it (offline): the files of its
    cached snapshot for the revision (refs/<branch> or snapshots/<commit>), picked as online."""
    from huggingface_hub import snapshot_download

    errors = _errors()
    patterns = [f"*{s}" for s in MODEL_SUFFIXES + PICKLE_SUFFIXES]
    try:
        folder = snapshot_download(ref.repo_id, revision=ref.revision, cache_dir=cache_dir,
                                   local_files_only=True, allow_patterns=patterns)
    except errors.IncompleteSnapshotError as exc:  # some files never fetched: pick among those that were
        folder = exc.snapshot_path
    except errors.LocalEntryNotFoundError:
        raise HubError(f"{ref} is not in the Hugging Face cache ({_cache_dir(cache_dir)}) and {reason}: "
                       "connect once to download it") from None
    root = Path(folder)
    names = [p.relative_to(root).as_posix() for p in sorted(root.rglob("*")) if p.is_file()]
    return pick_file(names, ref, where=f" (cached in {root})")


def download(spec: str, *, cache_dir: str | os.PathLike | None = None, token: str | bool | None = None) -> Path:
    """`hf://OWNER/REPO[/FILE][@REVISION]` → the file's path in the Hub cache (downloaded if
    needed, revision honoured, the cache alone when offline). The file is untrusted: read it
    with `read_model_file`. Every failure is a HubError (a ModelLoadError) of one line."""
    from huggingface_hub import HfApi, hf_hub_download

    from . import __version__

    errors = _errors()
    ref = parse(spec)
    filename, reason = ref.filename, None
    if offline():
        reason = "offline mode is on (HF_HUB_OFFLINE=1)"
    else:
        try:
            info = HfApi(library_name="stylenet", library_version=__version__).model_info(
                ref.repo_id, revision=ref.revision, timeout=timeout(), token=token)
        except _network_errors() as exc:
            reason = f"the Hub cannot be reached ({type(exc).__name__}: {str(exc)[:120]})"
        except (errors.HfHubHTTPError, errors.HFValidationError) as exc:
            raise _hub_error(exc, ref) from None
        else:
            names = [s.rfilename for s in info.siblings or []]
            if filename is None:
                filename = pick_file(names, ref)
            elif names and filename not in names:
                models = [n for n in names if n.lower().endswith(MODEL_SUFFIXES)]
                raise HubError(f"{ref}: {ref.repo_id}@{ref.revision or 'main'} has no file {filename!r} "
                               f"(its model files: {', '.join(models[:6]) or 'none'})")
    if reason is not None and filename is None:
        filename = _cached_pick(ref, cache_dir, reason)
    ref = HubRef(ref.repo_id, filename, ref.revision)
    try:
        path = hf_hub_download(ref.repo_id, filename, revision=ref.revision, cache_dir=cache_dir, token=token,
                               local_files_only=reason is not None, etag_timeout=timeout(),
                               library_name="stylenet", library_version=__version__)
    except errors.LocalEntryNotFoundError:
        why = reason or "the Hub cannot be reached"
        raise HubError(f"{ref} is not in the Hugging Face cache ({_cache_dir(cache_dir)}) and {why}: "
                       "connect once to download it") from None
    except (errors.HfHubHTTPError, errors.HFValidationError, *_network_errors()) as exc:
        raise _hub_error(exc, ref) from None
    return Path(path)


def check_push(repo_id: str, token: str | None = None, revision: str | None = None) -> None:
    """Fail fast, before any work, when a push cannot happen: a bad repository id or branch,
    offline mode, no token, or a Hub that cannot be reached within `timeout()` seconds."""
    from huggingface_hub import HfApi, get_token
    from huggingface_hub.utils import HFValidationError, validate_repo_id

    errors = _errors()
    try:
        validate_repo_id(repo_id)
        if repo_id.count("/") != 1:
            raise HFValidationError(repo_id)
    except HFValidationError:
        raise HubError(f"push_to_hub={repo_id!r} is not OWNER/REPO (letters, digits, '-', '_', '.')") from None
    if revision and (not _REVISION.fullmatch(str(revision)) or ".." in str(revision)):
        raise HubError(f"hub_revision={revision!r} is not a branch name (letters, digits, '_', '.', '-', '/')")
    if offline():
        raise HubError("cannot push to the Hub in offline mode (HF_HUB_OFFLINE=1): unset it")
    if not (token or get_token()):
        raise HubError("pushing to the Hub needs a token with write access: set HF_TOKEN or log in with `hf auth login`")
    ref, api = HubRef(repo_id), HfApi(library_name="stylenet")
    try:
        api.model_info(repo_id, timeout=timeout(), token=token)  # bounded: the Hub is there, or not
    except errors.RepositoryNotFoundError:
        pass  # a new repository (create_repo makes it), or one the token may not read: whoami tells
    except _network_errors() as exc:
        raise HubError(f"cannot push to {repo_id}: the Hub cannot be reached ({type(exc).__name__}: {str(exc)[:120]})") from None
    except errors.HfHubHTTPError as exc:
        raise _hub_error(exc, ref) from None
    try:
        api.whoami(token=token)
    except _network_errors() as exc:
        raise HubError(f"cannot push to {repo_id}: the Hub cannot be reached ({type(exc).__name__}: {str(exc)[:120]})") from None
    except Exception as exc:  # noqa: BLE001 - an HTTP error of huggingface_hub's or of requests (before 1.0): the token is refused
        status = getattr(getattr(exc, "response", None), "status_code", "?")
        raise HubError(f"cannot push to {repo_id}: the Hub refused the token ({status}); set a valid HF_TOKEN "
                       "or log in again with `hf auth login`") from None


def push(folder: str | os.PathLike, repo_id: str, *, private: bool = False, revision: str | None = None,
         commit_message: str | None = None, token: str | None = None) -> str:
    """Upload a folder (`hubcard.build_hub_folder`) as one commit to a model repository,
    created if needed (`private` applies only then); `revision`: a branch, created if needed.
    Returns the commit's URL."""
    from huggingface_hub import HfApi

    from . import __version__

    errors = _errors()
    check_push(repo_id, token, revision)
    api = HfApi(library_name="stylenet", library_version=__version__, token=token)
    ref = HubRef(repo_id, revision=revision)
    try:
        api.create_repo(repo_id, private=private, exist_ok=True, repo_type="model")
        if revision and revision != "main":
            api.create_branch(repo_id, branch=revision, exist_ok=True)
        commit = api.upload_folder(repo_id=repo_id, folder_path=str(folder), revision=revision,
                                   commit_message=commit_message or "Upload a stylenet style")
    except (errors.HfHubHTTPError, *_network_errors()) as exc:
        raise _hub_error(exc, ref) from None
    return str(getattr(commit, "commit_url", None) or f"https://huggingface.co/{repo_id}")


__all__ = ["HubError", "HubRef", "SPEC_GRAMMAR", "check_push", "download", "is_hub_spec", "offline", "parse",
           "pick_file", "push"]
