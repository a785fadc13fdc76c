"""The process's memory allocator: keep freed tensor memory in glibc's heap instead of returning it to the OS.

PyTorch on a CPU allocates and frees the same large buffers (activations, gradients) at every step. glibc's
malloc serves blocks above its mmap threshold with fresh mmap pages and gives them back at free, and trims the
heap top above 128 KiB: every step then page-faults its buffers in again (zero-filled by the kernel). On a
PGD-3 training step of the default compare that is about a fifth of the wall time, spent in the kernel
(benchmarks/allocator.py: 1.25x faster tuned). `tune_allocator` raises both thresholds with `mallopt`. The
numbers do not change: only where the memory comes from.

It applies to the calling process only: `sspnet.cli.main` calls it, and so do the worker processes and jobs
of `sspnet compare`. Nothing is changed when SSPNET_MALLOC_TUNING=0, when the C library is not glibc, when
another allocator is preloaded (LD_PRELOAD with jemalloc / tcmalloc / mimalloc), or when the user set glibc's
own MALLOC_MMAP_THRESHOLD_ / MALLOC_TRIM_THRESHOLD_ / MALLOC_TOP_PAD_.
"""

from __future__ import annotations

import ctypes
import os
import platform

ENV = "SSPNET_MALLOC_TUNING"
MMAP_THRESHOLD = 32 << 20  # bytes: smaller blocks come from the heap and are reused (the
# upper limit of glibc's own adaptive threshold on 64-bit)
TRIM_THRESHOLD = 1 << 30  # bytes of free heap top kept before giving memory back
_M_TRIM_THRESHOLD, _M_MMAP_THRESHOLD = -1, -3  # mallopt parameters (malloc.h)
_USER_SETTINGS = ("MALLOC_MMAP_THRESHOLD_", "MALLOC_TRIM_THRESHOLD_", "MALLOC_TOP_PAD_")
_OTHER_ALLOCATORS = ("jemalloc", "tcmalloc", "mimalloc")
_applied = False


def why_not_tuned() -> str | None:
    """Why `tune_allocator` leaves this process alone (None: it tunes)."""
    if os.environ.get(ENV, "1").strip().lower() in ("0", "false", "no", "off"):
        return f"{ENV}={os.environ[ENV]}"
    if platform.system() != "Linux" or platform.libc_ver()[0] != "glibc":
        return "the C library is not glibc"
    preload = os.environ.get("LD_PRELOAD", "")
    if any(name in preload for name in _OTHER_ALLOCATORS):
        return f"another allocator is preloaded ({preload})"
    given = [name for name in _USER_SETTINGS if name in os.environ]
    if given:
        return f"glibc's own settings are given ({', '.join(given)})"
    return None


def tune_allocator() -> bool:
    """Raise glibc's mmap and trim thresholds for this process (once); True when they are set."""
    global _applied
    if _applied:
        return True
    if why_not_tuned() is not None:
        return False
    try:
        libc = ctypes.CDLL("libc.so.6")
    except OSError:
        return False
    # the mmap threshold first: setting either fixes both (glibc stops adapting them)
    _applied = bool(libc.mallopt(_M_MMAP_THRESHOLD, MMAP_THRESHOLD)) and bool(
        libc.mallopt(_M_TRIM_THRESHOLD, TRIM_THRESHOLD)
    )
    return _applied
