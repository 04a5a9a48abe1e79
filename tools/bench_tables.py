"""The docs' tables of benchmark results (`bench/results/*.json`) and of the int8 model's card:
each function returns a renderer `root -> Markdown` for a block of tools/report.py (tools/doc_tables.py)."""
from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path

from ferkit.report.stats import ReportError
from ferkit.report.tables import markdown_table


def _read_json(path: Path) -> dict:
    if not path.is_file():
        raise ReportError(f"no {path}: the table quoting it cannot be made (restore the file or drop the block)")
    return json.loads(path.read_text(encoding="utf-8"))


# --- benchmarks -------------------------------------------------------------------------------
def _cpu_label(machine: dict) -> str:
    flags = set(machine.get("cpu_flags") or [])
    kind = ("AMX" if "amx_bf16" in flags else "AVX-512 BF16, no AMX" if "avx512_bf16" in flags
            else "AVX-512" if "avx512f" in flags else "AVX2" if "avx2" in flags else "")
    if not flags and machine.get("cpu_bf16"):
        kind = "bf16 in hardware"  # older JSONs record no flags
    if machine.get("kernel_env"):
        kind = "held to PyTorch's AVX2 kernels, no bf16"
    return f"{machine.get('cpu_model', 'unknown CPU')}" + (f", {kind}" if kind else "")


def throughput_table(files: list[str]) -> Callable[[Path], str]:
    """`bench/throughput.py` JSONs: train and eval img/s per pipeline, and ferkit's ratio to the reference."""
    def render(root: Path) -> str:
        cells = []
        for name in files:
            d = _read_json(root / "bench" / "results" / name)
            pipes = d["pipelines"]
            ref = pipes["reference"]
            first = True
            for key, label in (("reference", "reference"), ("ferkit fp32 cpu", "ferkit fp32"), ("ferkit amp cpu", "ferkit `--amp` (bf16)")):
                if key not in pipes:
                    continue
                p = pipes[key]
                ratio = ("1.0x" if key == "reference" else
                         f"{p['train_img_per_s'] / ref['train_img_per_s']:.2f}x / {p['eval_img_per_s'] / ref['eval_img_per_s']:.2f}x")
                where = f"{_cpu_label(d['machine'])} (`{name}`, {d['machine']['date'][:10]})" if first else ""
                cells.append([where, label, f"{p['train_img_per_s']:.0f}", f"{p['eval_img_per_s']:.0f}", ratio])
                first = False
        return markdown_table(["CPU (JSON under `bench/results/`)", "pipeline", "train img/s", "eval img/s", "ratio train / eval"], cells)
    return render


def predict_table(files: list[tuple[str, str | None]]) -> Callable[[Path], str]:
    """`bench/predict.py` JSONs: faces/s batched and one at a time, and ms per 640x480 photo, per
    backend. `files`: (JSON name, CPU label for a JSON that records no CPU, else None)."""
    def render(root: Path) -> str:
        cells = []
        for name, label in files:
            d = _read_json(root / "bench" / "results" / name)
            detector = d["backends"][0].get("detector", "haar")  # JSONs from before YuNet name none
            where = label or f"{_cpu_label(d['machine'])} (`{name}`, {detector} detector, load {d['load_average'][0]:.1f})"
            for k, b in enumerate(d["backends"]):
                backend = (("ONNX Runtime, int8" if b.get("int8") else "ONNX Runtime") if b["backend"] == "onnx"
                           else f"torch, {'bfloat16' if b['bf16'] else 'float32'}")
                cells.append([where if k == 0 else "", backend, f"{b['batched_faces_per_s']:,.0f}",
                              f"{b['single_faces_per_s']:,.0f}",
                              f"{b['batched_over_single']:.1f}x ({b['batched_over_single_per_round']['median']:.1f}x)",
                              f"{b['photo_ms']:.1f}", f"{b['detect_ms']:.1f}"])
        return markdown_table(["CPU", "backend", "faces/s batched (64)", "faces/s one at a time", "ratio (median per round)",
                       "ms per 640x480 portrait", "of which detect"], cells)
    return render


def int8_table(name: str) -> Callable[[Path], str]:
    """An int8 model's metrics JSON (`ferkit export --int8`): float32 and int8 on val and test; with a
    float32 copy in the file, the share of faces it re-ran and the changes plain int8 made."""
    def render(root: Path) -> str:
        d = _read_json(root / "pretrained" / name)
        refined = bool((d.get("refine") or {}).get("below"))
        cells = []
        for split in ("val", "test"):
            r = d[split]
            cells.append([split, f"{r['float32']['accuracy']:.4f} / {r['float32']['macro_f1']:.4f}",
                          f"{r['int8']['accuracy']:.4f} / {r['int8']['macro_f1']:.4f}", f"{r['macro_f1_cost']:+.4f}",
                          f"{r['changed_predictions']} of {r['n']:,}"]
                         + ([f"{r['refined_fraction']:.1%}", f"{r['single_view_changed_without_refine']}"] if refined else []))
        return markdown_table(["split", "float32 accuracy / macro-F1", "int8 accuracy / macro-F1", "macro-F1 cost",
                               "predictions changed"]
                              + (["run again in float32", "changed by plain int8"] if refined else []), cells)
    return render


def shift_table(name: str, split: str, labels: dict[str, str]) -> Callable[[Path], str]:
    """`bench/shift.py` JSON: macro-F1 per shift (rows, clean first, the mean over shifts last) for each
    model (columns, in the order of `labels`: {the model's name in the JSON: column label})."""
    def render(root: Path) -> str:
        d = _read_json(root / "bench" / "results" / name)
        models = {m["name"]: m["splits"][split] for m in d["models"]}
        missing = sorted(set(labels) - set(models))
        if missing:
            raise ReportError(f"bench/results/{name} has no model {', '.join(missing)}: rerun bench/shift.py with it")
        cells = [[shift] + [f"{models[m][shift]['macro_f1']:.3f}" for m in labels] for shift in d["shifts"]]
        cells.append(["**mean over shifts** (clean excluded)"]
                     + [f"**{models[m]['mean_over_shifts']['macro_f1']:.3f}**" for m in labels])
        return markdown_table([f"{split} macro-F1, single view"] + list(labels.values()), cells)
    return render


def bench_results(root: Path, names: list[str]) -> list[tuple[str, dict]]:
    """(name, contents) of the benchmark JSONs `bench/results/<name>`."""
    return [(name, _read_json(root / "bench" / "results" / name)) for name in names]


def video_table(names: list[str]) -> Callable[[Path], str]:
    """`bench/video.py` JSONs: frames/s, identity switches and coverage per clip and setting."""
    def render(root: Path) -> str:
        cells = []
        for name, d in bench_results(root, names):
            where = f"{_cpu_label(d['machine'])} (`{name}`, {d['machine']['date'][:10]}, {d['frames']} frames per clip)"
            for k, (clip, row) in enumerate(d["clips"].items()):
                cells.append([where if k == 0 else "", clip, f"{row['frames_per_s']:.1f}", str(row["identity_switches"]),
                              f"{row['coverage']:.2f}", str(row["tracks"])])
        return markdown_table(["CPU (JSON under `bench/results/`)", "clip, setting", "frames/s", "identity switches",
                       "coverage", "tracks"], cells)
    return render


def detection_table(name: str, only_defaults: bool = False) -> Callable[[Path], str]:
    """`bench/detection.py` JSON: recall, precision, false faces and ms per 640x480 image per detector
    (`only_defaults`: each detector's default setting only, for the README)."""
    def render(root: Path) -> str:
        d = _read_json(root / "bench" / "results" / name)
        rows = [r for r in d["detectors"] if r["detector"].endswith("(default)") or not only_defaults]
        cells = [[r["detector"], f"{r['recall']:.3f}", f"{r['precision']:.3f}" if r["precision"] is not None else "-",
                  str(r["false_faces"]), f"{r['ms_per_image']:.1f}"] for r in rows]
        caption = (f"{d['scenes']} scenes, {d['faces']} FER {d['split']} faces; {_cpu_label(d['machine'])}, "
                   f"OpenCV {d['opencv']} on {d['opencv_threads']} thread, load {d['load_average'][0]:.1f} (`{name}`)\n\n")
        return caption + markdown_table(["detector, setting", "recall", "precision", "false faces", "ms per image"], cells)
    return render


def detection_conditions_table(name: str) -> Callable[[Path], str]:
    """`bench/detection.py` JSON: each default detector's recall by condition, and expression accuracy."""
    def render(root: Path) -> str:
        d = _read_json(root / "bench" / "results" / name)
        rows = [r for r in d["detectors"] if r["detector"].endswith("(default)")]
        cells = [[c] + [f"{r['recall_by'][c]:.3f}" for r in rows] for c in rows[0]["recall_by"]]
        table = markdown_table(["condition"] + [f"recall, {r['detector']}" for r in rows], cells)
        cells = []
        for det, a in d["expression"].items():
            diff = a["aligned - detected box"]
            cells.append([det, str(a["faces"])] + [f"{a[w]['accuracy']:.3f} / {a[w]['macro_f1']:.3f}"
                                                   for w in ("true box", "detected box", "aligned")]
                         + [f"{diff['accuracy']['diff']:+.3f} [{diff['accuracy']['low']:+.3f}, {diff['accuracy']['high']:+.3f}]"])
        return table.rstrip("\n") + "\n\n" + markdown_table(
            ["detector", "faces found", "true box: accuracy / macro-F1", "detected box", "aligned",
             "aligned - box, accuracy [95% paired bootstrap]"], cells)
    return render


def service_table(names: list[str]) -> Callable[[Path], str]:
    """`bench/service_load.py` JSONs: latency of concurrent uploads, 5xx answers and memory."""
    def render(root: Path) -> str:
        cells = []
        for name, d in bench_results(root, names):
            rss = d["rss_mb"]
            cells.append([f"{_cpu_label(d['machine'])} (`{name}`)", f"`{d.get('serve_args') or 'defaults'}`",
                          f"{d.get('bursts', 1)} x {d['concurrent']}: {d['upload_status']}",
                          f"{d['latency_p50_s']:.2f} / {d['latency_p95_s']:.2f}"
                          + (f" ({', '.join(f'{t:.2f}' for t in d['burst_p95_s'])})" if "burst_p95_s" in d else ""),
                          f"{d['server_ms_p95']:.0f}" if d.get("server_ms_p95") is not None else "-",
                          str(d["server_5xx"]), f"{rss['after_bombs'] - rss['start']:+.0f} / {d['rss_growth_mb']:+.0f}"])
        return markdown_table(["CPU (JSON under `bench/results/`)", "serve options", "bursts x uploads: answers",
                               "latency p50 / p95 (per burst), s", "server time p95, ms", "5xx", "RSS after the bombs / the burst, MB"], cells)
    return render


def scaling_table(name: str) -> Callable[[Path], str]:
    """`bench/scaling.py` JSON: wall-clock seconds of a 4-run sweep and of one run, per way of running them."""
    def render(root: Path) -> str:
        d = _read_json(root / "bench" / "results" / name)
        cells = [["sweep of 4 runs", k, f"{v:.1f}"] for k, v in d["sweep_4_runs_s"].items()]
        cells += [["one training run", k, f"{v:.1f}"] for k, v in d["train_one_run_s"].items()]
        caption = (f"{_cpu_label(d['machine'])}, {d['machine']['cpu_count']} cores, {d['epochs']} epochs of 1,050 "
                   f"synthetic images per run, load {d['load_average'][0]:.1f} (`{name}`)\n\n")
        return caption + markdown_table(["what", "how", "seconds"], cells)
    return render


def light_install_table(names: list[str]) -> Callable[[Path], str]:
    """`bench/light_install.py` JSONs: the size of `pip install '.[infer]'` and a cold process's time to its
    first prediction, next to the full install's (torch backend)."""
    def render(root: Path) -> str:
        cells = []
        for name, d in bench_results(root, names):
            light, full = d["light"], d.get("full") or {}
            cells.append([f"{_cpu_label(d['machine'])} (`{name}`)", f"{light['site_packages_mb']:.0f} MB, "
                          f"{len(light['packages'])} packages, no torch", f"{light['install_s']:.0f}",
                          f"{light['cli_first_prediction_s']:.2f} / {light['api_first_prediction_s']:.2f}",
                          f"{full['cli_first_prediction_s']:.2f}" if full else "-",
                          f"{full['torch_mb']:.0f} MB" if full else "-"])
        return markdown_table(["CPU (JSON under `bench/results/`)", "`.[infer]` installed", "install, s",
                               "first prediction, s: `ferkit predict` / `Predictor`", "full install, `ferkit predict`, s",
                               "torch alone in the full install"], cells)
    return render


def gpu_throughput_table(name: str) -> Callable[[Path], str]:
    """`bench/gpu.py` JSON: training and evaluation img/s per pipeline (seed-cnn, batch 256) on the GPU,
    with the reference pipeline and ferkit on that machine's CPU for scale."""
    def render(root: Path) -> str:
        d = _read_json(root / "bench" / "results" / name)
        cells = []
        for pipe, p in d["throughput"].items():
            layout = "NCHW" if pipe.endswith("nchw") else "channels-last" if pipe.startswith("ferkit") else "NCHW"
            cells.append([pipe.removesuffix(" nchw"), p["device"], p["precision"], layout, f"{p['train_img_per_s']:,.0f}",
                          f"{p['eval_img_per_s']:,.0f}", f"{p['epoch_s']:.1f}"])
        return markdown_table(["pipeline", "device", "precision", "layout", "train img/s", "eval img/s", "s per epoch (train + val)"], cells)
    return render


def time_to_quality_table(names: list[str], amx_runs: list[str]) -> Callable[[Path], str]:
    """Time to quality per CPU kind: `bench/time_to_quality.py` JSONs (whole runs, or the first epochs
    projected to the whole run), and the fast recipe's committed runs on the AMX Xeon (`amx_runs`:
    run folders with wall_clock.txt, metrics.json and metrics_val.json)."""
    def render(root: Path) -> str:
        cells = []
        for folder in amx_runs:
            run = root / folder
            wall = float((run / "wall_clock.txt").read_text().split(":")[1].split()[0])
            test, val = (json.loads((run / n).read_text()) for n in ("metrics.json", "metrics_val.json"))
            cells.append([f"Intel Xeon, AMX (`{folder}/`)", "fast-bf16", "bfloat16", folder.rsplit("seed", 1)[1],
                          f"{wall / 60:.1f}", f"{val['macro_f1']:.3f}", f"{test['macro_f1']:.3f}"])
        for name, d in bench_results(root, names):
            where = f"{_cpu_label(d['machine'])} (`{name}`)"
            for recipe, entry in d["recipes"].items():
                for seed, r in entry["runs"].items():
                    if "projected_epochs_s" in r:
                        minutes = f"~{r['projected_epochs_s'] / 60:.1f} (epochs only, from {r['epochs_run']})"
                        cells.append([where, recipe, r["precision"], seed, minutes, "", ""])
                    else:
                        cells.append([where, recipe, r["precision"], seed, f"{r['wall_s'] / 60:.1f}",
                                      f"{r['val_macro_f1']:.3f}", f"{r['test_macro_f1']:.3f}"])
        return markdown_table(["CPU (JSON or run folder)", "recipe", "precision", "seed", "minutes, start to test figures",
                               "val macro-F1", "test macro-F1"], cells)
    return render
