"""The tables that README.md, docs/*.md and the model cards quote, each made from committed result
files: `BLOCKS[NAME]` renders the block between `<!-- report:NAME -->` and `<!-- /report:NAME -->`
(tools/report.py rewrites or checks them). Repository-only: it names this repository's results/ and
bench/results/ files, so it is not part of the ferkit package.
"""
from __future__ import annotations

import csv
from collections.abc import Callable
from pathlib import Path

import numpy as np
from bench_tables import (
    _read_json,
    detection_conditions_table,
    detection_table,
    gpu_throughput_table,
    int8_table,
    light_install_table,
    predict_table,
    scaling_table,
    service_table,
    shift_table,
    throughput_table,
    time_to_quality_table,
    video_table,
)

from ferkit.report.stats import ReportError, mean_std
from ferkit.report.tables import markdown_table


def _read_csv(path: Path) -> list[dict]:
    if not path.is_file():
        raise ReportError(f"no {path}: the table quoting it cannot be made (restore the file or drop the block)")
    with open(path, newline="", encoding="utf-8") as f:
        return list(csv.DictReader(f))


def _pm(values) -> str:
    mean, std = mean_std(values)
    return f"{mean:.3f} ± {std:.3f}"


# --- shipped models ---------------------------------------------------------------------------
PRESET_RECIPES = {"E0": "softmax + CE", "E1": "ArcFace + CE", "E2": "CE weighted 1/sqrt(n_c)", "E4": "focal",
                  "E5": "CE + 1/sqrt(n_c) sampler", "E6": "ArcFace + focal"}


def shipped_models(root: Path) -> str:
    """One row per `pretrained/*.pt`, the recommended model first, every figure from its card: the headline
    at the TTA the checkpoint records (what predict, serve and Predictor run), then the card's crops row."""
    cards = sorted((root / "pretrained").glob("*.pt.metrics.json"), key=lambda p: ("recommended" not in p.name, p.name))
    if not cards:
        raise ReportError(f"no model cards (*.pt.metrics.json) under {root / 'pretrained'}")
    rows = []
    for path in cards:
        card = _read_json(path)
        cfg, test = card["config"], card["test"]
        recipe = (f"{cfg['arch']}, {cfg.get('preset') or cfg['loss']}: {PRESET_RECIPES.get(cfg.get('preset'), cfg['loss'])}, "
                  f"{cfg['epochs']} epochs, batch {cfg['batch_size']}, {cfg['optimizer'].replace('adamw', 'AdamW').replace('adam', 'Adam')}"
                  + (f", {cfg['tta'].replace('crops', 'crop')} TTA" if cfg.get("tta") not in (None, False, "none") else ""))
        rows.append([f"`pretrained/{path.name.removesuffix('.metrics.json')}`", recipe,
                     f"{card['parameters'] / 1e6:.2f}M", f"{card['macs_per_image'] / 1e6:.1f}M",
                     f"{card['file_bytes'] / 1e6:.1f} MB", f"{card['val']['macro_f1']:.3f}", f"{test['accuracy']:.3f}",
                     f"{test['macro_f1']:.3f}", f"{test['per_class_f1']['disgust']:.3f}", f"{test['per_class_f1']['fear']:.3f}",
                     _crops(card)])
    return markdown_table(["model", "recipe", "parameters", "multiply-adds", "file", "val macro-F1", "test accuracy",
                   "test macro-F1", "disgust F1", "fear F1", "crops TTA, 10x the compute: val macro-F1 / test accuracy / macro-F1"],
                          rows)


def _crops(card: dict) -> str:
    """A card's crops-TTA figures (its second table), or its headline's where crops is the recorded TTA."""
    r = (card.get("tta_figures") or {}).get("crops") or (card if card["config"].get("tta") == "crops" else None)
    return f"{r['val']['macro_f1']:.3f} / {r['test']['accuracy']:.3f} / {r['test']['macro_f1']:.3f}" if r else "-"


def shipped_targets(root: Path) -> str:
    """The project's targets for the shipped model against the recommended card: its headline (the TTA it
    records: single view, what predict, serve and Predictor run) and its crops row (10x the compute)."""
    card = _read_json(root / "pretrained" / "ferkit-recommended.pt.metrics.json")
    head, crops = card["test"], (card.get("tta_figures") or {}).get("crops", {}).get("test")
    if crops is None:
        raise ReportError("pretrained/ferkit-recommended.pt.metrics.json has no crops figures: re-pack it (ferkit pack)")
    mode = card["config"]["tta"]

    def met(a: bool, b: bool) -> str:
        return {(True, True): "yes", (False, True): "with the crops TTA only", (True, False): f"{mode} only"}.get((a, b), "no")

    cells = []
    for name, get, floor in (("test macro-F1 >= 0.64", lambda r: r["macro_f1"], 0.64),
                             ("test accuracy >= 0.67", lambda r: r["accuracy"], 0.67),
                             ("test disgust F1 >= 0.55", lambda r: r["per_class_f1"]["disgust"], 0.55),
                             ("test fear F1 >= 0.42", lambda r: r["per_class_f1"]["fear"], 0.42)):
        cells.append([name, f"{get(head):.3f}", f"{get(crops):.3f}", met(get(head) >= floor, get(crops) >= floor)])
    cells.append(["at most 2M parameters", f"{card['parameters'] / 1e6:.2f}M", "the same", "yes" if card["parameters"] <= 2e6 else "no"])
    minutes = card["training"]["seconds"] / 60
    cells.append(["full training at most 60 minutes on this CPU", f"{minutes:.1f} minutes", "the same",
                  "yes" if minutes <= 60 else "no"])
    return markdown_table(["target", f"measured: {'single view' if mode == 'none' else mode} (the card's headline: what "
                           "predict, serve and Predictor run)", "measured: crops TTA (10 views, `--tta crops`)", "met"], cells)


# --- recipes run seed by seed (the fast recipes) ------------------------------------------------
def _run_figures(folder: Path) -> list[float]:
    val, test = _read_json(folder / "metrics_val.json"), _read_json(folder / "metrics.json")
    return [val["macro_f1"], test["accuracy"], test["macro_f1"], test["f1_disgust"], test["f1_fear"]]


def figures_table(rows: list[tuple[str, str]]) -> Callable[[Path], str]:
    """Runs and stored teachers side by side: (label, a run folder or a teacher's *.metrics.json)."""
    def render(root: Path) -> str:
        cells = []
        for label, source in rows:
            if source.endswith(".json"):
                d = _read_json(root / source)
                figures = [d["val"]["macro_f1"], d["test"]["accuracy"], d["test"]["macro_f1"], d["test"]["f1_disgust"],
                           d["test"]["f1_fear"]]
            else:
                figures = _run_figures(root / source)
            cells.append([label] + [f"{v:.3f}" for v in figures])
        return markdown_table(["model", "val macro-F1", "test accuracy", "test macro-F1", "disgust F1", "fear F1"], cells)
    return render


def val_table(rows: list[tuple[str, str]]) -> Callable[[Path], str]:
    """Candidates read on val only (test stays unread until the choice is made): (label, a run folder
    or a shipped model's card, `*.metrics.json`, whose headline is single view)."""
    def render(root: Path) -> str:
        cells = []
        for label, source in rows:
            val = _read_json(root / source)["val"] if source.endswith(".json") else _read_json(root / source / "metrics_val.json")
            f1 = val["per_class_f1"]  # a card names its classes; a run's metrics list them in class_names' order
            f1 = f1 if isinstance(f1, dict) else dict(zip(val["class_names"], f1))
            cells.append([label] + [f"{v:.3f}" for v in (val["macro_f1"], val["accuracy"], f1["disgust"], f1["fear"])])
        return markdown_table(["model", "val macro-F1", "val accuracy", "val disgust F1", "val fear F1"], cells)
    return render


def _times(folder: Path) -> list[str]:
    seconds = sum(float(r["seconds"]) for r in _read_csv(folder / "epochs.csv"))
    wall = (folder / "wall_clock.txt").read_text(encoding="utf-8").split(":")[-1].strip()
    return [f"{seconds:.0f} s ({seconds / 60:.1f} min)", wall]


def seed_table(rows: list[tuple[str, str]], mean_of: list[str]) -> Callable[[Path], str]:
    """A table of runs (label, folder) with their figures and times, and a mean ± std row over `mean_of`."""
    def render(root: Path) -> str:
        cells = [[label] + [f"{v:.3f}" for v in _run_figures(root / folder)] + _times(root / folder) for label, folder in rows]
        figures = np.array([_run_figures(root / f) for f in mean_of])
        seeds = ", ".join(f.rsplit("seed", 1)[-1] for f in mean_of)
        cells.append([f"mean ± std over seeds {seeds}"] + [_pm(col) for col in figures.T] + ["", ""])
        return markdown_table(["seed", "val macro-F1", "test accuracy", "test macro-F1", "disgust F1", "fear F1",
                       "epoch times (training + val)", "wall clock (all included)"], cells)
    return render


def _fast(folder: str, rerun: str | None, first_label: str = "42") -> list[tuple[str, str]]:
    rows = [(first_label, f"{folder}/fast_seed42"), ("1", f"{folder}/fast_seed1"), ("2", f"{folder}/fast_seed2")]
    if rerun:
        rows += [(f"42, again (`{rerun}/`)", f"{rerun}/fast_seed42"), ("1, again", f"{rerun}/fast_seed1"),
                 ("2, again", f"{rerun}/fast_seed2")]
    return rows


# --- strategy studies (ferkit summary outputs) --------------------------------------------------
def _cell(r: dict, column: str) -> str:
    """One cell of a study table from a summary.csv row (see `study_table` for the column names)."""
    def f(k):
        return float(r[k])
    def pm(k):
        return f"{f(k + '_mean'):.3f} ± {f(k + '_std'):.3f}"
    if column == "val":
        return pm("val_macro_f1")
    if column == "accuracy":
        return pm("accuracy")
    if column == "macro_f1":
        return f"{pm('macro_f1')} [{f('macro_f1_ci95_low'):.3f}, {f('macro_f1_ci95_high'):.3f}]"
    if column in ("delta", "seed_std", "mcnemar") and not r.get("macro_f1_diff_mean"):
        return ""  # the baseline
    if column == "delta":
        return f"{f('macro_f1_diff_mean'):+.3f} [{f('diff_ci95_low'):+.3f}, {f('diff_ci95_high'):+.3f}]"
    if column == "seed_std":
        return f"{f('diff_seed_std'):.3f}"
    if column == "mcnemar":
        return "<0.001" if f("mcnemar_p_max") < 0.001 else f"{f('mcnemar_p_max'):.3f}"
    if column == "seeds":
        return str(r["n_seeds"])
    if column == "converged":
        return f"{r['n_converged']}/{r['n_checked']}" if r.get("n_checked") else "post-hoc"
    if column == "epochs":
        return r.get("epochs") or "post-hoc"
    if column.startswith("recall_"):
        return pm(column)
    if column.startswith("f1_"):
        return f"{f(column + '_mean'):.3f}" if not column.endswith("±") else pm(column[:-1])
    raise ReportError(f"unknown study table column {column!r}")


_HEADERS = {"val": "val macro-F1", "accuracy": "test accuracy", "macro_f1": "test macro-F1 [95% CI]",
            "delta": "Δ macro-F1 vs E0 [95% CI]", "seed_std": "Δ seed std", "mcnemar": "McNemar p (max)",
            "converged": "converged runs", "seeds": "seeds", "epochs": "epochs"}


def study_table(summary_dir: str, labels: dict[str, str],
                columns: tuple[str, ...] = ("val", "accuracy", "macro_f1", "delta", "mcnemar", "f1_disgust", "f1_fear"),
                ) -> Callable[[Path], str]:
    """A study table from a `ferkit summary` folder's summary.csv, one row per group in the order of
    `labels` ({group: row label}; groups it does not name follow), the group with the best mean val
    macro-F1 in bold. Columns: val, accuracy, macro_f1 (with its CI), delta (vs the baseline, CI),
    seed_std, mcnemar, converged, epochs (of training), recall_<class>, f1_<class> (mean) and f1_<class>±
    (mean ± std)."""
    def render(root: Path) -> str:
        rows = _read_csv(root / summary_dir / "summary.csv")
        order = list(labels)
        rows.sort(key=lambda r: (order.index(r["group"]) if r["group"] in order else len(order), r["group"]))
        best = max(rows, key=lambda r: float(r["val_macro_f1_mean"]))["group"]
        cells = []
        for r in rows:
            line = [labels.get(r["group"], r["group"])] + [_cell(r, c) for c in columns]
            if r["group"] == best:
                line[0] = f"**{line[0]}**"
                if "val" in columns:
                    line[1 + columns.index("val")] = f"**{line[1 + columns.index('val')]}**"
            cells.append(line)
        headers = [_HEADERS.get(c) or (f"recall {c[7:]}" if c.startswith("recall_") else f"{c[3:].rstrip('±')} F1")
                   for c in columns]
        return markdown_table(["strategy"] + headers, cells)
    return render


# The reference project's own seed-cnn results (its committed runs/*_seed4{0,1,2}/metrics.json and its
# README), as issue 17 quotes them: test macro-F1 at its budget (seed-cnn, batch 256, 30 epochs).
REFERENCE_F1 = {"E0": ("0.509", "3 seeds, 0.509-0.510"), "E5": ("0.586", "3 seeds, 0.576-0.600"),
                "E1": ("0.421", "3 seeds, 0.411-0.433"), "E2": ("0.569", "one run")}
STUDY = "results/converged/summary"
STUDY_40EP = "results/converged/summary_40ep"  # E5 against E0-40ep: the gap at equal budget
STUDY_LABELS = {g: g for g in ("E0", "E0-40ep", "E5", "E2", "E1", "E4", "E6", "LA", "CE-DRW", "LDAM-DRW", "CE-DRS", "CB-sampling",
                               "Focal-DRW", "PH-LA", "PH-TAUNORM", "PH-CRT")}


def reference_table(root: Path) -> str:
    """This study's test macro-F1 beside the reference project's, for its recipes."""
    rows = {r["group"]: r for r in _read_csv(root / STUDY / "summary.csv")}
    cells = []
    for group, (ref, how) in REFERENCE_F1.items():
        r = rows.get(group)
        budget = f", {r['epochs']} epochs" if r and r.get("epochs") else ""
        mine = (f"{float(r['macro_f1_mean']):.3f} ± {float(r['macro_f1_std']):.3f} ({r['n_seeds']} "
                f"seed{'s' if int(r['n_seeds']) > 1 else ''}{budget})") if r else "not run yet"
        cells.append([group, mine, f"{ref} ({how})"])
    def gap(d):
        return f"{float(d['macro_f1_diff_mean']):+.3f} [{float(d['diff_ci95_low']):+.3f}, {float(d['diff_ci95_high']):+.3f}]"
    reference_gap = "+0.077 (3 seeds each; +0.042 between its README's single runs)"
    if "E0" in rows and "E5" in rows:
        cells.append([f"E5 ({rows['E5'].get('epochs')} epochs) - E0 ({rows['E0'].get('epochs')} epochs)", gap(rows["E5"]), reference_gap])
    equal = root / STUDY_40EP / "summary.csv"
    if equal.is_file():  # the equal-budget control: both at 40 epochs
        e5 = next(r for r in _read_csv(equal) if r["group"] == "E5")
        cells.append(["E5 - E0, both at 40 epochs", gap(e5), reference_gap])
    return markdown_table(["recipe", "this study: test macro-F1 (seed-cnn-half)",
                   "the reference: test macro-F1 (seed-cnn, 30 epochs)"], cells)


BLOCKS: dict[str, Callable[[Path], str]] = {
    "shipped-models": shipped_models,
    "shipped-targets": shipped_targets,
    "fast-slim": seed_table(_fast("results/fast_slim", "results/fast_slim_rerun"),
                            [f"results/fast_slim/fast_seed{s}" for s in (42, 1, 2)]),
    "fast-progressive": seed_table(_fast("results/fast_progressive", "results/fast_progressive_rerun"),
                                   [f"results/fast_progressive/fast_seed{s}" for s in (42, 1, 2)]),
    "fast-first": seed_table([("42", "results/fast/fast_seed42"),
                              ("42, an identical earlier run (`results/archive/fast_probe_seed42/`)", "results/archive/fast_probe_seed42"),
                              ("1", "results/fast/fast_seed1"), ("2", "results/fast/fast_seed2")],
                             [f"results/fast/fast_seed{s}" for s in (42, 1, 2)]),
    "study-4epochs": study_table("results/study", {"E0": "E0 (baseline)", "E5": "E5 (reference final)",
                                                  "LA": "LA (= balanced softmax)", "CE-DRW": "CE-DRW",
                                                  "LDAM-DRW": "LDAM-DRW", "CE-DRS": "CE-DRS", "PH-LA": "PH-LA",
                                                  "PH-TAUNORM": "PH-TAUNORM", "PH-CRT": "PH-CRT"}),
    "throughput": throughput_table(["throughput-quick.json", "throughput-quick-epyc-avx512.json",
                                    "throughput-quick-epyc-avx2-kernels.json"]),
    "predict": predict_table([("predict-xeon-amx.json", None),
                              ("predict.json", "Intel Xeon, AMX (`predict.json`, committed 2026-11-29, Haar detector; the JSON predates CPU recording)"),
                              ("predict-epyc-avx512.json", None)]),
    "video": video_table(["video-xeon-amx.json", "video-epyc-avx512.json"]),
    "int8": int8_table("ferkit-recommended.int8.onnx.metrics.json"),
    "detection": detection_table("detection-epyc-avx512.json"),
    "detection-defaults": detection_table("detection-epyc-avx512.json", only_defaults=True),
    "detection-conditions": detection_conditions_table("detection-epyc-avx512.json"),
    "scaling": scaling_table("scaling-xeon-amx.json"),
    "light-install": light_install_table(["light_install-epyc-avx512.json"]),
    "service": service_table(["service_load.json", "service_load-xeon-amx.json", "service_load-xeon-amx-maxside320.json",
                              "service_load-epyc-avx512.json", "service_load-epyc-avx512-maxside320.json"]),
    "converged-main": study_table(STUDY, STUDY_LABELS, ("seeds", "epochs", "val", "macro_f1", "delta", "seed_std", "accuracy",
                                                        "recall_happy", "recall_neutral", "converged")),
    "converged-per-class": study_table(STUDY, STUDY_LABELS, ("seeds",) + tuple(
        f"f1_{c}±" for c in ("angry", "disgust", "fear", "happy", "neutral", "sad", "surprise"))),
    "converged-reference": reference_table,
    "gpu-reference": study_table("results/reference_budget/summary", {"E0": "E0 (softmax + CE)", "E5": "E5 (+ 1/sqrt(n_c) sampler)"},
                                 ("seeds", "val", "macro_f1", "delta", "seed_std", "accuracy", "f1_disgust", "f1_fear")),
    "gpu-throughput": gpu_throughput_table("gpu-h200.json"),
    "time-to-quality": time_to_quality_table(["time_to_quality-epyc-avx512.json", "time_to_quality-epyc-avx512-avx2-kernels.json"],
                                             [f"results/fast_slim/fast_seed{s}" for s in (42, 1, 2)]),
    "kd-study": figures_table([("kd_none: no teacher, sqrt sampler (E5)", "results/kd_study/kd_none"),
                               ("kd_wide_E5: the fer-resnet-wide ensemble (stored), E5", "results/kd_study/kd_wide_E5"),
                               ("kd_wide_E0: the same teacher, no sampler (E0)", "results/kd_study/kd_wide_E0"),
                               ("kd_small_stored: the shipped model (stored), E5", "results/kd_study/kd_small_stored"),
                               ("kd_small_online: the shipped model (online: the student's batch), E5",
                                "results/kd_study/kd_small_online")]),
    "students": val_table([("shipped recommended model (card, single view)", "pretrained/ferkit-recommended.pt.metrics.json"),
                           ("S-aug30: the shipped recipe + the teachers' augmentation", "results/students/S-aug30"),
                           ("S-aug30-kd: the same, distilled from the stored ensemble", "results/students/S-aug30-kd"),
                           ("S-aug60: S-aug30 for 60 epochs", "results/students/S-aug60"),
                           ("S-kd30-online: the shipped recipe, distilled online from the shipped model",
                            "results/students/S-kd30-online"),
                           ("S-kd30-online, seed 43", "results/students/S-kd30-online_seed43")]),
    "students-shift": shift_table("shift-students-epyc-avx512.json", "val", {
        "ferkit-recommended": "shipped model", "S-aug60/best": "S-aug60", "S-kd30-online/best": "S-kd30-online"}),
    "teachers": figures_table([(f"fer-resnet-wide, seed {s}", f"results/teachers/runs/T-wide_seed{s}") for s in (1, 2, 3)]
                              + [("the three averaged (stored logits)", "results/teachers/T-wide-ensemble.npz.metrics.json")]),
    "converged-budget": study_table("results/converged/summary_budget", {
        "E0": "E0", "E0-40ep": "E0-40ep (the control)", "E5-30ep": "E5 (superseded)", "E5": "E5",
        "LDAM-DRW-30ep": "LDAM-DRW (superseded)", "LDAM-DRW-40ep": "LDAM-DRW (superseded)", "LDAM-DRW": "LDAM-DRW"},
        ("epochs", "seeds", "val", "macro_f1", "delta", "converged")),
}
