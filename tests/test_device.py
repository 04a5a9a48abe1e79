"""ferkit.device.keep_freed_memory: glibc keeps freed activation-sized blocks instead of faulting
them in again. Each case runs in a fresh interpreter, since the setting is process-wide."""
from __future__ import annotations

import os
import platform
import subprocess
import sys

import pytest

pytestmark = pytest.mark.skipif(platform.libc_ver()[0] != "glibc", reason="the setting is glibc's")

# fer-resnet's forward pass on a batch of 64: its activations (up to 19 MB) are freed and
# allocated again at every layer; glibc's default faults their pages in again every time.
SCRIPT = """
import resource, torch
from ferkit.device import keep_freed_memory
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


def test_keeping_freed_memory_removes_the_page_faults():
    applied, kept = run()
    not_applied, default = run(FERKIT_MALLOC="default")
    assert applied and not not_applied
    assert default > 5000, f"glibc's default faulted only {default} pages per forward pass"
    assert kept < default / 10, f"{kept} page faults per forward pass with freed memory kept (default: {default})"


def test_the_users_own_malloc_settings_win():
    assert run(MALLOC_TRIM_THRESHOLD_="1000000")[0] is False
    assert run(GLIBC_TUNABLES="glibc.malloc.mmap_threshold=100000")[0] is False
