"""One fuzz case: an entry point run on one input in a forked child, and how it ended.

A fork costs milliseconds where a fresh interpreter costs seconds of imports, and it isolates
what a case may break: the child gets a memory limit (a lying model file that allocates
720 GB fails there, not in pytest), its own stdout/stderr, and is killed at its timeout.
Every case ends as exactly one of KINDS; the first three are the acceptable ones.
"""

from __future__ import annotations

import os
import re
import resource
import signal
import sys
import tempfile
import time
import traceback
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

#: how a case may end: success, a skip that is reported, one `error:` line with exit code 2 ...
ACCEPTABLE = ("ok", "skipped", "error")
#: ... and how it must not
FAILURES = ("traceback", "hang", "payload", "crash", "unclear")
KINDS = ACCEPTABLE + FAILURES
#: created by the pickle payloads of the corpus when they run; it must never appear
MARKER = Path(tempfile.gettempdir()) / f"stylenet-fuzz-payload-{os.getpid()}"
#: memory a case may take on top of the test process's (RLIMIT_AS of the child)
CASE_MEMORY = 6 << 30

#: Python's words leaking through as the whole message: say what is wrong with which input instead
VAGUE = (r"invalid literal for int\(\)", r"dictionary update sequence", r"^error: \S+Error$", r"object is not subscriptable",
         r"unexpected keyword argument", r"^error: \d+$", r"^error: '[^']*'$")

TALLY: Counter = Counter()
RESULTS: list[tuple[str, str]] = []
#: peak resident memory of the measured runs, GB (printed in the summary)
PEAKS: dict[str, tuple[float, float]] = {}


@dataclass
class Outcome:
    name: str
    kind: str
    code: int | None
    out: str
    err: str
    seconds: float
    peak_gb: float = 0.0

    @property
    def error_lines(self) -> list[str]:
        return [ln for ln in self.err.splitlines() if ln.startswith("error:")]

    def __str__(self) -> str:
        return (f"{self.name}: {self.kind} (exit {self.code}, {self.seconds:.1f} s)\n"
                f"--- stdout ---\n{self.out[-2000:]}\n--- stderr ---\n{self.err[-4000:]}")


def classify(code: int | None, err: str, *, hung: bool, signalled: bool) -> str:
    if MARKER.exists():
        return "payload"
    if hung:
        return "hang"
    if "Traceback (most recent call last)" in err:
        return "traceback"
    if signalled:
        return "crash"
    errors = [ln for ln in err.splitlines() if ln.startswith("error:")]
    if code == 2 and len(errors) == 1:
        return "error"
    skips = re.search(r"^(skipped: |warning: .*skip)", err, re.M)
    if code == 0:
        return "skipped" if skips else "ok"
    if code == 1 and skips and not errors:
        return "skipped"  # the stylize command's "some files were skipped" exit code
    return "unclear"


def _vm_size() -> int:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmSize:"):
            return int(line.split()[1]) * 1024
    return 0


def _child(fn: Callable[[], int | None], out: str, err: str, cwd: str | None, memory: int) -> None:
    """In the fork: own output files, one thread, a memory limit; exit with fn's code."""
    code = 70
    try:
        os.setpgid(0, 0)
        for fd, path in ((1, out), (2, err)):
            os.dup2(os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644), fd)
        sys.stdout = open(1, "w", buffering=1, closefd=False)
        sys.stderr = open(2, "w", buffering=1, closefd=False)
        import torch

        torch.set_num_threads(1)  # no OpenMP pool in a fork: the parent's is not fork-safe
        if memory:
            resource.setrlimit(resource.RLIMIT_AS, (_vm_size() + memory, resource.RLIM_INFINITY))
        if cwd:
            os.chdir(cwd)
        code = int(fn() or 0)
    except SystemExit as exc:
        code = exc.code if isinstance(exc.code, int) else 1
    except BaseException:  # noqa: BLE001 - what escaped the entry point is the finding
        traceback.print_exc()
        code = 70
    finally:
        for stream in (sys.stdout, sys.stderr):
            try:
                stream.flush()
            except Exception:  # noqa: BLE001
                pass
        os._exit(code)


def fork_run(fn: Callable[[], int | None], *, timeout: float = 120, cwd: str | os.PathLike | None = None,
             memory: int = CASE_MEMORY, kill_when: Callable[[], bool] | None = None) -> tuple[int | None, str, str, bool, bool, float, float]:
    """fn() in a forked child → (exit code, stdout, stderr, hung, signalled, seconds, peak RSS GB).

    `kill_when`: polled while the child runs; when it returns True the child gets SIGKILL
    (the crash-safety tests' "killed mid-write"); that kill is neither a hang nor a crash.
    """
    with tempfile.TemporaryDirectory(prefix="fuzz-io-") as io_dir:
        out, err = os.path.join(io_dir, "out"), os.path.join(io_dir, "err")
        sys.stdout.flush()
        sys.stderr.flush()
        start = time.monotonic()
        pid = os.fork()
        if pid == 0:
            _child(fn, out, err, str(cwd) if cwd else None, memory)
        hung = killed = False
        while True:
            done, status, usage = os.wait4(pid, os.WNOHANG)
            if done:
                break
            if kill_when is not None and kill_when():
                killed = True
            elif time.monotonic() - start > timeout:
                hung = True
            if hung or killed:
                try:
                    os.killpg(pid, signal.SIGKILL)
                except ProcessLookupError:
                    pass
                _, status, usage = os.wait4(pid, 0)
                break
            time.sleep(0.01)
        seconds = time.monotonic() - start
        read = lambda p: Path(p).read_text(errors="replace") if os.path.exists(p) else ""  # noqa: E731
        code = os.waitstatus_to_exitcode(status)
        signalled = code < 0 and not killed
        return (None if code < 0 else code), read(out), read(err), hung, signalled, seconds, usage.ru_maxrss / 2**20


def run_case(name: str, fn: Callable[[], int | None], *, timeout: float = 120, cwd=None,
             memory: int = CASE_MEMORY) -> Outcome:
    """One fuzz case, tallied for the summary line."""
    code, out, err, hung, signalled, seconds, peak = fork_run(fn, timeout=timeout, cwd=cwd, memory=memory)
    outcome = Outcome(name, classify(code, err, hung=hung, signalled=signalled), code, out, err, seconds, peak)
    MARKER.unlink(missing_ok=True)  # counted once: the next case starts clean
    TALLY[outcome.kind] += 1
    RESULTS.append((name, outcome.kind))
    return outcome


def check(outcome: Outcome, expect: str | tuple[str, ...] = ACCEPTABLE, match: str | None = None) -> Outcome:
    """Assert the case ended acceptably (and as expected; `match`: a regex its error line must contain)."""
    expect = (expect,) if isinstance(expect, str) else expect
    assert outcome.kind in ACCEPTABLE, str(outcome)
    assert outcome.kind in expect, f"expected {'/'.join(expect)}\n{outcome}"
    if match is not None and outcome.kind == "error":
        assert re.search(match, outcome.error_lines[0]), f"error line does not match {match!r}\n{outcome}"
    if outcome.kind == "error":
        assert "weights_only=False" not in outcome.err and "weights_only` set to `False" not in outcome.err, str(outcome)
        assert not re.search("|".join(VAGUE), outcome.error_lines[0]), f"a vague message\n{outcome}"
    return outcome


def summary_line() -> str:
    n = sum(TALLY.values())
    line = (f"fuzz: {n} cases, {TALLY['ok']} ok, {TALLY['skipped']} skipped-and-reported, {TALLY['error']} clear errors, "
            f"{TALLY['traceback']} tracebacks, {TALLY['hang']} hangs, {TALLY['payload']} payloads")
    other = TALLY["crash"] + TALLY["unclear"]
    return line + (f", {other} other failures (crashes, unclear exits)" if other else "")


def run_subprocess_case(name: str, argv: list[str], *, timeout: float = 240, cwd=None, env=None) -> Outcome:
    """A case in a fresh interpreter, as a user runs it: the peak memory is the command's own
    (os.wait4's maxrss of exactly this process), not the test process's inherited by a fork."""
    import subprocess

    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONUNBUFFERED": "1", **(env or {})}
    with tempfile.TemporaryFile() as out, tempfile.TemporaryFile() as err:
        start = time.monotonic()
        proc = subprocess.Popen(argv, cwd=cwd, env=env, stdout=out, stderr=err, stdin=subprocess.DEVNULL, start_new_session=True)
        hung = False
        while True:
            done, status, usage = os.wait4(proc.pid, os.WNOHANG)
            if done:
                break
            if time.monotonic() - start > timeout:
                hung = True
                os.killpg(proc.pid, signal.SIGKILL)
                _, status, usage = os.wait4(proc.pid, 0)
                break
            time.sleep(0.05)
        proc.returncode = code = os.waitstatus_to_exitcode(status)
        seconds = time.monotonic() - start
        out.seek(0)
        err.seek(0)
        text_out, text_err = out.read().decode(errors="replace"), err.read().decode(errors="replace")
    kind = classify(None if code < 0 else code, text_err, hung=hung, signalled=code < 0 and not hung)
    outcome = Outcome(name, kind, None if code < 0 else code, text_out, text_err, seconds, usage.ru_maxrss / 2**20)
    MARKER.unlink(missing_ok=True)
    TALLY[outcome.kind] += 1
    RESULTS.append((name, outcome.kind))
    return outcome
