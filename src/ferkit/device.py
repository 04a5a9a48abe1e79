"""Device, precision and thread choices, made in one place."""
from __future__ import annotations

import contextlib
import functools
import os

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
