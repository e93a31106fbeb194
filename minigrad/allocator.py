"""Keep freed memory in the process for the next step (glibc's malloc only).

A training step allocates and frees the same few hundred arrays every time. With glibc's
defaults, arrays over 128 KiB come from fresh mmap()s and freed heap tops are returned to the
system, so every step touches new pages and pays a page fault per 4 KiB: on these machines
that was 20-25% of a small LSTM's step (benchmarks/README.md). Raising the thresholds lets
malloc reuse the memory instead, as the caching allocators of other frameworks do. The cost:
the process keeps its peak heap instead of shrinking after it.

`import minigrad` calls `reuse_freed_memory()`; set MINIGRAD_MALLOC_TUNING=0 to keep glibc's
defaults. Elsewhere than glibc it does nothing.
"""

import ctypes
import os
import sys

_M_TRIM_THRESHOLD, _M_TOP_PAD, _M_MMAP_THRESHOLD = -1, -2, -3
_MMAP_THRESHOLD = 32 << 20  # glibc's maximum on 64-bit: larger arrays still use mmap
_TRIM_THRESHOLD = 1 << 30
_TOP_PAD = 64 << 20

tuned = False


def reuse_freed_memory() -> bool:
    """Set glibc's malloc to keep freed memory; True if it did."""
    global tuned
    if tuned:
        return True
    if not sys.platform.startswith("linux") or os.environ.get("MINIGRAD_MALLOC_TUNING") == "0":
        return False
    try:
        # The process's own symbols include libc's: no library search (find_library runs
        # subprocesses, which cost `import minigrad` 25 ms).
        mallopt = ctypes.CDLL(None).mallopt
    except (OSError, AttributeError):  # not glibc (musl has no mallopt)
        return False
    settings = (
        (_M_MMAP_THRESHOLD, _MMAP_THRESHOLD),
        (_M_TRIM_THRESHOLD, _TRIM_THRESHOLD),
        (_M_TOP_PAD, _TOP_PAD),
    )
    tuned = all(mallopt(param, value) == 1 for param, value in settings)
    return tuned
