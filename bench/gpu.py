"""The GPU path, run for real in one script under a time budget (issues 26 and 27).

    python bench/gpu.py --data DATA                        # on one GPU: at most 7.5 minutes (--budget)
    python bench/gpu.py --data DATA --tiny --device cpu    # a tiny setting that runs anywhere (tests/test_bench.py)

DATA is FER-2013 as ferkit reads it (zip, image folders, fer2013.csv or a store). The steps:
1. `bench/throughput.py --quick`, alone on the machine so that its timings are its own: ferkit's
   training and evaluation on CUDA in float32, bf16 and fp16 autocast, channels-last and not,
   with the reference pipeline (on the CPU) for the ratio;
2. then side by side:
   - the reference project's own budget (results/reference_budget.toml's E0 and E5: seed-cnn,
     Adam lr 1e-3, batch 256, 30 epochs, seeds 1-3), then `ferkit summary` pairing E5 with E0;
   - `ferkit quickstart` (the shipped models on test, on CUDA);
   - a one-GPU torchrun run (`ferkit train --nproc 1`, E5, 3 epochs);
   - the distillation teachers of issue 27 (TEACHERS below; never shipped);
3. then the students of issue 27 (STUDENTS below: the shipped recipe, single view, distilled from the
   T-wide teachers just trained, run as an ensemble on each student batch: on a CPU an online
   teacher gained 0.031 val macro-F1 over its stored logits, docs/RESULTS.md).
Steps still running at --budget seconds are stopped and marked so (their last.pt can be resumed).
Runs go under --runs (default runs/gpu); the JSON (per step: command, exit status, seconds; per
run: val and test figures; the E5 - E0 pairs) goes to --out (default bench/results/gpu-<device>.json).
`--pack DIR` then writes what a GPU session brings back: results.tar.gz (every run folder without
checkpoints or TensorBoard files) and each teacher's and student's best.pt with float16 weights.
"""
from __future__ import annotations

import argparse
import datetime
import json
import os
import subprocess
import sys
import tarfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
from benchio import save_report  # noqa: E402

REFERENCE = {"arch": "seed-cnn", "epochs": 30, "batch_size": 256, "lr": 0.001, "amp": True}  # results/reference_budget.toml
TEACHER_BASE = {"preset": "E5", "batch_size": 128, "optimizer": "adamw", "lr": 0.001, "weight_decay": 0.05,
                "warmup_epochs": 2, "amp": True, "scale_jitter": 0.1, "translate": 0.1, "erase_p": 0.25}
TEACHERS = {  # name -> settings; 3 seeds each. Longer schedules and stronger regularisation than the shipped 30 epochs
    "T-wide": {"arch": "fer-resnet-wide", "epochs": 60, "mixup": 0.2},
    "T-resnet": {"arch": "fer-resnet", "epochs": 80, "mixup": 0.2},
}
STUDENT_TEACHER = "T-wide"  # the teachers (every seed of it, as an ensemble) each student distils from
STUDENT_BASE = {"preset": "shipped", "tta": "none", "kd_alpha": 0.5, "kd_temperature": 4.0}
STUDENTS = {  # name -> settings; at most 2M parameters (fer-resnet: 1.2M), chosen on val
    "S-kd": {"epochs": 60},
    "S-kd-aug": {"epochs": 60, "scale_jitter": 0.1, "translate": 0.1, "erase_p": 0.25, "mixup": 0.2, "warmup_epochs": 2},
}
TINY = {"epochs": 1, "seeds": [1], "torchrun_epochs": 1, "throughput": ["--synthetic", "64", "--steps", "1", "--warmup", "1"]}
FULL = {"epochs": None, "seeds": [1, 2, 3], "torchrun_epochs": 3, "throughput": ["--steps", "30", "--warmup", "5"]}


def toml_value(v) -> str:
    return json.dumps(v) if not isinstance(v, bool) else str(v).lower()


def write_sweep(path: Path, base: dict, strategies: dict[str, dict], seeds: list[int]) -> Path:
    """A `ferkit sweep` file (TOML) from plain dicts."""
    lines = [f"seeds = {json.dumps(seeds)}", "", "[base]"] + [f"{k} = {toml_value(v)}" for k, v in base.items()]
    for name, values in strategies.items():
        lines += ["", f"[strategies.{name}]"] + [f"{k} = {toml_value(v)}" for k, v in values.items()]
    path.write_text("\n".join(lines) + "\n")
    return path


def ferkit(*args: str) -> list[str]:
    return [sys.executable, "-m", "ferkit", *args]


def start(name: str, cmd: list[str], runs: Path) -> dict:
    log = open(runs / f"{name}.log", "w")
    return {"name": name, "cmd": cmd, "proc": subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT),
            "log": log, "t0": time.time()}


def wait(jobs: list[dict], deadline: float) -> list[dict]:
    """Wait for every job until the deadline; a job still running then is stopped (status "stopped")."""
    while any(j["proc"].poll() is None for j in jobs) and time.time() < deadline:
        time.sleep(2)
    out = []
    for j in jobs:
        stopped = j["proc"].poll() is None
        if stopped:
            j["proc"].terminate()
            try:
                j["proc"].wait(30)
            except subprocess.TimeoutExpired:
                j["proc"].kill()
        j["log"].close()
        out.append({"step": j["name"], "command": " ".join(j["cmd"][1:]), "exit": j["proc"].returncode,
                    "status": "stopped at the budget" if stopped else "done" if j["proc"].returncode == 0 else "failed",
                    "seconds": round(time.time() - j["t0"], 1)})
        print(f"{out[-1]['step']}: {out[-1]['status']} in {out[-1]['seconds']} s", flush=True)
    return out


def run_figures(folder: Path) -> dict:
    """One run's headline: val and test macro-F1 and accuracy, epochs, seconds of training."""
    out: dict = {}
    for split, name in (("val", "metrics_val.json"), ("test", "metrics.json")):
        if (folder / name).is_file():
            m = json.loads((folder / name).read_text())
            out[f"{split}_macro_f1"], out[f"{split}_accuracy"] = round(m["macro_f1"], 4), round(m["accuracy"], 4)
    if (folder / "epochs.csv").is_file():
        rows = (folder / "epochs.csv").read_text().splitlines()[1:]
        header = (folder / "epochs.csv").read_text().splitlines()[0].split(",")
        out["epochs_done"] = len(rows)
        if "seconds" in header:
            out["train_seconds"] = round(sum(float(r.split(",")[header.index("seconds")]) for r in rows), 1)
    return out


def paired_deltas(runs: Path, seeds: list[int]) -> dict:
    """E5 - E0 test macro-F1 per seed and their mean, where both runs finished."""
    pairs = {}
    for s in seeds:
        a, b = run_figures(runs / f"E5_seed{s}"), run_figures(runs / f"E0_seed{s}")
        if "test_macro_f1" in a and "test_macro_f1" in b:
            pairs[s] = round(a["test_macro_f1"] - b["test_macro_f1"], 4)
    return {"per_seed": pairs, "mean": round(sum(pairs.values()) / len(pairs), 4) if pairs else None}


def machine() -> dict:
    import torch

    from ferkit.runtime.device import describe_cpu
    gpu = torch.cuda.get_device_name(0) if torch.cuda.is_available() else None
    return {"gpu": gpu, "cuda": torch.version.cuda, "torch": torch.__version__, "cpu": describe_cpu(),
            "cpu_count": os.cpu_count(), "date": datetime.datetime.now().astimezone().isoformat(timespec="seconds")}


def pack(runs: Path, dest: Path, teachers: list[Path]) -> None:
    """results.tar.gz of the run folders (no checkpoints, no TensorBoard files) and each teacher's
    best.pt with float16 weights (half the size; evaluation casts them back to float32), named
    teacher-<run>.pt or student-<run>.pt after the folder it came from."""
    import torch

    from ferkit.models.checkpoint import read_checkpoint
    dest.mkdir(parents=True, exist_ok=True)

    def keep(info: tarfile.TarInfo) -> tarfile.TarInfo | None:
        name = Path(info.name).name
        return None if name.endswith(".pt") or name.startswith("events.out") or name.startswith("store") \
            or name.startswith("ferkit_store") else info

    with tarfile.open(dest / "results.tar.gz", "w:gz") as tar:
        tar.add(runs, arcname=runs.name, filter=keep)
    for best in teachers:
        if best.is_file():
            ckpt = read_checkpoint(best)  # the project's data-only reader, as for any checkpoint
            ckpt["model"] = {k: v.half() if v.is_floating_point() else v for k, v in ckpt["model"].items()}
            role = {"teachers": "teacher", "students": "student"}[best.parent.parent.name]
            torch.save(ckpt, dest / f"{role}-{best.parent.name}.pt")


def students(args, runs: Path, common: dict, setting: dict, deadline: float) -> list[dict]:
    """The students' sweep, once the teachers are trained: each distils from every seed of
    STUDENT_TEACHER at once (the ensemble, averaged in probability space), run on its own batch."""
    teachers = sorted((runs / "teachers").glob(f"{STUDENT_TEACHER}_seed*/best.pt"))
    if not teachers:
        print(f"students: skipped, no {STUDENT_TEACHER} teacher under {runs / 'teachers'}", flush=True)
        return [{"step": "students", "status": f"skipped: no {STUDENT_TEACHER} teacher"}]
    epochs = setting["epochs"] or args.student_epochs
    base = common | STUDENT_BASE | {"runs_dir": str(runs / "students"), "teacher": ",".join(map(str, teachers))}
    chosen = {n: v | ({"epochs": epochs} if epochs else {}) for n, v in STUDENTS.items()
              if args.students is None or n in args.students}
    sweep = write_sweep(runs / "students.toml", base, chosen, setting["seeds"])
    return wait([start("students", ferkit("sweep", str(sweep), "--jobs", str(len(chosen) * len(setting["seeds"]))), runs)],
                deadline)


def main(argv: list[str] | None = None) -> dict:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--data", required=True, help="FER-2013: zip, image folders, fer2013.csv or a ferkit store")
    p.add_argument("--runs", default="runs/gpu", help="where every run goes (runs/gpu)")
    p.add_argument("--device", default="cuda", help="cuda, or cpu for --tiny (cuda)")
    p.add_argument("--budget", type=float, default=430, help="seconds after which steps still running are stopped (430)")
    p.add_argument("--tiny", action="store_true", help="1 epoch, 1 seed, a few steps: the test suite's setting")
    p.add_argument("--skip", nargs="*", default=[], choices=["throughput", "reference", "quickstart", "torchrun", "teachers", "students"],
                   help="steps not to run")
    p.add_argument("--teachers", nargs="*", choices=sorted(TEACHERS), help="the teachers to train (all)")
    p.add_argument("--teacher-epochs", type=int, help="their epochs (TEACHERS')")
    p.add_argument("--students", nargs="*", choices=sorted(STUDENTS), help="the students to train (all)")
    p.add_argument("--student-epochs", type=int, help="their epochs (STUDENTS')")
    p.add_argument("--out", help="the JSON report (default bench/results/gpu-<device>.json)")
    p.add_argument("--pack", help="also write results.tar.gz and the float16 teachers into this folder")
    args = p.parse_args(argv)
    setting = TINY if args.tiny else FULL
    deadline = time.time() + args.budget
    runs = Path(args.runs)
    runs.mkdir(parents=True, exist_ok=True)
    steps: list[dict] = []

    # The data decoded once into a store, which every step then reads.
    store = runs / "store"
    if not (store / "ferkit_store.npz").is_file():
        steps += wait([start("prepare", ferkit("prepare", args.data, "--out", str(store)), runs)], deadline)
    if "throughput" not in args.skip:
        cmd = [sys.executable, str(HERE / "throughput.py"), "--quick", "--out", str(runs / "throughput.json")]
        cmd += setting["throughput"] if args.tiny else ["--data", args.data, *setting["throughput"]]
        steps += wait([start("throughput", cmd, runs)], deadline)

    jobs = []
    common = {"data_root": str(store), "device": args.device}
    epochs = setting["epochs"]
    if "teachers" not in args.skip:  # first: the longest step
        base = common | TEACHER_BASE | {"runs_dir": str(runs / "teachers")}
        epochs_t = epochs or args.teacher_epochs
        strategies = {n: v | ({"epochs": epochs_t} if epochs_t else {}) for n, v in TEACHERS.items()
                      if args.teachers is None or n in args.teachers}
        sweep = write_sweep(runs / "teachers.toml", base, strategies, setting["seeds"])
        jobs.append(start("teachers", ferkit("sweep", str(sweep), "--jobs", str(len(strategies) * len(setting["seeds"]))), runs))
    if "reference" not in args.skip:
        base = common | REFERENCE | {"runs_dir": str(runs / "reference")} | ({"epochs": epochs} if epochs else {})
        sweep = write_sweep(runs / "reference.toml", base, {"E0": {"preset": "E0"}, "E5": {"preset": "E5"}}, setting["seeds"])
        jobs.append(start("reference", ferkit("sweep", str(sweep), "--jobs", str(2 * len(setting["seeds"]))), runs))
    if "quickstart" not in args.skip:
        jobs.append(start("quickstart", ferkit("quickstart", str(store), "--runs_dir", str(runs / "quickstart")), runs))
    if "torchrun" not in args.skip:
        jobs.append(start("torchrun", ferkit("train", "--nproc", "1", "--data_root", str(store), "--preset", "E5", "--amp",
                                             "--epochs", str(setting["torchrun_epochs"]), "--device", args.device,
                                             "--runs_dir", str(runs / "torchrun"), "--exp", "E5_nproc1"), runs))
    steps += wait(jobs, deadline)

    if "reference" not in args.skip:
        folders = [str(runs / "reference" / f"{g}_seed{s}") for g in ("E0", "E5") for s in setting["seeds"]]
        if all(Path(f, "metrics.json").is_file() for f in folders):
            steps += wait([start("reference-summary", ferkit(
                "summary", *folders, "--group", f"E0={runs}/reference/E0_seed*", "--group", f"E5={runs}/reference/E5_seed*",
                "--baseline", "E0", "--out", str(runs / "reference" / "summary")), runs)], time.time() + 120)
    if "students" not in args.skip:
        steps += students(args, runs, common, setting, deadline)
    report = {"machine": machine(), "tiny": args.tiny, "budget_s": args.budget, "steps": steps,
              "command": " ".join(["python", "bench/gpu.py"] + (argv if argv is not None else sys.argv[1:]))}
    for group in ("reference", "teachers", "students", "torchrun"):
        folders = sorted(d for d in (runs / group).glob("*") if d.is_dir() and d.name != "summary")
        report[group] = {d.name: run_figures(d) for d in folders}
    report["reference_E5_minus_E0"] = paired_deltas(runs / "reference", setting["seeds"])
    if (runs / "throughput.json").is_file():
        t = json.loads((runs / "throughput.json").read_text())
        report["throughput"] = {n: {k: round(v, 1) for k, v in p.items() if k in ("train_img_per_s", "eval_img_per_s", "epoch_s")}
                                | {"precision": p["precision"], "device": p["device"]} for n, p in t["pipelines"].items()}
    if (runs / "quickstart.log").is_file():
        report["quickstart"] = [line for line in (runs / "quickstart.log").read_text().splitlines() if "reproduced" in line
                                or "differ" in line]
    device = "cpu-tiny" if args.tiny else (report["machine"]["gpu"] or "cpu").lower().replace("nvidia ", "").replace(" ", "-")
    save_report(report, Path(args.out) if args.out else HERE / "results" / f"gpu-{device}.json")
    if args.pack:
        pack(runs, Path(args.pack), sorted((runs / "teachers").glob("*/best.pt")) + sorted((runs / "students").glob("*/best.pt")))
    return report


if __name__ == "__main__":
    main()
