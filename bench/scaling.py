"""Speed-up of scaling out on this machine: a 4-run sweep with 1 worker and with 2 (local processes,
and Ray when it is installed), and one training run in 1 process and in 2 DDP processes.

    python bench/scaling.py                 # -> bench/results/scaling-<cpu>.json
    python bench/scaling.py --epochs 1      # a smoke run

The data is synthetic (7 classes x 150 train images, made here), so only the timing means anything.
The data is decoded and cached before anything is timed. Run it on an idle machine: on a busy one a
run with 2 threads waits for its own threads (docs/PERFORMANCE.md), which is not what is measured here.
Every variant runs the same runs from scratch in fresh folders, one after the other; wall-clock
seconds include each run's start-up (imports, reading the data), as a user's sweep would.
"""
from __future__ import annotations

import argparse
import importlib.util
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
sys.path.insert(0, str(HERE.parent / "tests"))
from benchio import cpu_tag, save_report  # noqa: E402
from synth import CLASSES, make_image_folders  # noqa: E402


def sweep_file(path: Path, data: Path, runs: Path, epochs: int) -> Path:
    path.write_text(f'seeds = [1, 2]\n[base]\ndata_root = "{data}"\nruns_dir = "{runs}"\narch = "seed-cnn-half"\n'
                    f'epochs = {epochs}\nbatch_size = 64\n[strategies.E0]\npreset = "E0"\n[strategies.E5]\npreset = "E5"\n')
    return path


def timed(cmd: list[str], env: dict | None = None) -> float:
    start = time.perf_counter()
    r = subprocess.run(cmd, env=env, capture_output=True, text=True)
    if r.returncode != 0:
        raise SystemExit(f"{' '.join(cmd)} failed: {r.stderr[-2000:]}")
    return time.perf_counter() - start


def main(argv: list[str] | None = None) -> dict:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--epochs", type=int, default=3)
    ap.add_argument("--out")
    args = ap.parse_args(argv)
    from ferkit.runtime.device import cpu_info

    tmp = Path(tempfile.mkdtemp(prefix="ferkit-scaling-"))
    data = make_image_folders(tmp / "fer", {s: {c: (150 if s == "train" else 20) for c in CLASSES}
                                            for s in ("train", "val", "test")})
    from ferkit.data import load_data
    load_data(str(data), log=lambda m: None)  # decode and cache the store now, so no variant pays for it
    py = [sys.executable, "-m", "ferkit"]
    rows = {}
    variants = [("local, 1 at a time", ["--jobs", "1"]), ("local, 2 at a time", ["--jobs", "2"])]
    if importlib.util.find_spec("ray"):
        # a local Ray of this machine's 2 CPUs: 2 CPUs per run = 1 at a time, 1 CPU per run = 2 at a time
        variants += [("ray, 1 at a time (2 CPUs per run)", ["--backend", "ray", "--cpus-per-run", "2"]),
                     ("ray, 2 at a time (1 CPU per run)", ["--backend", "ray", "--cpus-per-run", "1"])]
    for k, (name, flags) in enumerate(variants):
        f = sweep_file(tmp / f"sweep{k}.toml", data, tmp / f"runs{k}", args.epochs)
        rows[name] = timed(py + ["sweep", str(f), *flags])
        print(f"sweep of 4 runs, {name}: {rows[name]:.1f} s")
    train = py + ["train", "--data_root", str(data), "--arch", "seed-cnn-half", "--epochs", str(args.epochs),
                  "--batch_size", "64", "--seed", "1"]
    ddp = {"1 process, 2 threads": timed(train + ["--runs_dir", str(tmp / "t1"), "--exp", "one"]),
           "2 DDP processes, 1 thread each": timed(train + ["--runs_dir", str(tmp / "t2"), "--exp", "two", "--nproc", "2"],
                                                   os.environ | {"OMP_NUM_THREADS": "1"})}
    for name, s in ddp.items():
        print(f"one training run, {name}: {s:.1f} s")
    report = {"machine": cpu_info(), "command": " ".join(["python", "bench/scaling.py"] + (argv or sys.argv[1:])),
              "epochs": args.epochs, "load_average": os.getloadavg(), "sweep_4_runs_s": rows, "train_one_run_s": ddp,
              "sweep_speedup_local": rows["local, 1 at a time"] / rows["local, 2 at a time"],
              "ddp_speedup": ddp["1 process, 2 threads"] / ddp["2 DDP processes, 1 thread each"]}
    if "ray, 2 at a time (1 CPU per run)" in rows:
        report["sweep_speedup_ray"] = rows["ray, 1 at a time (2 CPUs per run)"] / rows["ray, 2 at a time (1 CPU per run)"]
    print(json.dumps({k: round(v, 2) for k, v in report.items() if k.endswith("speedup") or "speedup_" in k}))
    save_report(report, args.out or HERE / "results" / f"scaling-{cpu_tag(report['machine'])}.json")
    return report


if __name__ == "__main__":
    main()
