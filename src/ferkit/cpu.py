"""What the CPU is, without torch: its model name and the flags that decide ferkit's speed on
x86-64. The inference path reads them to choose a backend before (or without) importing torch."""
from __future__ import annotations

import functools
import os
from pathlib import Path

CPU_FLAGS = ("avx2", "avx512f", "avx512_bf16", "amx_bf16")  # the ones that decide ferkit's speed on x86-64


@functools.lru_cache(maxsize=None)
def cpu_flags() -> tuple[str, tuple[str, ...]]:
    """(model name, flags) from Linux's /proc/cpuinfo; ("", ()) where it cannot be read (macOS, Windows)."""
    try:
        text = Path("/proc/cpuinfo").read_text(errors="replace")
    except OSError:
        return "", ()
    model, flags = "", set()
    for line in text.splitlines():
        key, _, value = line.partition(":")
        if not model and key.strip() in ("model name", "Model", "Hardware"):
            model = value.strip()
        elif key.strip() in ("flags", "Features") and not flags:
            flags = set(value.split())
    return model, tuple(f for f in CPU_FLAGS if f in flags)


def cpu_has_amx() -> bool:
    """True when the CPU reports AMX (Intel's matrix tiles: bfloat16 torch runs 2-3x float32 there).
    FERKIT_CPU_AMX=0 or 1 overrides the answer (to measure or test the other path)."""
    forced = os.environ.get("FERKIT_CPU_AMX")
    if forced in ("0", "1"):
        return forced == "1"
    return "amx_bf16" in cpu_flags()[1]
