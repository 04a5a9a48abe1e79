"""How many test predictions of the shipped models change with precision, thread count and CPU kernels.

    python bench/precision.py                     # every setting this CPU can run, on ../shared/data/fer2013.zip
    python bench/precision.py --settings fp32 fp32-avx2

Each setting runs in a fresh process (the kernels are chosen when torch starts) and predicts the
3,589 test images of every shipped model with the model's card TTA. The settings:

- fp32: float32, all threads (the cards' reference precision);
- fp32-1thread: float32 on one thread (another order of the convolutions' sums);
- fp32-avx2: float32 with oneDNN and ATen held to their AVX2 kernels (ONEDNN_MAX_CPU_ISA=AVX2,
  ATEN_CPU_CAPABILITY=avx2), close to, not the same as, a CPU that has only AVX2;
- bf16: bfloat16 autocast, where the CPU runs it natively.

It prints, per model and setting, the predictions that differ from fp32 on this CPU and from the
card's own predictions, and writes bench/results/precision-<cpu>.json with every setting's
predicted classes, so that a run on another CPU can be compared with this one (`--compare FILE`).
The card tolerance (`ferkit.pretrained.CARD_TOLERANCE`) is justified by these counts.
"""
from __future__ import annotations

import argparse
import json
import os
import re
import subprocess
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from benchio import save_report  # noqa: E402

HERE = Path(__file__).resolve().parent
DEFAULT_ZIP = HERE.parent.parent / "shared" / "data" / "fer2013.zip"
AVX2_ENV = {"ONEDNN_MAX_CPU_ISA": "AVX2", "ATEN_CPU_CAPABILITY": "avx2", "FERKIT_CPU_BF16": "0"}
SETTINGS = {  # name -> (environment, amp)
    "fp32": ({}, False),
    "fp32-1thread": ({"OMP_NUM_THREADS": "1"}, False),
    "fp32-avx2": (AVX2_ENV, False),
    "bf16": ({}, True),
}


def predict_all(data_root: str, amp: bool) -> dict:
    """{model file: {"pred": digits, "cpu": ...}} for every shipped model, in this process's settings."""
    import torch

    from ferkit.data import load_data
    from ferkit.runtime.device import cpu_info, precision, set_threads
    from ferkit.pretrained import shipped_models, test_predictions

    set_threads()
    data = load_data(data_root, log=lambda s: None)
    out = {"cpu": cpu_info(), "precision": precision("cpu", amp), "models": {}}
    for path in shipped_models():
        out["models"][path.name] = test_predictions(path, data, amp)
    out["threads"] = torch.get_num_threads()
    return out


def main(argv: list[str] | None = None) -> dict:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--data", default=str(DEFAULT_ZIP), help="FER-2013 zip or folder")
    ap.add_argument("--settings", nargs="+", choices=list(SETTINGS), help="default: every setting this CPU can run")
    ap.add_argument("--compare", nargs="*", default=[], help="precision-*.json files from other CPUs to compare with")
    ap.add_argument("--out", help="JSON output (default bench/results/precision-<cpu>.json)")
    ap.add_argument("--role-amp", help=argparse.SUPPRESS)
    args = ap.parse_args(argv)
    if args.role_amp is not None:  # a measurement subprocess
        print(json.dumps(predict_all(args.data, args.role_amp == "1")))
        return {}
    if not Path(args.data).exists():
        raise SystemExit(f"no data at {args.data}: give the FER-2013 zip with --data")
    from ferkit.runtime.device import cpu_info, cpu_supports_bf16
    from ferkit.pretrained import card_predictions, changed_predictions as differ, shipped_models
    names = args.settings or [s for s in SETTINGS if s != "bf16" or cpu_supports_bf16()]
    runs = {}
    for name in names:
        env, amp = SETTINGS[name]
        print(f"measuring {name} ...", flush=True)
        proc = subprocess.run([sys.executable, __file__, "--data", args.data, "--role-amp", str(int(amp))],
                              env={**os.environ, **env}, capture_output=True, text=True)
        if proc.returncode != 0:
            raise SystemExit(f"setting {name} failed:\n" + "\n".join(proc.stderr.splitlines()[-10:]))
        runs[name] = json.loads(proc.stdout.splitlines()[-1])
    others = {Path(f).stem: json.loads(Path(f).read_text()) for f in args.compare}
    print(f"\nchanged test predictions of {3589} (vs fp32 on this CPU / vs the card's own predictions):")
    table = {}
    for path in shipped_models():
        card = card_predictions(path)
        base = runs.get("fp32", next(iter(runs.values())))["models"][path.name]["pred"]
        row = {}
        for name, r in runs.items():
            pred = r["models"][path.name]["pred"]
            row[name] = {"vs_fp32_here": differ(pred, base), "vs_card": differ(pred, card), "precision": r["precision"],
                         "torch_capability": r["cpu"]["torch_capability"], "threads": r["threads"]}
        for other, o in others.items():
            for name, r in o["runs"].items():
                pred = r["models"].get(path.name, {}).get("pred")
                if pred:
                    row[f"{other}:{name}"] = {"vs_fp32_here": differ(pred, base), "vs_card": differ(pred, card),
                                              "precision": r["precision"], "cpu": r["cpu"]["cpu_model"]}
        table[path.name] = row
        print(f"  {path.name}")
        for name, c in row.items():
            print(f"    {name:<40}{c['precision']:>10}{c['vs_fp32_here']:>6}{c['vs_card']:>6}")
    info = cpu_info()
    report = {"machine": info, "command": " ".join(["python", "bench/precision.py"] + (argv if argv is not None else sys.argv[1:])),
              "changed_predictions": table, "runs": runs}
    slug = re.sub(r"[^a-z0-9]+", "-", f"{info['cpu_model']} {info['torch_capability']}".lower()).strip("-")
    save_report(report, Path(args.out) if args.out else HERE / "results" / f"precision-{slug}.json", indent=1)
    return report


if __name__ == "__main__":
    main()
