"""Host memory reuse for CPU training: glibc's malloc told to keep freed memory.

A training step on a CPU allocates the same few hundred megabytes of activations and
gradients every step. glibc serves each block over 32 MiB (a batch of 4 at 256 px has many:
VGG's 64-channel maps are 64 MiB) with a fresh `mmap` and unmaps it on free, so the kernel
zero-fills every page again on first touch: 0.6 s of a 4 s fp32 step measured (docs/speed.md),
a ReLU over one such map 17 ms instead of 4.5. With mmap off and the heap never trimmed, the
freed blocks are reused and the page faults stop after the first step; the price is that the
process keeps its peak memory until it exits, which a training process does anyway.

Process-wide (DataLoader workers forked later inherit it); a no-op where the C library is not
glibc (macOS and Windows allocators cache on their own).
"""

from __future__ import annotations

import ctypes
import ctypes.util
import functools
import platform

# mallopt(3) parameters
M_TRIM_THRESHOLD, M_MMAP_THRESHOLD, M_MMAP_MAX = -1, -3, -4
MIB = 1 << 20
#: "on": no mmap for large blocks, and the heap's free top is kept up to this much
KEEP_TRIM_THRESHOLD = 1 << 30
#: "off": glibc's own values once a process has freed large blocks (its dynamic mmap threshold
#: stops at 32 MiB on 64-bit systems, the trim threshold at twice that), and its mmap count
DEFAULT_MMAP_THRESHOLD, DEFAULT_TRIM_THRESHOLD, DEFAULT_MMAP_MAX = 32 * MIB, 64 * MIB, 65536


@functools.lru_cache(maxsize=1)
def _mallopt():
    """glibc's (mallopt, malloc_trim), or None on any other C library."""
    if platform.system() != "Linux" or platform.libc_ver()[0] != "glibc":
        return None
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
    except OSError:  # pragma: no cover - no loadable libc
        return None
    mallopt, trim = getattr(libc, "mallopt", None), getattr(libc, "malloc_trim", None)
    if mallopt is None or trim is None:  # pragma: no cover - not glibc after all
        return None
    mallopt.argtypes, mallopt.restype = [ctypes.c_int, ctypes.c_int], ctypes.c_int
    trim.argtypes, trim.restype = [ctypes.c_size_t], ctypes.c_int
    return mallopt, trim


def keep_freed_memory(on: bool = True) -> bool:
    """Keep freed host memory for reuse (on) or return to glibc's usual behaviour for large
    blocks (off: what a process that never called this has once it has freed a few, and the
    kept memory handed back; the benchmark alternates configurations in one process with it).
    True if the setting took."""
    libc = _mallopt()
    if libc is None:
        return False
    mallopt, trim = libc
    if on:
        return mallopt(M_MMAP_MAX, 0) == 1 and mallopt(M_TRIM_THRESHOLD, KEEP_TRIM_THRESHOLD) == 1
    took = all(mallopt(param, value) == 1 for param, value in (
        (M_MMAP_MAX, DEFAULT_MMAP_MAX), (M_MMAP_THRESHOLD, DEFAULT_MMAP_THRESHOLD), (M_TRIM_THRESHOLD, DEFAULT_TRIM_THRESHOLD)))
    trim(0)
    return took
