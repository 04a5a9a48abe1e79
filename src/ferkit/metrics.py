"""Labels and probabilities -> numbers, each computed one way, in one place (numpy, scikit-learn).

`compute_metrics` is the only function that turns labels into metrics (`macro_f1` its headline
figure); predictions.csv is written and read here; `calibration_of` is metrics.json's
"calibration" entry (`ferkit.calibration`'s measures, before and after a checkpoint's
temperature) and the coverage curve, which `write_calibration_outputs` draws with the
reliability diagram. Nothing here needs a model: `ferkit.evaluate` runs one and calls these.
"""

from __future__ import annotations

import csv
from pathlib import Path
from typing import Any

import numpy as np
from sklearn.metrics import accuracy_score, confusion_matrix, f1_score, precision_recall_fscore_support

from ferkit.calibration import adjust, calibration_metrics, coverage_curve, reliability, temperature_for
from ferkit.runtime.paths import atomic_file
from ferkit.tta import tta_mode


def macro_f1(y_true: np.ndarray, y_pred: np.ndarray, num_classes: int) -> float:
    """The mean F1 over all `num_classes` classes (0 for a class neither true nor predicted)."""
    return float(f1_score(y_true, y_pred, labels=list(range(num_classes)), average="macro", zero_division=0))


def compute_metrics(y_true: np.ndarray, y_pred: np.ndarray, class_names: list[str]) -> dict:
    """Accuracy, macro-F1, per-class precision/recall/F1 and the confusion matrix (true x predicted)."""
    labels = list(range(len(class_names)))
    p, r, f1, support = precision_recall_fscore_support(y_true, y_pred, labels=labels, zero_division=0)
    m = {
        "accuracy": float(accuracy_score(y_true, y_pred)),
        "macro_f1": macro_f1(y_true, y_pred, len(class_names)),
        "per_class_f1": [float(v) for v in f1],
        "per_class_precision": [float(v) for v in p],
        "per_class_recall": [float(v) for v in r],
        "support": [int(v) for v in support],
        "confusion_matrix": confusion_matrix(y_true, y_pred, labels=labels).tolist(),
        "class_names": list(class_names),
        "num_samples": int(len(y_true)),
    }
    m |= {f"f1_{c}": float(v) for c, v in zip(class_names, f1)}
    return m


def write_predictions(
    path: Path, names: list[str], y_true: np.ndarray, probs: np.ndarray, class_names: list[str]
) -> None:
    """One row per image: name, true and predicted class names, and every class probability."""
    pred = probs.argmax(1)
    with atomic_file(path, "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["name", "true", "pred"] + [f"p_{c}" for c in class_names])
        for n, t, p, pr in zip(names, y_true, pred, probs):
            w.writerow([n, class_names[t], class_names[p]] + [f"{v:.6f}" for v in pr])


def read_predictions(path: Path) -> tuple[np.ndarray, np.ndarray, np.ndarray, list[str]]:
    """A predictions.csv as (true, predicted, probabilities (N, C), class names)."""
    with open(path, newline="", encoding="utf-8") as f:
        rows = list(csv.DictReader(f))
    if not rows:
        raise ValueError(f"{path} holds no predictions")
    class_names = [k[2:] for k in rows[0] if k.startswith("p_")]
    index = {c: i for i, c in enumerate(class_names)}
    probs = np.array([[float(r[f"p_{c}"]) for c in class_names] for r in rows])
    return (np.array([index[r["true"]] for r in rows]), np.array([index[r["pred"]] for r in rows]), probs, class_names)


def metrics_from_predictions(path: Path) -> dict:
    """Recompute metrics from a predictions.csv alone (the file is self-contained)."""
    y_true, y_pred, _, class_names = read_predictions(path)
    return compute_metrics(y_true, y_pred, class_names)


def calibration_of(
    probs: np.ndarray, labels: np.ndarray, record: dict | None = None, tta: bool | str | None = "none"
) -> tuple[dict, list[dict]]:
    """metrics.json's "calibration" entry for one split's probabilities (the model's own: ECE,
    class-wise ECE, NLL, Brier; with a checkpoint's `calibration` record, the same after its
    temperature for this `tta`, under "scaled"), and the coverage curve of the probabilities a
    Predictor gives (scaled where there is a temperature)."""
    cal: dict[str, Any] = calibration_metrics(probs, labels)
    scaled = probs
    if record:
        t = temperature_for(record, tta_mode(tta))
        scaled = adjust(probs, t)
        cal |= {
            "temperature": t,
            "fitted": f"{record.get('fitted_on')}, TTA {tta_mode(tta)}",
            "scaled": calibration_metrics(scaled, labels),
        }
    return cal, coverage_curve(scaled, labels, lambda y, p: macro_f1(y, p, probs.shape[1]))


def calibration_from_predictions(
    path: Path, record: dict | None = None, tta: bool | str | None = "none"
) -> tuple[dict, list[dict]]:
    """`calibration_of` a predictions.csv alone (its probabilities have 6 decimals)."""
    y_true, _, probs, _ = read_predictions(path)
    return calibration_of(probs, y_true, record, tta)


def write_calibration_outputs(
    out_dir: Path, suffix: str, probs: np.ndarray, labels: np.ndarray, cal: dict, coverage: list[dict], title: str
) -> None:
    """coverage{suffix}.csv and .png, and reliability{suffix}.png (raw and, if any, scaled bins)."""
    with atomic_file(out_dir / f"coverage{suffix}.csv", "w", newline="") as f:
        w = csv.DictWriter(f, list(coverage[0]))
        w.writeheader()
        w.writerows({k: (f"{v:.6f}" if isinstance(v, float) else v) for k, v in r.items()} for r in coverage)
    from ferkit.report.figures import _new_figure, _save  # matplotlib is slow to import: only when drawing

    curves = {f"model (ECE {cal['ece']:.3f})": probs}
    if "scaled" in cal:
        curves[f"T = {cal['temperature']:.3f} (ECE {cal['scaled']['ece']:.3f})"] = adjust(
            probs, float(cal["temperature"])
        )
    fig = _new_figure((4.5, 4.5))
    ax = fig.add_subplot()
    ax.plot([0, 1], [0, 1], color="grey", lw=0.8, ls="--", label="calibrated")
    for (name, p), marker in zip(curves.items(), "os"):
        r = reliability(p, labels)
        ok = r["count"] > 0
        ax.plot(r["confidence"][ok], r["accuracy"][ok], marker=marker, ms=4, label=name)
    ax.set(
        xlim=(0, 1),
        ylim=(0, 1),
        xlabel="top-class probability (mean in each of 15 bins)",
        ylabel="accuracy in the bin",
        title=f"{title}: reliability",
    )
    ax.legend(loc="upper left", fontsize=8)
    fig.tight_layout()
    _save(fig, out_dir / f"reliability{suffix}.png")
    fig = _new_figure((5, 4))
    ax = fig.add_subplot()
    cover = [r["coverage"] for r in coverage]
    ax.plot(cover, [r["accuracy"] for r in coverage], marker="o", ms=3, label="accuracy")
    ax.plot(cover, [r["macro_f1"] for r in coverage], marker="s", ms=3, label="macro-F1")
    for r in coverage[::4]:
        ax.annotate(
            f"{r['threshold']:.2f}",
            (r["coverage"], r["accuracy"]),
            fontsize=7,
            xytext=(3, 3),
            textcoords="offset points",
        )
    ax.set(
        xlim=(0, 1.02),
        xlabel="coverage (share of faces not 'uncertain')",
        ylabel="on the faces kept",
        title=f"{title}: --min-score (labels: the threshold)",
    )
    ax.legend(fontsize=8)
    fig.tight_layout()
    _save(fig, out_dir / f"coverage{suffix}.png")
