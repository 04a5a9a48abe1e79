"""Time to quality: a training recipe run end to end on this CPU, timed, with its test figures.

    python bench/time_to_quality.py --recipe fast --seed 42                  # the fast recipe as --preset fast picks it here
    python bench/time_to_quality.py --recipe fast-bf16 --kernels avx2 --seed 42   # as on an AVX2-only CPU (float32)
    python bench/time_to_quality.py --recipe shipped --max-epochs 2          # the shipped recipe's first epochs, projected

Each run is `ferkit train` with the recipe's flags (`ferkit.presets.RECIPES`), alone in its own
process, timed by the wall clock from start to the last test figure (data loading, every epoch,
val every epoch, the final val and test with the recipe's TTA). `--kernels avx2` holds PyTorch to
its AVX2 kernels (ATEN_CPU_CAPABILITY=avx2) and oneDNN to AVX2 (ONEDNN_MAX_CPU_ISA=AVX2), which
also turns bfloat16 off (`ferkit.runtime.cpu.onednn_isa_without_bf16`): what an AVX2-only CPU runs.
`--max-epochs N` stops after N epochs and projects the whole run from their mean epoch time (the
first, warm-up-heavy epoch is left out when there are two or more).
Each seed is added to bench/results/time_to_quality-<cpu>[-avx2-kernels].json under its recipe,
so seeds run one after the other (never side by side: the times must be honest) and a finished
seed is skipped.
"""
from __future__ import annotations

import argparse
import csv
import datetime
import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
from benchio import cpu_tag, fer_zip, save_report  # noqa: E402

KERNELS = {"native": {}, "avx2": {"ATEN_CPU_CAPABILITY": "avx2", "ONEDNN_MAX_CPU_ISA": "AVX2"}}


def recipe_flags(name: str) -> tuple[str, dict]:
    """The recipe's resolved name and RunConfig fields ("fast" resolves by this process's CPU)."""
    from ferkit.presets import RECIPES, resolve_recipe
    resolved = resolve_recipe(name)
    return resolved, RECIPES[resolved]


def flags(fields: dict) -> list[str]:
    out = []
    for k, v in fields.items():
        if v is True:
            out.append(f"--{k}")
        elif v is not False and v is not None:
            out += [f"--{k}", str(v)]
    return out


def epochs_csv(path: Path) -> list[dict]:
    if not path.is_file():
        return []
    with open(path, newline="") as f:
        return list(csv.DictReader(f))


def run_one(recipe: str, fields: dict, seed: int, data: str, runs: Path, env: dict, max_epochs: int | None) -> dict:
    """Train once, timed; with max_epochs, stop after that many epochs and project the rest."""
    exp = f"{recipe}_seed{seed}"
    run_dir = runs / exp
    if run_dir.exists():
        shutil.rmtree(run_dir)  # a bench run folder of its own (never a user's run): an interrupted one restarts
    cmd = [sys.executable, "-m", "ferkit", "train", "--data_root", data, *flags(fields), "--seed", str(seed),
           "--exp", exp, "--runs_dir", str(runs)]
    runs.mkdir(parents=True, exist_ok=True)
    log = open(runs / f"{exp}.stderr", "w")  # a file, not a pipe: a full pipe would stop the run (progress bars)
    t0 = time.time()
    proc = subprocess.Popen(cmd, env=os.environ | env, stdout=subprocess.DEVNULL, stderr=log)
    while proc.poll() is None:
        time.sleep(2)
        if max_epochs and len(epochs_csv(run_dir / "epochs.csv")) >= max_epochs:
            proc.terminate()
            proc.wait()
            break
    wall = time.time() - t0
    log.close()
    rows = epochs_csv(run_dir / "epochs.csv")
    if proc.returncode not in (0, None) and not (max_epochs and len(rows) >= max_epochs):
        tail = (runs / f"{exp}.stderr").read_text()[-2000:]
        raise SystemExit(f"ferkit train failed (exit {proc.returncode}): {tail}")
    config = json.loads((run_dir / "config.json").read_text())
    out = {"seed": seed, "command": " ".join(cmd[2:]), "precision": config["run"]["precision"],
           "machine": config["run"]["machine"], "epochs_run": len(rows),
           "epoch_seconds": [float(r["seconds"]) for r in rows],
           "train_img_per_s": [round(float(r["train_img_per_s"])) for r in rows], "load_avg_end": os.getloadavg()}
    if max_epochs:
        timed = out["epoch_seconds"][1:] if len(rows) >= 2 else out["epoch_seconds"]
        out["projected_epochs_s"] = round(sum(timed) / len(timed) * fields["epochs"], 1)
        out["measured_wall_s"] = round(wall, 1)
    else:
        test, val = json.loads((run_dir / "metrics.json").read_text()), json.loads((run_dir / "metrics_val.json").read_text())
        out |= {"wall_s": round(wall, 1), "epochs_s": round(sum(out["epoch_seconds"]), 1),
                "val_macro_f1": round(val["macro_f1"], 4), "test_macro_f1": round(test["macro_f1"], 4),
                "test_accuracy": round(test["accuracy"], 4)}
    return out


def main(argv: list[str] | None = None) -> dict:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--recipe", required=True, help="fast (picked by the CPU), fast-bf16, fast-fp32 or shipped")
    p.add_argument("--seed", type=int, nargs="+", default=[42], help="seeds, run one after the other (42)")
    p.add_argument("--kernels", choices=sorted(KERNELS), default="native", help="native, or avx2: as an AVX2-only CPU")
    p.add_argument("--max-epochs", type=int, help="stop after N epochs and project the whole run")
    p.add_argument("--data", default=str(fer_zip()), help="FER-2013 (default: the shared zip)")
    p.add_argument("--runs", default="runs/time_to_quality", help="where the runs go (runs/time_to_quality)")
    p.add_argument("--out", help="the JSON report (default bench/results/time_to_quality-<cpu>[-avx2-kernels].json)")
    args = p.parse_args(argv)
    env = KERNELS[args.kernels]
    os.environ.update(env)  # so that "fast" resolves as the trained process will see the CPU
    from ferkit.runtime.device import cpu_info
    machine = cpu_info() | {"kernel_env": env}
    recipe, fields = recipe_flags(args.recipe)
    suffix = "-avx2-kernels" if args.kernels == "avx2" else ""
    out = Path(args.out) if args.out else HERE / "results" / f"time_to_quality-{cpu_tag(machine)}{suffix}.json"
    report = json.loads(out.read_text()) if out.is_file() else {"machine": machine, "recipes": {}}
    key = recipe + (f" (first {args.max_epochs} epochs)" if args.max_epochs else "")
    entry = report["recipes"].setdefault(key, {"fields": fields, "runs": {}})
    for seed in args.seed:
        if str(seed) in entry["runs"]:
            print(f"{key} seed {seed}: done before, skipped")
            continue
        print(f"{key} seed {seed} ...", flush=True)
        entry["runs"][str(seed)] = run_one(recipe, fields, seed, args.data, Path(args.runs), env, args.max_epochs)
        entry["runs"][str(seed)]["date"] = datetime.datetime.now().astimezone().isoformat(timespec="seconds")
        print(json.dumps({k: v for k, v in entry["runs"][str(seed)].items() if k not in ("epoch_seconds", "train_img_per_s")}), flush=True)
        save_report(report, out)  # after every seed: a stopped session keeps what finished
    return report


if __name__ == "__main__":
    main()
