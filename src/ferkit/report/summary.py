"""Summaries over runs: group seeds, mean ± std, bootstrap CIs and paired tests against a baseline.

A run dir holds `metrics.json` (test split) and `predictions.csv` (see docs/DESIGN.md). Runs are
grouped by their dir name without a seed suffix (`focal_seed3`, `focal-s3` -> `focal`; a dir
named only `seed3` takes its parent's name), or by explicit `NAME=GLOB` patterns.
"""

from __future__ import annotations

import csv
import fnmatch
import gzip
import json
import re
from pathlib import Path

import numpy as np

from ferkit.report import figures
from ferkit.report.convergence import LATE, RULE, convergence, read_val_curve
from ferkit.report.stats import (
    ReportError,
    as_indices,
    bootstrap_ci,
    confusion_counts,
    mcnemar,
    mean_std,
    metrics_from_confusion,
    paired_bootstrap,
    paired_bootstrap_mean,
)
from ferkit.report.tables import summary_table, to_latex, to_markdown, write_csv
from ferkit.runtime.paths import atomic_text

_SEED_SUFFIX = re.compile(r"^(?P<base>.+?)[_-](?:seed|s)(?P<seed>\d+)$", re.IGNORECASE)
_SEED_ONLY = re.compile(r"^(?:seed|s)[_-]?(?P<seed>\d+)$", re.IGNORECASE)
_REQUIRED_METRICS = ("class_names", "accuracy", "macro_f1", "per_class_f1", "confusion_matrix")
_TOLERANCE = 1e-6  # predictions.csv must reproduce metrics.json to this precision


def read_metrics(run_dir: Path | str) -> dict:
    """The test metrics.json of a run dir, checked for the fields reports need."""
    path = Path(run_dir) / "metrics.json"
    if not path.is_file():
        raise ReportError(f"no metrics.json in {run_dir}: pass run dirs written by `ferkit train` or `ferkit eval`")
    try:
        metrics = json.loads(path.read_text(encoding="utf-8"))
    except json.JSONDecodeError as e:
        raise ReportError(f"{path} is not valid JSON ({e.msg}, line {e.lineno}): re-run `ferkit eval`") from None
    missing = [k for k in _REQUIRED_METRICS if k not in metrics]
    if missing:
        raise ReportError(f"{path} lacks {', '.join(missing)}: re-run `ferkit eval` to rewrite it")
    return metrics


def split_seed(run_dir: Path | str) -> tuple[str, int | None]:
    """(group name, seed) from a run dir name: `focal_seed3` -> ("focal", 3), `base` -> ("base", None)."""
    run_dir = Path(run_dir)
    if m := _SEED_SUFFIX.match(run_dir.name):
        return m["base"], int(m["seed"])
    if m := _SEED_ONLY.match(run_dir.name):
        return run_dir.resolve().parent.name, int(m["seed"])
    return run_dir.name, None


def load_run(run_dir: Path | str) -> dict:
    """metrics.json and predictions.csv of one run, with labels as class indices.

    Returns dir, name, seed, metrics, val_metrics (metrics_val.json, or None), class_names, names (image names), y_true, y_pred (int64),
    probs ((N, C) float, or None when the p_<class> columns are absent), val_curve (val macro-F1 per
    epoch from epochs.csv, or None) and convergence (`convergence.convergence` of it, or None).
    """
    run_dir = Path(run_dir)
    metrics = read_metrics(run_dir)
    class_names = list(metrics["class_names"])
    path = run_dir / "predictions.csv"
    if not path.is_file() and (run_dir / "predictions.csv.gz").is_file():
        path = run_dir / "predictions.csv.gz"  # as committed under results/ (a third of the size)
    if not path.is_file():
        raise ReportError(f"no predictions.csv in {run_dir}: re-run `ferkit eval` on it to write one")
    opener = gzip.open if path.suffix == ".gz" else open
    with opener(path, "rt", newline="", encoding="utf-8") as f:
        reader = csv.DictReader(f)
        rows = list(reader)
        header = reader.fieldnames or []
    missing = [c for c in ("name", "true", "pred") if c not in header]
    if missing or not rows:
        what = f"lacks column(s) {', '.join(missing)}" if missing else "holds no rows"
        raise ReportError(f"{path} {what}: expected columns name,true,pred,p_<class>...")
    prob_cols = [f"p_{c}" for c in class_names]
    probs = np.array([[float(r[c]) for c in prob_cols] for r in rows]) if all(c in header for c in prob_cols) else None
    val_path = run_dir / "metrics_val.json"  # written by `ferkit train`: the numbers a choice may use
    val_curve = read_val_curve(run_dir)
    run = {
        "dir": run_dir,
        "name": run_dir.name,
        "seed": split_seed(run_dir)[1],
        "metrics": metrics,
        "val_metrics": json.loads(val_path.read_text(encoding="utf-8")) if val_path.is_file() else None,
        "class_names": class_names,
        "names": [r["name"] for r in rows],
        "y_true": as_indices([r["true"] for r in rows], class_names),
        "y_pred": as_indices([r["pred"] for r in rows], class_names),
        "probs": probs,
        "val_curve": val_curve,
        "convergence": convergence(val_curve) if val_curve else None,
    }
    _check_consistent(run, path)
    return run


def _check_consistent(run: dict, path: Path) -> None:
    """predictions.csv and metrics.json must describe the same evaluation."""
    m = run["metrics"]
    n = len(run["y_true"])
    if n != m.get("num_samples", n):
        raise ReportError(f"{path} has {n} rows but metrics.json says {m['num_samples']} samples: re-run `ferkit eval`")
    check = metrics_from_confusion(confusion_counts(run["y_true"], run["y_pred"], len(run["class_names"])))
    for key in ("accuracy", "macro_f1"):
        if abs(float(check[key]) - m[key]) > _TOLERANCE:
            raise ReportError(
                f"{path} gives {key} {float(check[key]):.6f} but metrics.json says {m[key]:.6f}: "
                "re-run `ferkit eval` so both come from one evaluation"
            )


def parse_group_spec(spec: str) -> tuple[str, str]:
    """`NAME=GLOB` -> (name, glob)."""
    name, sep, pattern = spec.partition("=")
    if not sep or not name.strip() or not pattern.strip():
        raise ReportError(f"bad group {spec!r}: write NAME=GLOB, e.g. focal='runs/focal_*'")
    return name.strip(), pattern.strip().rstrip("/")


def group_runs(run_dirs: list[Path], groups: list[str] | None = None) -> dict[str, list[Path]]:
    """Group run dirs: by explicit `NAME=GLOB` patterns (matched against the dir name or its
    path), and the runs no pattern matches by their name without a seed suffix."""
    specs = [parse_group_spec(g) for g in groups or []]
    names = [n for n, _ in specs]
    if len(set(names)) != len(names):
        raise ReportError(f"group names repeat in {names}: give each --group a distinct name")
    out: dict[str, list[Path]] = {n: [] for n in names}
    for d in map(Path, run_dirs):
        hits = [n for n, p in specs if fnmatch.fnmatchcase(d.name, p) or fnmatch.fnmatchcase(d.as_posix(), p)]
        if len(hits) > 1:
            raise ReportError(f"{d} matches groups {hits}: make the --group patterns exclusive")
        out.setdefault(hits[0] if hits else split_seed(d)[0], []).append(d)
    for name, pattern in specs:
        if not out[name]:
            raise ReportError(f"--group {name}={pattern} matches no run dir: check the pattern")
    return out


def _mean_std_cols(name: str, values) -> dict:
    """`<name>_mean` and `<name>_std` columns over seeds."""
    mean, std = mean_std(values)
    return {f"{name}_mean": float(mean), f"{name}_std": float(std)}


def _sort_runs(runs: list[dict]) -> list[dict]:
    """By seed when every run has one, else by dir name: the order used to pair runs."""
    if all(r["seed"] is not None for r in runs):
        return sorted(runs, key=lambda r: r["seed"])
    return sorted(runs, key=lambda r: str(r["dir"]))


def group_row(name: str, runs: list[dict], n_boot: int = 1000, seed: int = 0) -> dict:
    """One summary row: mean ± std over seeds, and bootstrap CIs (per seed, then averaged)."""
    class_names = runs[0]["class_names"]
    row = {"group": name, "n_seeds": len(runs), "runs": ";".join(r["name"] for r in runs)}
    row |= _mean_std_cols("accuracy", [r["metrics"]["accuracy"] for r in runs])
    row |= _mean_std_cols("macro_f1", [r["metrics"]["macro_f1"] for r in runs])
    per_class = np.array([r["metrics"]["per_class_f1"] for r in runs], dtype=np.float64)
    for c, column in zip(class_names, per_class.T):
        row |= _mean_std_cols(f"f1_{c}", column)
    if all("per_class_recall" in r["metrics"] for r in runs):  # per-class accuracy: what a strategy costs a class
        recall = np.array([r["metrics"]["per_class_recall"] for r in runs], dtype=np.float64)
        for c, column in zip(class_names, recall.T):
            row |= _mean_std_cols(f"recall_{c}", column)
    if all(r.get("val_metrics") for r in runs):  # val: the split on which a strategy may be chosen
        row |= _mean_std_cols("val_macro_f1", [r["val_metrics"]["macro_f1"] for r in runs])
        row |= _mean_std_cols("val_accuracy", [r["val_metrics"]["accuracy"] for r in runs])
    checked = [r["convergence"] for r in runs if r["convergence"]]
    if checked:  # post-hoc runs have no curve of their own
        row["n_converged"] = sum(c["converged"] for c in checked)
        row["n_checked"] = len(checked)
        row["epochs"] = "/".join(str(e) for e in sorted({c["epochs"] for c in checked}))  # the budget, "30" or "30/40"
        row |= _mean_std_cols("best_epoch", [c["best_epoch"] for c in checked])
    for metric in ("macro_f1", "accuracy"):
        cis = np.array([bootstrap_ci(r["y_true"], r["y_pred"], class_names, metric, n_boot, seed) for r in runs])
        row[f"{metric}_ci95_low"], row[f"{metric}_ci95_high"] = (float(v) for v in cis.mean(axis=0))
    return row


def pair_runs(runs: list[dict], base_runs: list[dict]) -> list[tuple[dict, dict]]:
    """Pairs (run, baseline run): every run with the baseline when it is one run (a shipped model, one
    seed of a recipe: the interval then holds the runs' seed noise, not the baseline's), else by seed
    number when both sides have seeds in common, else by order."""
    if len(base_runs) == 1:
        return [(r, base_runs[0]) for r in runs]
    if all(r["seed"] is not None for r in runs + base_runs):
        by_seed = {r["seed"]: r for r in base_runs}
        pairs = [(r, by_seed[r["seed"]]) for r in runs if r["seed"] in by_seed]
        if pairs:
            return pairs
    return list(zip(_sort_runs(runs), _sort_runs(base_runs)))


def _aligned(run: dict, base: dict) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(y_true, pred, base_pred) on the same images in the same order."""
    if run["names"] == base["names"]:
        order = np.arange(len(base["names"]))
    elif sorted(run["names"]) == sorted(base["names"]) and len(set(run["names"])) == len(run["names"]):
        position = {n: i for i, n in enumerate(base["names"])}
        order = np.array([position[n] for n in run["names"]])
    else:
        raise ReportError(
            f"{run['dir']} and {base['dir']} were evaluated on different test images: "
            "compare runs on the same test split"
        )
    if not np.array_equal(run["y_true"], base["y_true"][order]):
        raise ReportError(f"{run['dir']} and {base['dir']} disagree on true labels: were they built from one dataset?")
    return run["y_true"], run["y_pred"], base["y_pred"][order]


def paired_rows(
    name: str, baseline: str, matched: list[tuple[dict, dict]], aligned: list[tuple], n_boot: int = 1000, seed: int = 0
) -> list[dict]:
    """One row per seed pair (`pair_runs`, aligned by `_aligned`): paired-bootstrap macro-F1
    difference (run - baseline) and McNemar."""
    rows = []
    for (run, base), (y_true, pred, base_pred) in zip(matched, aligned):
        boot = paired_bootstrap(y_true, pred, base_pred, run["class_names"], n_boot=n_boot, seed=seed)
        test = mcnemar(y_true, pred, base_pred)
        rows.append(
            {
                "group": name,
                "baseline": baseline,
                "run": run["name"],
                "baseline_run": base["name"],
                "seed": "" if run["seed"] is None else run["seed"],
                "macro_f1": run["metrics"]["macro_f1"],
                "baseline_macro_f1": base["metrics"]["macro_f1"],
                "macro_f1_diff": boot["diff"],
                "diff_ci95_low": boot["low"],
                "diff_ci95_high": boot["high"],
                "bootstrap_p": boot["p_value"],
                "mcnemar_b": test["b"],
                "mcnemar_c": test["c"],
                "mcnemar_p": test["p_value"],
            }
        )
    return rows


def comparison_cols(
    aligned: list[tuple], pairs: list[dict], class_names: list[str], n_boot: int = 1000, seed: int = 0
) -> dict:
    """Group-level comparison with the baseline: the seed-mean macro-F1 difference with a two-level
    paired bootstrap CI (test images and seed pairs resampled; `stats.paired_bootstrap_mean`), the
    std of the per-seed differences (seed noise), and the largest McNemar p over the pairs."""
    boot = paired_bootstrap_mean(
        aligned[0][0], [a[1] for a in aligned], [a[2] for a in aligned], class_names, "macro_f1", n_boot, seed
    )
    diffs = [p["macro_f1_diff"] for p in pairs]
    return {
        "n_pairs": len(pairs),
        "macro_f1_diff_mean": boot["diff"],
        "diff_ci95_low": boot["low"],
        "diff_ci95_high": boot["high"],
        "diff_bootstrap_p": boot["p_value"],
        "diff_seed_std": float(np.std(diffs, ddof=1)) if len(diffs) > 1 else 0.0,
        "mcnemar_p_max": float(max(p["mcnemar_p"] for p in pairs)),
    }


def majority_classes(metrics: dict, k: int = 2) -> list[str]:
    """The k classes with the most test images (FER-2013: happy and neutral, also the largest in train)."""
    support = metrics.get("support")
    if not support:
        return []
    order = sorted(range(len(support)), key=lambda i: -support[i])
    return [metrics["class_names"][i] for i in order[:k]]


def convergence_rows(runs: dict[str, list[dict]]) -> list[dict]:
    """One row per run with a val curve: its convergence test (convergence.csv)."""
    return [
        {"group": name, "run": r["name"], "seed": "" if r["seed"] is None else r["seed"]} | r["convergence"]
        for name, group in runs.items()
        for r in group
        if r["convergence"]
    ]


def summarize(
    run_dirs: list[Path],
    out_dir: Path | str,
    groups: list[str] | None = None,
    baseline: str | None = None,
    n_boot: int = 1000,
    seed: int = 0,
    log=print,
) -> list[dict]:
    """Summarise runs per group and write summary.csv/.md/.tex, per_class_f1.png (+ paired.csv, and
    convergence.csv with val_curves.png for runs that have an epochs.csv).

    Columns: group, n_seeds, runs, <metric>_mean/_std over seeds for accuracy, macro_f1, each
    f1_<class> and recall_<class>; macro_f1/accuracy _ci95_low/_high: 95% bootstrap CI over test
    images computed per seed, then averaged over seeds; n_converged of n_checked runs pass the
    convergence test (each failure is logged). With `baseline` (a group name), each other group is
    compared with it seed pair by seed pair (paired.csv; a baseline of one run is paired with every
    run, `pair_runs`), and its row gets the seed-mean difference with its two-level paired
    bootstrap CI and the seed std of the difference.
    """
    if not run_dirs:
        raise ReportError("no run dirs given: pass at least one run dir")
    grouped = group_runs(run_dirs, groups)
    runs = {name: _sort_runs([load_run(d) for d in dirs]) for name, dirs in grouped.items()}
    class_names = next(iter(runs.values()))[0]["class_names"]
    for r in (r for rs in runs.values() for r in rs):
        if r["class_names"] != class_names:
            raise ReportError(
                f"{r['dir']} has classes {r['class_names']}, expected {class_names}: summarise runs of the same classes"
            )
    if baseline is not None and baseline not in runs:
        raise ReportError(f"baseline group {baseline!r} not found: choose one of {list(runs)}")

    rows, all_pairs = [], []
    for name, group in runs.items():
        row = group_row(name, group, n_boot, seed)
        if baseline is not None and name != baseline:
            matched = pair_runs(group, runs[baseline])
            aligned = [_aligned(run, base) for run, base in matched]  # once: both views below use it
            pairs = paired_rows(name, baseline, matched, aligned, n_boot, seed)
            unpaired = len(group) - len(pairs)
            if unpaired:
                log(
                    f"note: {unpaired} run(s) of {name} have no matching {baseline} run "
                    "and are left out of the paired comparison"
                )
            row |= {"baseline": baseline} | comparison_cols(aligned, pairs, class_names, n_boot, seed)
            all_pairs += pairs
        rows.append(row)

    checks = convergence_rows(runs)
    for c in checks:
        if not c["converged"]:
            log(
                f"NOT CONVERGED: {c['run']}: {c['why']}; the last {LATE} epochs gained {c['late_gain']:+.4f} over the "
                f"best before them"
            )
    if checks:
        log(f"convergence: {sum(c['converged'] for c in checks)} of {len(checks)} runs converged ({RULE})")
    if baseline is not None and not all_pairs:
        log(f"note: {baseline} is the only group: nothing to compare it with, no paired.csv written")
    out_dir = Path(out_dir)  # each file below appears whole or not at all (ferkit.runtime.paths)
    write_csv(out_dir / "summary.csv", rows)
    table = summary_table(
        rows, class_names, baseline, n_boot, majority_classes(next(iter(runs.values()))[0]["metrics"])
    )
    atomic_text(out_dir / "summary.md", to_markdown(*table))
    atomic_text(out_dir / "summary.tex", to_latex(*table))
    if all_pairs:
        write_csv(out_dir / "paired.csv", all_pairs)
    if checks:
        write_csv(out_dir / "convergence.csv", checks)
        figures.val_curves_chart(
            {name: [r["val_curve"] for r in group if r["val_curve"]] for name, group in runs.items()},
            out_dir / "val_curves.png",
            baseline,
        )
    bars = {
        f"{r['group']} (n={r['n_seeds']})": {
            "mean": [r[f"f1_{c}_mean"] for c in class_names],
            "std": [r[f"f1_{c}_std"] for c in class_names],
        }
        for r in rows
    }
    figures.per_class_f1_chart(
        bars, class_names, out_dir / "per_class_f1.png", title="test per-class F1 (mean ± std over seeds)"
    )
    return rows
