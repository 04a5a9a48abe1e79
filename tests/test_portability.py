"""ferkit on an OS without Linux's facilities (Windows, macOS): no /proc/cpuinfo, no glibc's mallopt,
no load average. The main commands run in a fresh interpreter with those made unavailable, and the
CPU description falls back to what `platform` and torch say."""
from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
from synth import make_image_folders

# Run before ferkit is imported: reading /proc fails, glibc is not there, ctypes finds no C library
# of the process (`CDLL(None)`, where mallopt lives),
# os.getloadavg does not exist (as on Windows).
BLOCK = """
import builtins, ctypes, io, os, platform, sys
real_open = io.open
def no_proc(file, *a, **k):
    if str(file).startswith("/proc"):
        raise FileNotFoundError(2, "No such file or directory", str(file))
    return real_open(file, *a, **k)
io.open = builtins.open = no_proc
platform.libc_ver = lambda *a, **k: ("", "")
real_cdll = ctypes.CDLL
class no_libc(real_cdll):  # torch loads its own libraries by name; only the process's C library is missing
    def __init__(self, name, *a, **k):
        if name is None:
            raise OSError("no C library")
        super().__init__(name, *a, **k)
ctypes.CDLL = no_libc
if hasattr(os, "getloadavg"):
    del os.getloadavg
from ferkit.cli import main
sys.exit(main(sys.argv[1:]))
"""


def ferkit(*args: str, cwd: Path) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-c", BLOCK, *args], cwd=cwd, capture_output=True, text=True)


@pytest.mark.slow
def test_main_commands_run_without_linux_facilities(tmp_path):
    data = make_image_folders(tmp_path / "fer", {s: {c: 3 for c in ["angry", "disgust", "fear", "happy", "neutral",
                                                                      "sad", "surprise"]} for s in ("train", "val", "test")})
    runs = tmp_path / "runs"
    r = ferkit("train", "--data_root", str(data), "--epochs", "1", "--batch_size", "8", "--exp", "x",
               "--runs_dir", str(runs), "--amp", cwd=tmp_path)
    assert r.returncode == 0, r.stderr
    run = json.loads((runs / "x" / "config.json").read_text())["run"]
    assert run["precision"] in ("float32", "bfloat16") and "torch kernels" in run["machine"]
    r = ferkit("eval", str(runs / "x" / "best.pt"), "--data_root", str(data), "--out", str(tmp_path / "ev"), cwd=tmp_path)
    assert r.returncode == 0, r.stderr
    assert (tmp_path / "ev" / "metrics.json").is_file()
    face = next((data / "test" / "happy").iterdir())
    r = ferkit("predict", str(face), "--no-detect", "--ckpt", str(runs / "x" / "best.pt"), "--out",
               str(tmp_path / "p.jsonl"), cwd=tmp_path)
    assert r.returncode == 0, r.stderr
    assert json.loads((tmp_path / "p.jsonl").read_text().splitlines()[0])["faces"] == 1
    assert ferkit("models", cwd=tmp_path).returncode == 0


def test_cpu_description_without_proc_cpuinfo():
    code = BLOCK.split("from ferkit.cli")[0] + (
        "from ferkit.runtime.device import cpu_info\nfrom ferkit.runtime.memory import keep_freed_memory\n"
        "import json; print(json.dumps([cpu_info(), keep_freed_memory()]))\n")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    info, applied = json.loads(out)
    assert info["cpu_flags"] == [] and info["cpu_model"] and info["torch_capability"]
    assert applied is False  # no glibc: the malloc setting is skipped, not an error
