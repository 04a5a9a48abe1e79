"""glibc's default malloc against `ferkit.runtime.memory.keep_freed_memory`, on a training step and on
inference: speed and page faults, each measured in a fresh process, the two settings in turns.

    python bench/malloc.py                     # 5 rounds, about 3 minutes on a 2-core CPU
    python bench/malloc.py --rounds 2 --quick  # a smoke run

The setting is process-wide and cannot be undone inside a process (freed memory that glibc kept
stays kept), so every measurement runs in its own subprocess: `FERKIT_MALLOC=default` there
leaves glibc's behaviour alone. Rounds alternate the two settings so a slow spell of the
machine hits both. Page faults (`ru_minflt` over the timed part) do not depend on the machine's
speed; they show what the setting changes. Writes bench/results/malloc.json.
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import statistics
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
SETTINGS = ("default", "kept")


def faults() -> int:
    return resource.getrusage(resource.RUSAGE_SELF).ru_minflt


def timed(fn, calls: int, repeats: int) -> tuple[float, float]:
    """Fastest of `repeats` timings of `calls` calls of fn (seconds per call), and page faults per call."""
    best, f0 = float("inf"), faults()
    for _ in range(repeats):
        start = time.perf_counter()
        for _ in range(calls):
            fn()
        best = min(best, (time.perf_counter() - start) / calls)
    return best, (faults() - f0) / (calls * repeats)


def child(workload: str, quick: bool) -> dict:
    """Run one workload in this process (the setting was chosen by the parent's environment)."""
    from ferkit.runtime.memory import keep_freed_memory

    kept = keep_freed_memory()
    repeats = 2 if quick else 4
    if workload == "train":
        sys.path.insert(0, str(ROOT / "bench"))
        from train_step import make_step

        batch = 128
        step = make_step("fer-resnet-fast16", batch, False, 48)
        s, f = timed(step, 2 if quick else 5, repeats)
        return {"kept": kept, "train_img_per_s": batch / s, "train_faults_per_step": f}
    import numpy as np

    from ferkit.infer import Predictor

    # The shipped model in torch, whose allocations this measures (auto may pick ONNX Runtime); the
    # Predictor calls keep_freed_memory() itself, a no-op with FERKIT_MALLOC=default.
    p = Predictor(backend="torch", tta="none")
    crops = np.random.default_rng(0).integers(0, 256, (512, 48, 48), dtype=np.uint8)
    for _ in range(2):
        p.predict_crops(crops)
    s, f = timed(lambda: p.predict_crops(crops), 1, repeats)
    one, f1 = timed(lambda: [p.predict_crops(c[None]) for c in crops[:50]], 1, repeats)
    return {"kept": kept, "batched_faces_per_s": len(crops) / s, "batched_faults_per_512": f,
            "single_faces_per_s": 50 / one, "single_faults_per_50": f1}


def run_child(workload: str, setting: str, quick: bool) -> dict:
    env = dict(os.environ, FERKIT_MALLOC=setting)
    cmd = [sys.executable, __file__, "--child", workload] + (["--quick"] if quick else [])
    out = subprocess.run(cmd, env=env, capture_output=True, text=True, check=True).stdout
    return json.loads(out.strip().splitlines()[-1])


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--rounds", type=int, default=5)
    ap.add_argument("--workloads", nargs="+", default=["train", "predict"], choices=["train", "predict"])
    ap.add_argument("--quick", action="store_true", help="fewer timed calls (a smoke run)")
    ap.add_argument("--child", choices=["train", "predict"], help=argparse.SUPPRESS)
    ap.add_argument("--out", default=str(ROOT / "bench" / "results" / "malloc.json"))
    args = ap.parse_args()
    if args.child:
        print(json.dumps(child(args.child, args.quick)))
        return
    rounds = []
    for r in range(args.rounds):
        row = {s: {} for s in SETTINGS}
        for workload in args.workloads:
            for setting in SETTINGS if r % 2 == 0 else SETTINGS[::-1]:
                row[setting].update(run_child(workload, setting, args.quick))
        rounds.append(row)
        print(f"round {r + 1}/{args.rounds}: " + json.dumps(row), flush=True)
    metrics = [k for k in rounds[0]["default"] if k != "kept"]
    summary = {}
    print(f"\n{'median over ' + str(len(rounds)) + ' rounds':<28}{'default':>10}{'kept':>10}{'ratio':>8}")
    for m in metrics:
        d = statistics.median(row["default"][m] for row in rounds)
        k = statistics.median(row["kept"][m] for row in rounds)
        per_round = [row["kept"][m] / row["default"][m] for row in rounds if row["default"][m]]
        summary[m] = {"default": d, "kept": k, "kept_over_default_per_round": per_round}
        print(f"{m:<28}{d:>10.0f}{k:>10.0f}{(k / d if d else float('nan')):>8.2f}")
    applied = all(row["kept"]["kept"] and not row["default"]["kept"] for row in rounds)
    from ferkit.runtime.device import cpu_info
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps({
        "date": time.strftime("%Y-%m-%d %H:%M"), "python": platform.python_version(), "machine": cpu_info(),
        "load_average": os.getloadavg(), "setting_applied": applied, "summary": summary, "rounds": rounds}, indent=2))
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
