"""For the memory and disk bomb tests: a cap on Python-tracked allocations and a cheap gzip stream of zeros."""

from __future__ import annotations

import contextlib
import gzip
import tracemalloc


@contextlib.contextmanager
def peak_below(limit_bytes):
    """Assert that Python-tracked allocations (numpy's included) stay below limit_bytes inside the block."""
    tracemalloc.start()
    try:
        yield
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert peak < limit_bytes, f"peak allocation {peak} bytes"


def gzip_zeros(n_mib):
    """A gzip stream of n_mib MiB of zeros, about 1 KB per MiB (concatenated gzip members)."""
    return gzip.compress(bytes(1 << 20), mtime=0) * n_mib
