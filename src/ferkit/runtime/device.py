"""Device, precision and thread choices, made in one place."""

from __future__ import annotations

import contextlib
import functools
import os
import platform

import torch

from ferkit.runtime.cpu import cpu_flags, cpu_native_bf16, onednn_isa_without_bf16


class DeviceError(ValueError):
    """A device that this torch or this machine does not have."""


def pick_device(name: str | None = "auto") -> torch.device:
    """`auto` = CUDA when present, else CPU; a device this machine cannot use is a `DeviceError`."""
    if name in (None, "auto"):
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        device = torch.device(name)
    except RuntimeError:
        raise DeviceError(f"unknown device {name!r}: use auto, cpu or cuda (cuda:N)") from None
    if device.type == "cuda" and not torch.cuda.is_available():
        why = "this torch is a CPU build" if torch.version.cuda is None else "no CUDA GPU is visible"
        raise DeviceError(f"--device {name}: {why}; use --device cpu (or auto)")
    if device.type not in ("cpu", "cuda"):
        raise DeviceError(f"--device {name}: ferkit runs on cpu or cuda")
    return device


def cpu_info() -> dict:
    """What the figures of a benchmark or a model card were measured on: the CPU model, its relevant
    flags (where the OS tells them), the kernels PyTorch dispatches to, whether bfloat16 runs natively,
    and the torch version. Works on any OS: without /proc/cpuinfo the model comes from `platform`."""
    model, flags = cpu_flags()
    return {
        "cpu_model": model or platform.processor() or platform.machine() or "unknown",
        "cpu_flags": list(flags),
        "machine": platform.machine(),
        "cpu_count": os.cpu_count(),
        "torch_capability": torch.backends.cpu.get_cpu_capability(),
        "cpu_bf16": cpu_supports_bf16(),
        "threads": torch.get_num_threads(),
        "torch": torch.__version__,
    }


def describe_cpu() -> str:
    """One line naming the CPU, e.g. 'AMD EPYC [avx2 avx512f avx512_bf16], torch kernels AVX512, 2 threads'."""
    i = cpu_info()
    flags = f" [{' '.join(i['cpu_flags'])}]" if i["cpu_flags"] else ""
    return f"{i['cpu_model']}{flags}, torch kernels {i['torch_capability']}, {i['threads']} thread{'s' if i['threads'] != 1 else ''}, torch {i['torch']}"


@functools.cache
def cpu_supports_bf16() -> bool:
    """True when this CPU runs bfloat16 convolutions natively: AVX-512 BF16 or AMX on x86-64, BF16 on aarch64.

    Without them oneDNN emulates bf16 at about half of float32's speed, so `--amp` runs in float32
    there. oneDNN's own probe (torch.ops.mkldnn._is_mkldnn_bf16_supported) is not asked: it says
    True on any AVX-512 CPU (Ice Lake), where bf16 is emulated. The CPU's flags decide
    (`ferkit.runtime.cpu.cpu_native_bf16`, which also honours ONEDNN_MAX_CPU_ISA, so that an AMX machine
    told to use only AVX2 kernels counts as having none). Without /proc/cpuinfo (macOS, Windows)
    the CPUID bits that torch reads decide on x86-64; elsewhere (Apple silicon) the answer is False,
    as float32 is never the slow choice. FERKIT_CPU_BF16=0 or 1 overrides the answer (to measure or
    test the other path).
    """
    forced = os.environ.get("FERKIT_CPU_BF16")
    if forced in ("0", "1"):
        return forced == "1"
    if not torch.backends.mkldnn.is_available():
        return False
    native = cpu_native_bf16()
    return cpuid_bf16() if native is None else native


def cpuid_bf16() -> bool:
    """AVX-512 BF16 or AMX from the CPUID bits torch's cpuinfo library reads (any OS; False off x86-64
    and on torch builds without these probes)."""
    probes = (getattr(torch.cpu, name, None) for name in ("_is_avx512_bf16_supported", "_is_amx_tile_supported"))
    try:
        return any(probe is not None and bool(probe()) for probe in probes)
    except RuntimeError:
        return False


@functools.cache
def bf16_available(device_type: str) -> bool:
    """True when bfloat16 autocast runs natively on this device type (tried once, then cached): the
    one bf16 check of `--amp`, evaluation and the Predictor's bf16="auto"."""
    if device_type == "cuda":
        return torch.cuda.is_available() and torch.cuda.is_bf16_supported()
    if device_type != "cpu" or not cpu_supports_bf16():
        return False
    try:  # a tiny conv under autocast: some builds accept the flag but do not run bf16
        with torch.inference_mode(), torch.autocast("cpu", dtype=torch.bfloat16):
            out = torch.nn.functional.conv2d(torch.ones(1, 1, 4, 4), torch.ones(1, 1, 3, 3))
        return out.dtype == torch.bfloat16
    except RuntimeError:
        return False


def amp_dtype(device: torch.device) -> torch.dtype | None:
    """The autocast dtype `--amp` uses on this device, or None where it would not help."""
    if device.type == "cuda":
        return torch.bfloat16 if bf16_available("cuda") else torch.float16
    return torch.bfloat16 if device.type == "cpu" and bf16_available("cpu") else None


def precision(device: torch.device | str, amp: bool) -> str:
    """The precision a run with `--amp` = amp actually computes in on `device`: "float32", "bfloat16" or "float16"."""
    dtype = amp_dtype(torch.device(device)) if amp else None
    return str(dtype).replace("torch.", "") if dtype else "float32"


def amp_notice(device: torch.device | str, amp: bool) -> str | None:
    """The one line to tell a user whose `--amp` cannot take effect here, or None."""
    device = torch.device(device)
    if not amp or amp_dtype(device) is not None:
        return None
    if device.type == "cpu":
        if onednn_isa_without_bf16():
            return (
                "--amp: ONEDNN_MAX_CPU_ISA holds oneDNN below its bfloat16 kernels, where it would emulate "
                "bf16 at about half of float32's speed: running in float32"
            )
        return (
            "--amp: this CPU has no native bfloat16 (AVX-512 BF16, AMX or Arm's BF16; oneDNN would emulate "
            "it at about half of float32's speed): running in float32"
        )
    return f"--amp: no mixed precision on {device.type}: running in float32"


def autocast(device: torch.device | str, enabled: bool):
    """Autocast context for `--amp` (a no-op when disabled or unhelpful on this device)."""
    device = torch.device(device)
    dtype = amp_dtype(device) if enabled else None
    if dtype is None:
        return contextlib.nullcontext()
    return torch.autocast(device.type, dtype=dtype)


def set_threads(threads: int | None = None) -> None:
    """torch's intra-op threads: `threads`, else one per core unless the user set OMP_NUM_THREADS."""
    if threads is not None:
        if threads < 1:
            raise ValueError(f"threads must be >= 1 (got {threads})")
        torch.set_num_threads(threads)
    elif "OMP_NUM_THREADS" not in os.environ:
        torch.set_num_threads(max(1, os.cpu_count() or 1))
