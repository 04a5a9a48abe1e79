"""What the CPU is, without torch: its model name and the flags that decide ferkit's speed on
x86-64 and aarch64. The inference path reads them to choose a backend before (or without) importing torch."""

from __future__ import annotations

import functools
import os
from pathlib import Path

CPUINFO = Path("/proc/cpuinfo")  # Linux's; a module constant so that tests can give another CPU's
# The flags that decide ferkit's speed: x86-64's in the "flags" line, and "bf16", aarch64's in its
# "Features" line (ARMv8.6 BF16: Graviton 3/4, Neoverse V1/V2/N2). x86 never reports a bare "bf16".
CPU_FLAGS = ("avx2", "avx512f", "avx512_bf16", "amx_bf16", "bf16")
# Native bfloat16: AVX-512 BF16 or AMX on x86-64, BF16 on aarch64. Without them oneDNN emulates bf16
# at about half of float32's speed (an Ice Lake Xeon, AVX-512 without BF16: 98 against 184 img/s).
BF16_FLAGS = ("avx512_bf16", "amx_bf16", "bf16")
# oneDNN's ISA names (docs "CPU Dispatcher Control") below AVX512_CORE_BF16, its first with bf16
# instructions: ONEDNN_MAX_CPU_ISA (or the older DNNL_MAX_CPU_ISA) set to one of them keeps oneDNN off bf16.
ONEDNN_ISAS_WITHOUT_BF16 = (
    "SSE41",
    "AVX",
    "AVX2",
    "AVX2_VNNI",
    "AVX2_VNNI_2",
    "AVX512_MIC",
    "AVX512_MIC_4OPS",
    "AVX512_CORE",
    "AVX512_CORE_VNNI",
)


@functools.cache
def cpu_flags() -> tuple[str, tuple[str, ...]]:
    """(model name, flags) from Linux's /proc/cpuinfo; ("", ()) where it cannot be read (macOS, Windows)."""
    try:
        text = CPUINFO.read_text(errors="replace")
    except OSError:
        return "", ()
    model, flags = "", set[str]()
    for line in text.splitlines():
        key, _, value = line.partition(":")
        if not model and key.strip() in ("model name", "Model", "Hardware"):
            model = value.strip()
        elif key.strip() in ("flags", "Features") and not flags:
            flags = set(value.split())
    return model, tuple(f for f in CPU_FLAGS if f in flags)


def onednn_isa_without_bf16() -> bool:
    """True when the user holds oneDNN below its bf16 kernels (ONEDNN_MAX_CPU_ISA=AVX2, AVX512_CORE, ...;
    any case): bf16 is then emulated even on an AMX CPU. Other values (AVX512_CORE_BF16, AVX512_CORE_AMX,
    ALL, aarch64's names) or none leave the decision to the flags."""
    isa = os.environ.get("ONEDNN_MAX_CPU_ISA") or os.environ.get("DNNL_MAX_CPU_ISA") or ""
    return isa.strip().upper() in ONEDNN_ISAS_WITHOUT_BF16


def cpu_native_bf16() -> bool | None:
    """Whether this CPU runs bfloat16 natively, from its flags and ONEDNN_MAX_CPU_ISA; None where the
    flags cannot be read (no /proc/cpuinfo: macOS, Windows), for the caller to decide."""
    if onednn_isa_without_bf16():
        return False
    model, flags = cpu_flags()
    if not model and not flags:  # nothing read, or an aarch64 /proc/cpuinfo without a model line
        try:
            CPUINFO.read_bytes()
        except OSError:
            return None
    return any(f in flags for f in BF16_FLAGS)


def cpu_has_amx() -> bool:
    """True when the CPU reports AMX (Intel's matrix tiles: bfloat16 torch runs 2-3x float32 there).
    FERKIT_CPU_AMX=0 or 1 overrides the answer (to measure or test the other path)."""
    forced = os.environ.get("FERKIT_CPU_AMX")
    if forced in ("0", "1"):
        return forced == "1"
    return "amx_bf16" in cpu_flags()[1]
