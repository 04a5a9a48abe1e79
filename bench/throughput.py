"""Training and evaluation throughput: the reference project's pipeline vs ferkit's, in one run.

    python bench/throughput.py            # whole epochs on ../shared/data/fer2013.zip (or synthetic data)
    python bench/throughput.py --quick    # a fixed number of steps per pipeline, under 2 minutes

Each pipeline runs in its own subprocess (so its peak resident memory is its own and no caches
are shared), warms up for a few steps, then is timed. The table is printed and written as JSON
under bench/results/. See bench/README.md for what each figure means.
"""
from __future__ import annotations

import argparse
import datetime
import json
import os
import platform
import resource
import shutil
import subprocess
import sys
import tempfile
import time
import zipfile
from itertools import islice
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from benchio import save_report  # noqa: E402

import numpy as np

HERE = Path(__file__).resolve().parent
DEFAULT_ZIP = HERE.parent.parent / "shared" / "data" / "fer2013.zip"
CLASSES = ["angry", "disgust", "fear", "happy", "neutral", "sad", "surprise"]
FER_COUNTS = {  # the official FER-2013 split sizes per class (shared/data/README.md)
    "train": [3995, 436, 4097, 7215, 4965, 4830, 3171],
    "val": [467, 56, 496, 895, 607, 653, 415],
    "test": [491, 55, 528, 879, 626, 594, 416],
}
KERNEL_ENV = ("ONEDNN_MAX_CPU_ISA", "ATEN_CPU_CAPABILITY", "FERKIT_CPU_BF16", "OMP_NUM_THREADS")  # recorded when set
TARGETS = {  # figure -> (threshold, "min" or "max"): issue 14's on any CPU, issue 3's for bf16 and memory
    "train_ratio_fp32": (2.0, "min"), "eval_ratio_fp32": (3.0, "min"), "train_ratio_amp": (2.5, "min"),
    "eval_ratio_amp": (5.0, "min"), "cold_load_s": (15.0, "max"), "warm_load_s": (1.0, "max"),
    "peak_rss_mb": (2048.0, "max"),
}


# ----------------------------------------------------------------------------- data for the run

def synthetic_counts(n_train: int | None) -> dict[str, list[int]]:
    """FER-2013's class counts, or the same proportions scaled to n_train training images (>= 1 per class)."""
    if n_train is None:
        return FER_COUNTS
    scale = n_train / sum(FER_COUNTS["train"])
    return {s: [max(1, round(c * scale)) for c in counts] for s, counts in FER_COUNTS.items()}


def write_synthetic_tree(root: Path, counts: dict[str, list[int]], seed: int = 0) -> None:
    """An image-folder tree of 48x48 grayscale JPEGs (smooth random faces-sized blobs plus noise)."""
    from PIL import Image
    rng = np.random.default_rng(seed)
    for split, per_class in counts.items():
        for label, (name, n) in enumerate(zip(CLASSES, per_class)):
            folder = root / split / name
            folder.mkdir(parents=True, exist_ok=True)
            for i in range(n):
                coarse = Image.fromarray(rng.integers(0, 256, (8, 8), dtype=np.uint8)).resize((48, 48), Image.BILINEAR)
                noisy = np.clip(np.asarray(coarse, dtype=np.int16) + rng.integers(-20, 21, (48, 48)), 0, 255)
                Image.fromarray(noisy.astype(np.uint8)).save(folder / f"{split}_{i}.jpg", quality=90)


def find_tree(root: Path) -> Path:
    """The folder under root (up to 3 levels down) that holds train/ and val/ image folders."""
    for depth in range(4):
        for d in sorted(root.glob("/".join(["*"] * depth))) if depth else [root]:
            if (d / "train").is_dir() and (d / "val").is_dir():
                return d
    raise SystemExit(f"no train/ + val/ image folders under {root}: give --data a zip or folder of FER-2013 image folders")


def prepare_data(args, tmp: Path) -> dict:
    """Where each pipeline reads its data: `tree` (image folders, for the reference) and `source` (for ferkit)."""
    data = Path(args.data) if args.data else DEFAULT_ZIP
    if args.synthetic is None and data.exists():
        if data.is_dir():
            return {"kind": "real", "source": str(data), "tree": str(find_tree(data)), "setup_s": 0.0}
        t0 = time.perf_counter()
        with zipfile.ZipFile(data) as z:  # once, untimed: the reference reads files from disk
            z.extractall(tmp / "images")
        return {"kind": "real", "source": str(data), "tree": str(find_tree(tmp / "images")),
                "setup_s": time.perf_counter() - t0}
    if args.data and not data.exists() and args.synthetic is None:
        raise SystemExit(f"no data at {data}: give the FER-2013 zip or folder, or --synthetic N")
    t0 = time.perf_counter()
    counts = synthetic_counts(args.synthetic)
    tree = tmp / "images" / "fer2013"
    write_synthetic_tree(tree, counts)
    return {"kind": "synthetic", "source": str(tree), "tree": str(tree), "counts": counts,
            "setup_s": time.perf_counter() - t0}


# ----------------------------------------------------------------------------- measurements (one subprocess each)

def peak_rss_mb() -> dict:
    """Peak resident memory of this process and of its largest reaped child (DataLoader workers), in MB."""
    own = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    children = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024
    return {"peak_rss_mb": round(own + children, 1), "peak_rss_self_mb": round(own, 1),
            "peak_rss_children_mb": round(children, 1)}


def eval_sizes(spec: dict, n_val: int) -> tuple[int, int]:
    """(warm-up, timed) numbers of val images to predict: a whole untimed pass then a whole timed one
    (the steady state of every epoch after the first); with --quick, one batch then `steps` batches."""
    if spec["quick"]:
        return min(n_val, spec["batch_size"]), min(n_val, spec["steps"] * spec["batch_size"])
    return n_val, n_val


def measure_reference(spec: dict) -> dict:
    """The reference pipeline: per-image decode + PIL transforms in DataLoader workers, float32."""
    import torch

    import reference_pipeline as ref
    from ferkit.models import build_model
    t0 = time.perf_counter()
    train, classes = ref.scan_folder(Path(spec["tree"]) / "train")
    val, _ = ref.scan_folder(Path(spec["tree"]) / "val")
    scan_s = time.perf_counter() - t0
    torch.manual_seed(0)
    model = build_model("seed-cnn", "softmax", len(classes))  # NCHW float32, as the reference
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-3)
    bs, workers = spec["batch_size"], spec["workers"]
    ref.train_images(model, optimizer, ref.make_loader(train, True, bs, workers), spec["warmup"])
    seen, secs = 0, 0.0
    for _ in range(1 if spec["quick"] else spec["epochs"]):
        n, s = ref.train_images(model, optimizer, ref.make_loader(train, True, bs, workers),
                                spec["steps"] if spec["quick"] else None)
        seen, secs = seen + n, secs + s
    n_warm, n_eval = eval_sizes(spec, len(val))
    ref.eval_images(model, ref.make_loader(val[:n_warm], False, bs, workers))
    n_eval, eval_s = ref.eval_images(model, ref.make_loader(val[:n_eval], False, bs, workers))
    return {"device": "cpu", "precision": "fp32", "threads": torch.get_num_threads(), "workers": workers,
            "n_train": len(train), "n_val": len(val), "train_images": seen, "train_s": secs,
            "eval_images": n_eval, "eval_s": eval_s, "cold_load_s": scan_s, "warm_load_s": scan_s}


class FirstSteps:
    """The first `steps` batches of successive epochs of `batches` (for --quick and warm-up).

    `labels` has as many entries as the images it yields: train_one_epoch reads its length."""

    def __init__(self, batches, steps: int):
        self.batches, self.steps = batches, steps
        n, bs = len(batches.labels), batches.batch_size
        sizes = [min(bs, n - i) for i in range(0, n, bs)]  # one epoch's batch sizes
        self.labels = range(sum(sizes[i % len(sizes)] for i in range(steps)))

    def __iter__(self):
        def forever():
            while True:
                yield from self.batches
        return islice(forever(), self.steps)


def measure_ferkit_cold(spec: dict) -> dict:
    """Decode the whole dataset from the source into an empty cache folder."""
    from ferkit.data import load_data
    t0 = time.perf_counter()
    data = load_data(spec["source"], cache_dir=spec["cache_dir"], log=lambda s: None)
    return {"cold_load_s": time.perf_counter() - t0, "n_images": sum(len(s) for s in data.splits.values())}


def measure_ferkit(spec: dict) -> dict:
    """ferkit's own training step (EpochBatches + train_one_epoch) and predict_proba, fp32 or --amp."""
    import torch

    from ferkit.config import RunConfig
    from ferkit.data import load_data
    from ferkit.data.batches import EpochBatches
    from ferkit.runtime.device import set_threads
    from ferkit.evaluate import predict_proba
    from ferkit.train import build_for_run, train_one_epoch
    t0 = time.perf_counter()
    data = load_data(spec["source"], cache_dir=spec["cache_dir"], log=lambda s: None)
    warm_s = time.perf_counter() - t0
    set_threads()
    device = torch.device(spec["device"])
    cfg = RunConfig(batch_size=spec["batch_size"], amp=spec["amp"], device=spec["device"], seed=0)
    torch.manual_seed(cfg.seed)
    model, loss_fn, sample_w, _ = build_for_run(cfg, data, device)

    def ferkit_amp_dtype(d):  # looked up at call time: the pin below replaces it for this process
        import ferkit.runtime.device
        return ferkit.runtime.device.amp_dtype(d)

    if not spec.get("channels_last", True):  # ferkit trains channels-last; this row measures what that gives
        model = model.to(memory_format=torch.contiguous_format)
    if spec.get("amp_dtype"):
        # float16 on a GPU that has bfloat16 is not a ferkit option (--amp takes bf16 there): pinned
        # here only to compare the two, with the gradient scaler float16 needs.
        import ferkit.runtime.device
        pinned = getattr(torch, spec["amp_dtype"])
        ferkit.runtime.device.amp_dtype = lambda _device: pinned
    optimizer = torch.optim.Adam(model.parameters(), lr=cfg.lr, weight_decay=cfg.weight_decay)
    scaler = None
    if cfg.amp and device.type == "cuda" and ferkit_amp_dtype(device) == torch.float16:
        scaler = torch.amp.GradScaler("cuda")
    train, val = data.splits["train"], data.splits["val"]
    images, labels = torch.from_numpy(train.images).to(device), torch.from_numpy(train.labels).to(device)
    val_images = torch.from_numpy(val.images).to(device)  # resident, as train images are
    batches = EpochBatches(images, labels, cfg.batch_size, torch.Generator().manual_seed(cfg.seed), sample_w)

    def run(b) -> tuple[int, float]:
        t = time.perf_counter()
        train_one_epoch(model, loss_fn, optimizer, b, device, cfg.amp, cfg.clip_norm, scaler)
        return len(b.labels), time.perf_counter() - t

    run(FirstSteps(batches, spec["warmup"]))
    seen, secs = 0, 0.0
    for _ in range(1 if spec["quick"] else spec["epochs"]):
        n, s = run(FirstSteps(batches, spec["steps"]) if spec["quick"] else batches)
        seen, secs = seen + n, secs + s
    n_warm, n_eval = eval_sizes(spec, len(val))
    predict_proba(model, val_images[:n_warm], device, cfg.amp)
    t = time.perf_counter()
    predict_proba(model, val_images[:n_eval], device, cfg.amp)
    eval_s = time.perf_counter() - t
    dtype = ferkit_amp_dtype(device) if cfg.amp else None
    return {"device": device.type, "precision": str(dtype).replace("torch.", "") if dtype else "fp32",
            "channels_last": spec.get("channels_last", True),
            "threads": torch.get_num_threads(), "n_train": len(train), "n_val": len(val), "train_images": seen,
            "train_s": secs, "eval_images": n_eval, "eval_s": eval_s, "warm_load_s": warm_s}


ROLES = {"reference": measure_reference, "ferkit-cold": measure_ferkit_cold, "ferkit": measure_ferkit}


def run_role(role: str, spec: dict, workdir: Path) -> dict:
    """Run one measurement in a fresh Python process and return its result."""
    spec_path, result_path = workdir / f"spec-{role}.json", workdir / f"result-{role}.json"
    spec_path.write_text(json.dumps(spec))
    cmd = [sys.executable, str(Path(__file__).resolve()), "--role", role, "--spec", str(spec_path),
           "--result", str(result_path)]
    proc = subprocess.run(cmd, capture_output=True, text=True)
    if proc.returncode != 0:
        tail = "\n".join(proc.stderr.strip().splitlines()[-15:])
        raise SystemExit(f"benchmark step {role} failed (exit {proc.returncode}):\n{tail}")
    return json.loads(result_path.read_text())


def role_main(role: str, spec_path: str, result_path: str) -> None:
    """Entry point of a measurement subprocess."""
    spec = json.loads(Path(spec_path).read_text())
    result = ROLES[role](spec) | peak_rss_mb()
    Path(result_path).write_text(json.dumps(result))


# ----------------------------------------------------------------------------- figures, table, JSON

def figures(r: dict, quick: bool) -> dict:
    """Throughputs and seconds per epoch (train + val) from one pipeline's raw timings."""
    train_ips, eval_ips = r["train_images"] / r["train_s"], r["eval_images"] / r["eval_s"]
    # A whole epoch was timed unless --quick; then it is projected from the measured throughputs.
    train_epoch_s = r["n_train"] / train_ips if quick else r["train_s"] / max(1, round(r["train_images"] / r["n_train"]))
    return r | {"train_img_per_s": train_ips, "eval_img_per_s": eval_ips,
                "epoch_s": train_epoch_s + r["eval_s"] * r["n_val"] / r["eval_images"], "epoch_s_estimated": quick}


def ratios(pipes: dict) -> dict:
    """ferkit / reference for each figure (epoch: reference seconds / ferkit seconds, i.e. the speed-up)."""
    ref, out = pipes["reference"], {}
    for name, p in pipes.items():
        if name == "reference":
            continue
        out[name] = {"train": p["train_img_per_s"] / ref["train_img_per_s"],
                     "eval": p["eval_img_per_s"] / ref["eval_img_per_s"], "epoch": ref["epoch_s"] / p["epoch_s"]}
    return out


def check_targets(pipes: dict, rat: dict, cold_s: float) -> dict:
    """Each issue-3 target on the CPU: the measured value, the threshold and whether it is met."""
    ferkit = [n for n in pipes if n.startswith("ferkit") and pipes[n]["device"] == "cpu"]
    values = {
        "train_ratio_fp32": rat["ferkit fp32 cpu"]["train"],
        "eval_ratio_fp32": rat["ferkit fp32 cpu"]["eval"],
        "train_ratio_amp": rat.get("ferkit amp cpu", {}).get("train"),
        "eval_ratio_amp": rat.get("ferkit amp cpu", {}).get("eval"),
        "cold_load_s": cold_s,
        "warm_load_s": max(pipes[n]["warm_load_s"] for n in ferkit),
        "peak_rss_mb": max(pipes[n]["peak_rss_mb"] for n in ferkit),
    }
    out = {}
    for key, value in values.items():
        limit, kind = TARGETS[key]
        met = None if value is None else (value >= limit if kind == "min" else value <= limit)
        out[key] = {"value": value, "target": f"{'>=' if kind == 'min' else '<='} {limit:g}", "met": met}
    return out


def format_table(pipes: dict, rat: dict, targets: dict, cold_s: float) -> str:
    """The printed table: one row per pipeline, then the ratios and the targets."""
    head = f"{'pipeline':<20}{'precision':>10}{'train img/s':>13}{'eval img/s':>12}{'s/epoch':>10}" \
           f"{'load cold s':>13}{'load warm s':>13}{'peak RSS MB':>13}"
    lines = [head, "-" * len(head)]
    for name, p in pipes.items():
        cold = p["cold_load_s"] if name == "reference" else cold_s
        est = "~" if p["epoch_s_estimated"] else ""
        lines.append(f"{name:<20}{p['precision']:>10}{p['train_img_per_s']:>13.0f}{p['eval_img_per_s']:>12.0f}"
                     f"{est + format(p['epoch_s'], '.1f'):>10}{cold:>13.2f}{p['warm_load_s']:>13.2f}{p['peak_rss_mb']:>13.0f}")
    lines += ["", "ferkit / reference:      train    eval   epoch speed-up"]
    lines += [f"  {name:<20}{r['train']:>8.2f}x{r['eval']:>7.2f}x{r['epoch']:>9.2f}x" for name, r in rat.items()]
    lines += ["", "targets (CPU):"]
    for key, t in targets.items():
        state = "n/a" if t["met"] is None else "met" if t["met"] else "NOT met"
        value = "-" if t["value"] is None else f"{t['value']:.2f}"
        lines.append(f"  {key:<18}{value:>10}  target {t['target']:<9} {state}")
    if any(p["epoch_s_estimated"] for p in pipes.values()):
        lines.append("~ projected from the measured throughputs (--quick times a fixed number of steps)")
    return "\n".join(lines)


def machine_info() -> dict:
    """What the figures were measured on."""
    import torch

    from ferkit.runtime.device import amp_dtype, cpu_info
    info = cpu_info() | {"python": platform.python_version(), "platform": platform.platform(),
                         "cpu_amp_dtype": str(amp_dtype(torch.device("cpu"))),
                         "kernel_env": {k: os.environ[k] for k in KERNEL_ENV if k in os.environ},
                         "cuda": torch.cuda.get_device_name(0) if torch.cuda.is_available() else None,
                         "date": datetime.datetime.now().astimezone().isoformat(timespec="seconds")}
    return info


# ----------------------------------------------------------------------------- main

def parse_args(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--data", help=f"FER-2013 zip or image-folder tree (default {DEFAULT_ZIP}; synthetic data when absent)")
    p.add_argument("--synthetic", type=int, nargs="?", const=0, default=None, metavar="N_TRAIN",
                   help="use synthetic JPEGs: FER-2013's split sizes, or N_TRAIN training images in the same proportions")
    p.add_argument("--quick", action="store_true", help="time --steps steps per pipeline instead of whole epochs")
    p.add_argument("--steps", type=int, default=8, help="timed training steps per pipeline with --quick (8)")
    p.add_argument("--warmup", type=int, default=2, help="untimed training steps before timing (2)")
    p.add_argument("--epochs", type=int, default=1, help="timed epochs per pipeline without --quick (1)")
    p.add_argument("--batch-size", type=int, default=256)
    p.add_argument("--workers", type=int, default=2, help="the reference DataLoader's worker processes (2)")
    p.add_argument("--out", help="JSON output (default bench/results/throughput[-quick].json)")
    p.add_argument("--role", help=argparse.SUPPRESS)
    p.add_argument("--spec", help=argparse.SUPPRESS)
    p.add_argument("--result", help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    if args.synthetic == 0:
        args.synthetic = sum(FER_COUNTS["train"])
    return args


def main(argv: list[str] | None = None) -> dict:
    args = parse_args(argv)
    if args.role:
        role_main(args.role, args.spec, args.result)
        return {}
    import torch

    from ferkit.runtime.device import cpu_supports_bf16, describe_cpu
    print(f"cpu: {describe_cpu()}", flush=True)
    load_start = os.getloadavg() if hasattr(os, "getloadavg") else None
    tmp = Path(tempfile.mkdtemp(prefix="ferkit-bench-"))
    try:
        data = prepare_data(args, tmp)
        print(f"data: {data['kind']} ({data['source']}); setup {data['setup_s']:.1f} s (not timed)", flush=True)
        spec = {"source": data["source"], "tree": data["tree"], "cache_dir": str(tmp / "cache"), "quick": args.quick,
                "steps": args.steps, "warmup": args.warmup, "epochs": args.epochs, "batch_size": args.batch_size,
                "workers": args.workers, "device": "cpu", "amp": False}
        cold = run_role("ferkit-cold", spec, tmp)
        print(f"ferkit cold load: {cold['cold_load_s']:.1f} s for {cold['n_images']} images", flush=True)
        runs = {"reference": ("reference", {}), "ferkit fp32 cpu": ("ferkit", {})}
        if cpu_supports_bf16():
            runs["ferkit amp cpu"] = ("ferkit", {"amp": True})
        else:  # --amp runs in float32 here (ferkit.runtime.device.amp_notice): the same row again
            print("no native bfloat16 on this CPU: --amp runs in float32, so there is no amp row", flush=True)
        if torch.cuda.is_available():  # --amp takes bf16 where the GPU has it; fp16 and contiguous rows compare
            runs |= {"ferkit fp32 cuda": ("ferkit", {"device": "cuda"}),
                     "ferkit amp cuda": ("ferkit", {"device": "cuda", "amp": True}),
                     "ferkit fp16 cuda": ("ferkit", {"device": "cuda", "amp": True, "amp_dtype": "float16"}),
                     "ferkit fp32 cuda nchw": ("ferkit", {"device": "cuda", "channels_last": False}),
                     "ferkit amp cuda nchw": ("ferkit", {"device": "cuda", "amp": True, "channels_last": False})}
        pipes = {}
        for name, (role, extra) in runs.items():
            print(f"measuring {name} ...", flush=True)
            pipes[name] = figures(run_role(role, spec | extra, tmp), args.quick)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    rat = ratios(pipes)
    targets = check_targets(pipes, rat, cold["cold_load_s"])
    print("\n" + format_table(pipes, rat, targets, cold["cold_load_s"]))
    report = {"machine": machine_info(), "load_avg_start": load_start, "load_avg_end": os.getloadavg() if hasattr(os, "getloadavg") else None,
              "command": " ".join(["python", "bench/throughput.py"] + (argv if argv is not None else sys.argv[1:])),
              "settings": {k: v for k, v in spec.items() if k not in ("source", "tree", "cache_dir", "device", "amp")},
              "data": {k: v for k, v in data.items() if k != "tree"}, "cold_load_s": cold["cold_load_s"],
              "pipelines": pipes, "ratios": rat, "targets": targets}
    save_report(report, Path(args.out) if args.out else HERE / "results" / f"throughput{'-quick' if args.quick else ''}.json")
    return report


if __name__ == "__main__":
    main()
