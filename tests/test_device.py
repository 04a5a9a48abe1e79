"""ferkit.device: glibc keeps freed activation-sized blocks instead of faulting them in again (each
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
from ferkit.memory import keep_freed_memory
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

    from ferkit import device
    from ferkit.cli import main
    from synth import make_image_folders

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
    from ferkit.cpu import CPU_FLAGS
    from ferkit.device import cpu_info, describe_cpu

    info = cpu_info()
    assert set(info["cpu_flags"]) <= set(CPU_FLAGS) and info["cpu_model"] and info["torch"]
    assert info["torch_capability"] in describe_cpu()
