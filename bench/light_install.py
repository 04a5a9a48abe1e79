"""The inference install without torch: `pip install '.[infer]'` into a fresh venv, its size, and
the time from a cold `ferkit predict` (and a cold `Predictor`) to the first prediction, next to the
same command in the full install this script runs in (torch backend: what every command cost before
the split).

    python bench/light_install.py                      # writes bench/results/light_install-<cpu>.json
    python bench/light_install.py --venv /tmp/lv       # keep the venv there (default: a temporary one)

It installs from the package index pip is configured with (on this machine a local mirror). The
size counts the venv's site-packages without pip itself; torch's own folders in the full install are
given for comparison. Each first prediction is the best of `--repeats` fresh processes.
"""
from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from benchio import ROOT, cpu_tag, save_report

PREDICT_CODE = ("import numpy as np\nfrom ferkit import Predictor\n"
                "faces = Predictor(detect=False).predict(np.full((48, 48), 128, np.uint8))[0]\n"
                "import json, sys\nprint(json.dumps({'label': faces[0]['label'], 'torch': 'torch' in sys.modules}))")


def folder_mb(path: Path) -> float:
    """Size of the files under `path` in MB (10^6 bytes), links not followed."""
    return sum(f.stat().st_size for f in path.rglob("*") if f.is_file() and not f.is_symlink()) / 1e6


def site_packages(python: Path) -> Path:
    out = subprocess.run([str(python), "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
                         capture_output=True, text=True, check=True)
    return Path(out.stdout.strip())


def make_light_venv(venv: Path, root: Path = ROOT) -> dict:
    """A fresh venv with `ferkit[infer]` installed from `root` (not editable); returns timings and sizes."""
    t0 = time.perf_counter()
    subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True)
    t1 = time.perf_counter()
    r = subprocess.run([str(venv / "bin" / "python"), "-m", "pip", "install", "-q", f"{root}[infer]"],
                       capture_output=True, text=True)
    if r.returncode != 0:
        raise RuntimeError(f"pip install {root}[infer] failed:\n{r.stderr[-2000:]}")
    t2 = time.perf_counter()
    site = site_packages(venv / "bin" / "python")
    listed = subprocess.run([str(venv / "bin" / "python"), "-m", "pip", "list", "--format", "json"],
                            capture_output=True, text=True, check=True).stdout
    packages = sorted(p["name"].lower() for p in json.loads(listed))
    pip_mb = sum(folder_mb(p) for p in site.glob("pip*"))
    return {"venv_s": round(t1 - t0, 2), "install_s": round(t2 - t1, 2), "packages": packages,
            "site_packages_mb": round(folder_mb(site) - pip_mb, 1), "torch_installed": "torch" in packages}


def first_prediction(python: Path, ferkit: Path, workdir: Path, repeats: int) -> dict:
    """Best-of-`repeats` wall time of a fresh `ferkit predict face.png --no-detect` and of a fresh
    Python process that builds a `Predictor` and predicts one face."""
    from PIL import Image

    workdir.mkdir(parents=True, exist_ok=True)
    Image.new("L", (48, 48), 128).save(workdir / "face.png")
    cli, api, result = [], [], {}
    for _ in range(repeats):
        t0 = time.perf_counter()
        r = subprocess.run([str(ferkit), "predict", "face.png", "--no-detect", "--quiet"], cwd=workdir,
                           capture_output=True, text=True)
        cli.append(time.perf_counter() - t0)
        if r.returncode != 0:
            raise RuntimeError(f"ferkit predict failed: {r.stderr.strip()}")
        t0 = time.perf_counter()
        r = subprocess.run([str(python), "-c", PREDICT_CODE], cwd=workdir, capture_output=True, text=True, check=True)
        api.append(time.perf_counter() - t0)
        result = json.loads(r.stdout.splitlines()[-1])
    return {"cli_first_prediction_s": round(min(cli), 3), "api_first_prediction_s": round(min(api), 3),
            "label": result["label"], "imported_torch": result["torch"]}


def full_install(workdir: Path, repeats: int) -> dict:
    """The same first prediction in the environment this script runs in (torch installed), on the
    torch backend, and the size of torch's folders there."""
    ferkit = Path(sys.executable).parent / "ferkit"
    workdir.mkdir(parents=True, exist_ok=True)
    from PIL import Image

    Image.new("L", (48, 48), 128).save(workdir / "face.png")
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        subprocess.run([str(ferkit), "predict", "face.png", "--no-detect", "--quiet", "--backend", "torch"],
                       cwd=workdir, capture_output=True, text=True, check=True)
        times.append(time.perf_counter() - t0)
    import torch

    torch_dir = Path(torch.__file__).parent
    extra = [p for p in torch_dir.parent.glob("nvidia*")] + [p for p in torch_dir.parent.glob("triton*")]
    return {"cli_first_prediction_s": round(min(times), 3),
            "torch_mb": round(folder_mb(torch_dir) + sum(folder_mb(p) for p in extra), 1), "torch": torch.__version__}


def main(argv: list[str] | None = None) -> dict:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--venv", help="make the venv here (kept); default: a temporary folder, removed after")
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--no-full", action="store_true", help="skip the full-install comparison")
    ap.add_argument("--out", help="report path (default bench/results/light_install-<cpu>.json)")
    args = ap.parse_args(argv)
    tmp = Path(tempfile.mkdtemp(prefix="ferkit-light-"))
    venv = Path(args.venv) if args.venv else tmp / "venv"
    try:
        light = make_light_venv(venv)
        light |= first_prediction(venv / "bin" / "python", venv / "bin" / "ferkit", tmp / "work", args.repeats)
        report = {"light": light}
        if not args.no_full:
            report["full"] = full_install(tmp / "work-full", args.repeats)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    from ferkit.runtime.device import cpu_info

    report["machine"] = cpu_info()
    report["command"] = "python bench/light_install.py " + " ".join(argv if argv is not None else sys.argv[1:])
    print(json.dumps({k: v for k, v in report.items() if k != "machine"}, indent=1))
    out = args.out or ROOT / "bench" / "results" / f"light_install-{cpu_tag(report['machine'])}.json"
    save_report(report, out)
    return report


if __name__ == "__main__":
    os.environ.setdefault("PIP_DISABLE_PIP_VERSION_CHECK", "1")
    main()
