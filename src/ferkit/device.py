"""Device, precision and thread choices, made in one place."""
from __future__ import annotations

import contextlib
import ctypes
import functools
import os
import platform

import torch


def pick_device(name: str = "auto") -> torch.device:
    """`auto` = CUDA when present, else CPU."""
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    return torch.device(name)


@functools.lru_cache(maxsize=None)
def cpu_supports_bf16() -> bool:
    """True when this CPU runs bfloat16 convolutions natively (AVX-512 BF16 or AMX).

    Without native support, bf16 autocast on CPU is emulated and slower than float32.
    """
    try:
        flags = open("/proc/cpuinfo").read()
    except OSError:
        return False
    return any(f in flags for f in ("avx512_bf16", "amx_bf16"))


def amp_dtype(device: torch.device) -> torch.dtype | None:
    """The autocast dtype `--amp` uses on this device, or None where it would not help."""
    if device.type == "cuda":
        return torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float16
    if device.type == "cpu" and cpu_supports_bf16():
        return torch.bfloat16
    return None


def autocast(device: torch.device | str, enabled: bool):
    """Autocast context for `--amp` (a no-op when disabled or unhelpful on this device)."""
    device = torch.device(device)
    dtype = amp_dtype(device) if enabled else None
    if dtype is None:
        return contextlib.nullcontext()
    return torch.autocast(device.type, dtype=dtype)


def set_threads() -> None:
    """Use one intra-op thread per physical core unless the user set OMP_NUM_THREADS."""
    if "OMP_NUM_THREADS" not in os.environ:
        torch.set_num_threads(max(1, os.cpu_count() or 1))


# glibc's mallopt parameters (malloc.h) and its largest allowed mmap threshold on 64-bit systems
M_TRIM_THRESHOLD, M_MMAP_THRESHOLD = -1, -3
MMAP_THRESHOLD_MAX = 32 << 20
TRIM_THRESHOLD = 1 << 30


@functools.lru_cache(maxsize=None)
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
    if os.environ.get("FERKIT_MALLOC") == "default" \
            or any(k in os.environ for k in ("MALLOC_MMAP_THRESHOLD_", "MALLOC_TRIM_THRESHOLD_")) \
            or "glibc.malloc" in os.environ.get("GLIBC_TUNABLES", "") or platform.libc_ver()[0] != "glibc":
        return False
    try:
        mallopt = ctypes.CDLL(None).mallopt
    except (OSError, AttributeError, TypeError):
        return False
    mallopt.argtypes, mallopt.restype = [ctypes.c_int, ctypes.c_int], ctypes.c_int
    return mallopt(M_MMAP_THRESHOLD, MMAP_THRESHOLD_MAX) == 1 and mallopt(M_TRIM_THRESHOLD, TRIM_THRESHOLD) == 1
