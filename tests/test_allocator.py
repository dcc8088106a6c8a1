"""stylenet.allocator: glibc keeps freed memory while on, and unmaps large blocks again when off.

Checked in a subprocess (the setting is process-wide; the test process keeps its own malloc)."""

import platform
import subprocess
import sys

import pytest

from stylenet import allocator

PROBE = r"""
import ctypes
from stylenet.allocator import keep_freed_memory

libc = ctypes.CDLL("libc.so.6")
FIELDS = ("arena", "ordblks", "smblks", "hblks", "hblkhd", "usmblks", "fsmblks", "uordblks", "fordblks", "keepcost")
# mallinfo2 (glibc >= 2.33) has size_t fields; the older mallinfo has int fields (enough for 64 MiB)
info = getattr(libc, "mallinfo2", None) or libc.mallinfo
class Info(ctypes.Structure):
    _fields_ = [(name, ctypes.c_size_t if info is not libc.mallinfo else ctypes.c_int) for name in FIELDS]
info.restype = Info
libc.malloc.restype, libc.malloc.argtypes = ctypes.c_void_p, [ctypes.c_size_t]
libc.free.argtypes = [ctypes.c_void_p]
BIG = 64 << 20

def mapped_while_held():
    block = libc.malloc(BIG)
    mapped = info().hblkhd  # bytes in mmap'd blocks
    libc.free(block)
    return mapped

default = mapped_while_held()
on = keep_freed_memory(True)
kept = mapped_while_held()
heap_after_free = info().arena  # the freed block stays in the heap
off = keep_freed_memory(False)
print(default, on, kept, heap_after_free, off, mapped_while_held())
"""


@pytest.mark.skipif(platform.system() != "Linux" or platform.libc_ver()[0] != "glibc", reason="glibc only")
def test_keep_freed_memory_reuses_large_blocks_instead_of_unmapping_them():
    out = subprocess.run([sys.executable, "-c", PROBE], capture_output=True, text=True, timeout=60, check=True).stdout
    default, on, kept, heap_after_free, off, mapped_off = out.split()
    big = 64 << 20
    assert int(default) >= big  # glibc's default: a 64 MiB block is its own mapping, unmapped on free
    assert on == "True" and int(kept) < big  # on: served from the heap …
    assert int(heap_after_free) >= big  # … and kept there after free (no page faults next time)
    assert off == "True" and int(mapped_off) >= big  # off: mapped again


def test_not_glibc_is_a_no_op(monkeypatch):
    monkeypatch.setattr(allocator, "_mallopt", lambda: None)
    assert allocator.keep_freed_memory(True) is False
    assert allocator.keep_freed_memory(False) is False
