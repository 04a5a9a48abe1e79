"""ferkit.runtime.device: glibc keeps freed activation-sized blocks instead of faulting them in again (each
case in a fresh interpreter, since the setting is process-wide); --amp without native bf16; the CPU
description."""
from __future__ import annotations

import os
import platform
import subprocess
import sys

import pytest

glibc_only = pytest.mark.skipif(platform.libc_ver()[0] != "glibc", reason="the setting is glibc's")

# fer-resnet's forward pass on a batch of 64: its activations (up to 19 MB) are freed and
# allocated again at every layer; glibc's default faults their pages in again every time.
SCRIPT = """
import resource, torch
from ferkit.runtime.memory import keep_freed_memory
applied = keep_freed_memory()
from ferkit.models import build_model
model, x = build_model("fer-resnet", "softmax", 7).eval(), torch.randn(64, 1, 48, 48)
with torch.inference_mode():
    model(x), model(x)  # the heap grows to its peak
    f0 = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
    for _ in range(3):
        model(x)
print(applied, (resource.getrusage(resource.RUSAGE_SELF).ru_minflt - f0) // 3)
"""


def run(**env: str) -> tuple[bool, int]:
    clean = {k: v for k, v in os.environ.items()
             if k not in ("FERKIT_MALLOC", "MALLOC_MMAP_THRESHOLD_", "MALLOC_TRIM_THRESHOLD_", "GLIBC_TUNABLES")}
    out = subprocess.run([sys.executable, "-c", SCRIPT], env={**clean, **env}, capture_output=True, text=True,
                         check=True).stdout.split()
    return out[0] == "True", int(out[1])


@glibc_only
@pytest.mark.slow
def test_keeping_freed_memory_removes_the_page_faults():
    applied, kept = run()
    not_applied, default = run(FERKIT_MALLOC="default")
    assert applied and not not_applied
    assert default > 5000, f"glibc's default faulted only {default} pages per forward pass"
    assert kept < default / 10, f"{kept} page faults per forward pass with freed memory kept (default: {default})"


@glibc_only
@pytest.mark.slow
def test_the_users_own_malloc_settings_win():
    assert run(MALLOC_TRIM_THRESHOLD_="1000000")[0] is False
    assert run(GLIBC_TUNABLES="glibc.malloc.mmap_threshold=100000")[0] is False


def test_amp_without_native_bf16_says_once_that_it_runs_in_float32(tmp_path, monkeypatch, capsys):
    """FERKIT_CPU_BF16=0 makes ferkit treat the CPU as having no bf16 (as on an AVX2-only CPU): --amp
    then trains in float32, says so once, and config.json records the precision used."""
    import json

    from synth import make_image_folders

    from ferkit.cli import main
    from ferkit.runtime import device

    monkeypatch.setenv("FERKIT_CPU_BF16", "0")
    device.cpu_supports_bf16.cache_clear()
    device.bf16_available.cache_clear()
    try:
        assert device.amp_dtype(device.torch.device("cpu")) is None and device.precision("cpu", True) == "float32"
        data = make_image_folders(tmp_path / "fer", {s: {c: 2 for c in ["angry", "disgust", "fear", "happy", "neutral",
                                                                          "sad", "surprise"]} for s in ("train", "val", "test")})
        assert main(["train", "--data_root", str(data), "--epochs", "1", "--batch_size", "8", "--exp", "a",
                     "--runs_dir", str(tmp_path / "runs"), "--amp"]) == 0
    finally:
        device.cpu_supports_bf16.cache_clear()
        device.bf16_available.cache_clear()
    out = capsys.readouterr().out
    assert out.count("this CPU has no native bfloat16") == 1
    saved = json.loads((tmp_path / "runs" / "a" / "config.json").read_text())
    assert saved["amp"] is True and saved["run"]["precision"] == "float32"


def test_cpu_info_names_the_cpu_and_its_flags():
    from ferkit.runtime.cpu import CPU_FLAGS
    from ferkit.runtime.device import cpu_info, describe_cpu

    info = cpu_info()
    assert set(info["cpu_flags"]) <= set(CPU_FLAGS) and info["cpu_model"] and info["torch"]
    assert info["torch_capability"] in describe_cpu()


# /proc/cpuinfo as each CPU kind met so far reports it (the lines ferkit reads), the environment,
# and whether bfloat16 is native there. The tests give ferkit these instead of the machine's own.
AMX = "fpu sse4_2 avx avx2 fma avx512f avx512bw avx512_vnni avx512_bf16 avx512_fp16 amx_bf16 amx_tile amx_int8"
CPU_KINDS = {
    "AMX Xeon": ("model name\t: Intel(R) Xeon(R) Platinum 8488C\nflags\t\t: " + AMX, {}, True),
    "Zen 4 EPYC": ("model name\t: AMD EPYC 9R14 96-Core Processor\n"
                   "flags\t\t: fpu sse4_2 avx avx2 fma avx512f avx512bw avx512_vnni avx512_bf16", {}, True),
    "Ice Lake Xeon": ("model name\t: Intel(R) Xeon(R) Platinum 8375C CPU @ 2.90GHz\n"
                      "flags\t\t: fpu sse4_2 avx avx2 fma avx512f avx512bw avx512_vnni", {}, False),
    "AVX2-only EPYC": ("model name\t: AMD EPYC 7R13 Processor\nflags\t\t: fpu sse4_2 avx avx2 fma", {}, False),
    "AMX Xeon, oneDNN held to AVX2": ("model name\t: Intel(R) Xeon(R) Platinum 8488C\nflags\t\t: " + AMX,
                                      {"ONEDNN_MAX_CPU_ISA": "avx2"}, False),
    "AMX Xeon, oneDNN held to AVX-512 VNNI": ("model name\t: Intel(R) Xeon(R) Platinum 8488C\nflags\t\t: " + AMX,
                                              {"DNNL_MAX_CPU_ISA": "AVX512_CORE_VNNI"}, False),
    "AMX Xeon, oneDNN held to AVX-512 BF16": ("model name\t: Intel(R) Xeon(R) Platinum 8488C\nflags\t\t: " + AMX,
                                              {"ONEDNN_MAX_CPU_ISA": "AVX512_CORE_BF16"}, True),
    "Graviton 3 (Arm BF16)": ("processor\t: 0\nBogoMIPS\t: 2100.00\nFeatures\t: fp asimd evtstrm aes pmull sha1 sha2 "
                              "crc32 atomics fphp asimdhp cpuid asimdrdm jscvt fcma lrcpc dcpop sha3 asimddp sha512 sve "
                              "asimdfhm dit uscat ilrcpc flagm ssbs paca pacg dcpodp svei8mm svebf16 i8mm bf16 dgh rng\n"
                              "CPU implementer\t: 0x41\n", {}, True),
    "Graviton 2 (Arm, no BF16)": ("processor\t: 0\nBogoMIPS\t: 243.75\nFeatures\t: fp asimd evtstrm aes pmull sha1 "
                                  "sha2 crc32 atomics fphp asimdhp cpuid asimdrdm lrcpc dcpop asimddp ssbs\n", {}, False),
}


@pytest.fixture
def fake_cpu(tmp_path, monkeypatch):
    """A function that makes ferkit see the CPU whose /proc/cpuinfo is `text`, under `env`, whatever
    the real CPU is: oneDNN's probe says True (as it does on any AVX-512 CPU, Ice Lake included) and
    the caches are cleared before and after."""
    import torch

    from ferkit.runtime import cpu, device

    def clear() -> None:
        cpu.cpu_flags.cache_clear(), device.cpu_supports_bf16.cache_clear(), device.bf16_available.cache_clear()

    def use(text: str | None, env: dict[str, str]) -> None:
        for name in ("FERKIT_CPU_BF16", "FERKIT_CPU_AMX", "ONEDNN_MAX_CPU_ISA", "DNNL_MAX_CPU_ISA"):
            monkeypatch.delenv(name, raising=False)
        for name, value in env.items():
            monkeypatch.setenv(name, value)
        path = tmp_path / "cpuinfo"  # None: no /proc/cpuinfo, as on macOS and Windows
        path.unlink(missing_ok=True)
        if text is not None:
            path.write_text(text)
        monkeypatch.setattr(cpu, "CPUINFO", path)
        clear()

    monkeypatch.setattr(torch.backends.mkldnn, "is_available", lambda: True)
    monkeypatch.setattr(torch.ops.mkldnn, "_is_mkldnn_bf16_supported", lambda: True, raising=False)
    yield use
    clear()


@pytest.mark.parametrize("kind", list(CPU_KINDS))
def test_bf16_only_where_the_cpu_runs_it_natively(kind, fake_cpu, tmp_path):
    """Each CPU kind met so far: --amp computes in bfloat16 only with AVX-512 BF16, AMX or Arm's BF16
    (and oneDNN not held below them), else in float32 with one line that says so; the Predictor's
    bf16="auto" makes the same choice (on an Ice Lake Xeon oneDNN's probe says True, and float32 is
    still chosen: emulated bf16 ran at half of float32's speed there)."""
    import torch
    from test_infer import make_checkpoint

    from ferkit.infer import Predictor, predictor
    from ferkit.runtime.device import amp_dtype, amp_notice, cpu_supports_bf16, precision

    text, env, native = CPU_KINDS[kind]
    fake_cpu(text, env)
    assert cpu_supports_bf16() is native
    assert amp_dtype(torch.device("cpu")) == (torch.bfloat16 if native else None)
    assert precision("cpu", True) == ("bfloat16" if native else "float32") and precision("cpu", False) == "float32"
    notice = amp_notice("cpu", True)
    if native:
        assert notice is None
    else:
        assert notice.endswith("running in float32") and "\n" not in notice
        assert ("ONEDNN_MAX_CPU_ISA" in notice) == bool(env) and ("no native bfloat16" in notice) != bool(env)
    assert amp_notice("cpu", False) is None
    assert Predictor(make_checkpoint(tmp_path / "m.pt"), backend="torch", detect=False).runner.bf16 is native
    assert predictor.amx_in_torch() is (native and "amx_bf16" in text)  # else the int8 ONNX model is the faster


@pytest.mark.parametrize("cpuid, env, native", [
    ({"_is_avx512_bf16_supported": True}, {}, True),                             # Zen 4 or Ice Lake + BF16...
    ({"_is_amx_tile_supported": True}, {}, True),                                # an AMX Xeon
    ({}, {}, False),                                                             # Ice Lake, AVX2, Apple silicon
    ({"_is_amx_tile_supported": True}, {"ONEDNN_MAX_CPU_ISA": "AVX2"}, False),   # held below bf16
])
def test_without_proc_cpuinfo_the_cpuid_bits_decide(cpuid, env, native, fake_cpu, monkeypatch):
    """macOS and Windows have no /proc/cpuinfo: the AVX-512 BF16 and AMX bits that torch reads with
    CPUID decide (False on any other CPU: float32 is the safe choice)."""
    import torch

    from ferkit.runtime.device import cpu_supports_bf16

    for name in ("_is_avx512_bf16_supported", "_is_amx_tile_supported"):
        supported = cpuid.get(name, False)
        monkeypatch.setattr(torch.cpu, name, lambda value=supported: value, raising=False)
    fake_cpu(None, env)
    assert cpu_supports_bf16() is native


def test_ferkit_cpu_bf16_overrides_the_flags(fake_cpu):
    from ferkit.runtime.device import bf16_available, cpu_supports_bf16

    fake_cpu(CPU_KINDS["Ice Lake Xeon"][0], {"FERKIT_CPU_BF16": "1"})
    assert cpu_supports_bf16() and bf16_available("cpu")  # measuring emulated bf16 stays possible
    fake_cpu(CPU_KINDS["AMX Xeon"][0], {"FERKIT_CPU_BF16": "0"})
    assert not cpu_supports_bf16() and not bf16_available("cpu")
