"""The fuzz suite's corpus (made once per session) and its summary: peak memory, then the
last line of the run, `fuzz: N cases, ... 0 tracebacks, 0 hangs, 0 payloads`."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest

from . import corpus
from .harness import MARKER, PEAKS, TALLY, summary_line


@pytest.fixture(scope="session", autouse=True)
def _imports_before_forking():
    """Everything the entry points import, imported once here: every forked case then starts warm."""
    import pytorch_lightning  # noqa: F401

    import stylenet.commands.export  # noqa: F401
    import stylenet.commands.stylize  # noqa: F401
    import stylenet.commands.train  # noqa: F401
    import stylenet.commands.webcam  # noqa: F401
    import stylenet.export  # noqa: F401
    import stylenet.inference  # noqa: F401
    import stylenet.train  # noqa: F401
    import stylenet.video  # noqa: F401
    import stylenet.videofile  # noqa: F401

    MARKER.unlink(missing_ok=True)
    yield
    MARKER.unlink(missing_ok=True)


@pytest.fixture(scope="session")
def image_corpus(tmp_path_factory):
    return corpus.images(tmp_path_factory.mktemp("fuzz-images"))


@pytest.fixture(scope="session")
def model_corpus(tmp_path_factory, export_path, tiny_checkpoint):
    return corpus.model_files(tmp_path_factory.mktemp("fuzz-models"), export_path, tiny_checkpoint)


@pytest.fixture(scope="session")
def video_corpus(tmp_path_factory):
    return corpus.videos(tmp_path_factory.mktemp("fuzz-videos"))


@pytest.fixture(scope="session")
def good_photo(tmp_path_factory):
    path = tmp_path_factory.mktemp("fuzz-photo") / "photo.png"
    corpus.photo(40, 32).save(path)
    return path


@pytest.fixture
def read_only_dir(tmp_path):
    """A folder nothing can be written into, root included (chmod, then chattr +i where root
    ignores permission bits); skipped, with the reason reported, where neither works."""
    folder = tmp_path / "read-only"
    folder.mkdir()
    folder.chmod(0o555)
    immutable = False
    if writable(folder):
        immutable = subprocess.run(["chattr", "+i", str(folder)], capture_output=True).returncode == 0
    try:
        if writable(folder):
            pytest.skip("cannot make a read-only folder here (root on a file system without chattr +i)")
        yield folder
    finally:
        if immutable:
            subprocess.run(["chattr", "-i", str(folder)], capture_output=True)
        folder.chmod(0o755)


def writable(folder) -> bool:
    try:
        probe = folder / ".probe"
        probe.write_bytes(b"")
        probe.unlink()
        return True
    except OSError:
        return False


@pytest.hookimpl(wrapper=True, tryfirst=True)
def pytest_sessionfinish(session, exitstatus):
    """After pytest's own summary: the peaks, then the fuzz line as the run's last line."""
    result = yield
    if sum(TALLY.values()):
        reporter = session.config.pluginmanager.get_plugin("terminalreporter")
        write = reporter.write_line if reporter else (lambda line: print(line, file=sys.stderr))
        for name, (peak, bound) in PEAKS.items():
            write(f"peak memory: {name}: {peak:.2f} GB (bound {bound:g} GB)")
        write(summary_line())
    return result


os.environ.setdefault("OPENCV_LOG_LEVEL", "ERROR")
