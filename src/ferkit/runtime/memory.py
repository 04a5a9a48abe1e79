"""How the process hands memory back to the OS (glibc's malloc settings), without torch: the
training loop, the inference path and the service all use it, and the inference path may run in an
install without torch."""

from __future__ import annotations

import ctypes
import functools
import os
import platform

# glibc's mallopt parameters (malloc.h) and its largest allowed mmap threshold on 64-bit systems
M_TRIM_THRESHOLD, M_MMAP_THRESHOLD = -1, -3
MMAP_THRESHOLD_MAX = 32 << 20
TRIM_THRESHOLD = 1 << 30


@functools.cache
def keep_freed_memory() -> bool:
    """Make glibc's malloc keep freed blocks for reuse instead of handing them back to the OS.

    By default glibc serves blocks of a few MB and more with fresh `mmap`s and unmaps them when
    they are freed, and trims freed memory off the top of its heap. A CNN allocates and frees
    activation-sized blocks (here 1-20 MB) at every layer of every batch, so their pages were
    faulted in again each time: about 57,000 page faults per 512 faces of batched inference and
    8,000 per training step of fer-resnet-fast16 at batch 128, against 0 and 250 with this
    setting (`bench/malloc.py`). Batched inference runs about 1.3x faster; a training step does
    not measurably change. Blocks under 32 MB (glibc's maximum threshold) now come from the heap,
    which is trimmed only past 1 GB of free space: the process keeps its peak heap. The
    arithmetic is unchanged.

    Done once per process; a no-op without glibc (macOS, Windows, musl), with FERKIT_MALLOC=default
    in the environment, or when the user set `MALLOC_MMAP_THRESHOLD_`, `MALLOC_TRIM_THRESHOLD_` or
    malloc tunables in `GLIBC_TUNABLES` (their choice wins). Returns True when it was applied.
    """
    if (
        os.environ.get("FERKIT_MALLOC") == "default"
        or any(k in os.environ for k in ("MALLOC_MMAP_THRESHOLD_", "MALLOC_TRIM_THRESHOLD_"))
        or "glibc.malloc" in os.environ.get("GLIBC_TUNABLES", "")
        or platform.libc_ver()[0] != "glibc"
    ):
        return False
    try:
        mallopt = ctypes.CDLL(None).mallopt
    except (OSError, AttributeError, TypeError):
        return False
    mallopt.argtypes, mallopt.restype = [ctypes.c_int, ctypes.c_int], ctypes.c_int
    return mallopt(M_MMAP_THRESHOLD, MMAP_THRESHOLD_MAX) == 1 and mallopt(M_TRIM_THRESHOLD, TRIM_THRESHOLD) == 1


def release_freed_memory() -> bool:
    """Hand the heap's free memory back to the OS now (glibc's malloc_trim; a no-op elsewhere).

    `keep_freed_memory` keeps up to 1 GB of freed blocks for reuse, which suits a training loop; a
    service calls this when a burst of requests is over, so that its memory returns near its
    baseline. Returns True when memory was released."""
    if platform.libc_ver()[0] != "glibc":
        return False
    try:
        return bool(ctypes.CDLL(None).malloc_trim(0))
    except (OSError, AttributeError, TypeError):
        return False
