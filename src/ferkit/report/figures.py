"""Figures of results: confusion matrices and per-class F1 bar charts (PNG).

Figures are drawn on `matplotlib.figure.Figure` with an explicit Agg canvas: no pyplot, no
display, no global figure state, so they work on headless machines and inside threads.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from ferkit.report.stats import ReportError
from ferkit.runtime.paths import atomic_write

if TYPE_CHECKING:
    from matplotlib.figure import Figure

DPI = 120


def row_normalise(cm: np.ndarray) -> np.ndarray:
    """Each true-class row divided by its total (rows with no items stay 0)."""
    cm = np.asarray(cm, dtype=np.float64)
    totals = cm.sum(axis=1, keepdims=True)
    return np.divide(cm, totals, out=np.zeros_like(cm), where=totals > 0)


def _new_figure(figsize: tuple[float, float]) -> Figure:
    """A matplotlib Figure (matplotlib loads here, not on import: the inference install has none)."""
    from matplotlib.figure import Figure

    return Figure(figsize=figsize)


def _save(fig: Figure, path: Path | str) -> Path:
    """Save as the suffix says (.png), whole or not at all (`atomic_write`)."""
    path = Path(path)
    from matplotlib.backends.backend_agg import FigureCanvasAgg

    FigureCanvasAgg(fig)
    return atomic_write(path, lambda f: fig.savefig(f, dpi=DPI, format=path.suffix.lstrip(".") or "png"))


def _draw_matrix(ax, values: np.ndarray, class_names: list[str], title: str, fmt: str, vmax: float) -> None:
    """One annotated heat map of a (C, C) matrix on `ax`, true classes down, predictions across."""
    im = ax.imshow(values, cmap="Blues", vmin=0, vmax=vmax)
    ticks = np.arange(len(class_names))
    ax.set_xticks(ticks, labels=class_names, rotation=45, ha="right")
    ax.set_yticks(ticks, labels=class_names)
    ax.set_xlabel("predicted")
    ax.set_ylabel("true")
    ax.set_title(title)
    for i in range(values.shape[0]):
        for j in range(values.shape[1]):
            # White text on dark cells, black on light ones, so every number stays readable.
            color = "white" if values[i, j] > vmax / 2 else "black"
            ax.text(j, i, format(values[i, j], fmt), ha="center", va="center", color=color, fontsize=8)
    ax.figure.colorbar(im, ax=ax, fraction=0.046, pad=0.04)


def _check_square(cm: np.ndarray, class_names: list[str]) -> np.ndarray:
    cm = np.asarray(cm)
    if cm.shape != (len(class_names), len(class_names)):
        raise ReportError(f"confusion matrix has shape {cm.shape} but there are {len(class_names)} classes")
    return cm


def plot_confusion(cm: np.ndarray, class_names: list[str], path: Path | str, title: str = "") -> Path:
    """Write one PNG: counts (left) and row-normalised rates (right, each true row sums to 1)."""
    cm = _check_square(cm, class_names)
    fig = _new_figure((13, 5.6))
    ax_counts, ax_rates = fig.subplots(1, 2)
    _draw_matrix(
        ax_counts, cm, class_names, "counts", "d" if cm.dtype.kind in "iu" else ".0f", vmax=max(float(cm.max()), 1.0)
    )
    _draw_matrix(ax_rates, row_normalise(cm), class_names, "row-normalised (recall per class)", ".2f", vmax=1.0)
    if title:
        fig.suptitle(title)
    fig.tight_layout()
    return _save(fig, path)


def compare_confusions(metrics: dict[str, dict], out_path: Path | str) -> Path:
    """Row-normalised confusion matrices of two or more runs side by side in one PNG.

    `metrics`: {label: a run's metrics dict (`confusion_matrix`, `class_names`, `macro_f1`)}."""
    if len(metrics) < 2:
        raise ReportError(f"comparing confusion matrices needs at least two runs, got {len(metrics)}")
    labels, runs = list(metrics), list(metrics.values())
    class_names = runs[0]["class_names"]
    for label, m in metrics.items():
        if m["class_names"] != class_names:
            raise ReportError(
                f"{label} has classes {m['class_names']}, {labels[0]} has {class_names}: "
                "compare runs of the same classes"
            )
    ncols = min(len(runs), 4)
    nrows = -(-len(runs) // ncols)
    fig = _new_figure((5.6 * ncols, 5.2 * nrows))
    axes = np.atleast_1d(fig.subplots(nrows, ncols)).ravel()
    for ax, label, m in zip(axes, labels, runs):
        cm = _check_square(m["confusion_matrix"], class_names)
        _draw_matrix(ax, row_normalise(cm), class_names, f"{label}\nmacro-F1 {m['macro_f1']:.3f}", ".2f", vmax=1.0)
    for ax in axes[len(runs) :]:
        ax.set_visible(False)
    fig.tight_layout()
    return _save(fig, out_path)


def _bar_values(value, n_classes: int, name: str) -> tuple[np.ndarray, np.ndarray]:
    """(mean, std) per class from a list of C values, a (2, C) array or a {"mean", "std"} dict."""
    if isinstance(value, dict):
        mean, std = np.asarray(value["mean"], float), np.asarray(value.get("std", np.zeros(n_classes)), float)
    else:
        arr = np.asarray(value, dtype=float)
        mean, std = (arr, np.zeros(n_classes)) if arr.ndim == 1 else (arr[0], arr[1])
    if mean.shape != (n_classes,) or std.shape != (n_classes,):
        raise ReportError(f"per-class F1 of {name!r} has {mean.size} values, expected {n_classes} (one per class)")
    return mean, std


def per_class_f1_chart(groups: dict, class_names: list[str], out_path: Path | str, title: str = "per-class F1") -> Path:
    """Grouped bar chart: one group of bars per class, one bar per run/strategy, std error bars.

    `groups` maps a label to its per-class F1: a list of C values (one run), or the mean and std
    over seeds as a {"mean": [...], "std": [...]} dict or a (2, C) array.
    """
    if not groups:
        raise ReportError("no runs to chart: pass at least one run")
    n = len(groups)
    x = np.arange(len(class_names))
    width = 0.8 / n
    fig = _new_figure((max(8.0, 1.2 * len(class_names) + 0.4 * n * len(class_names) / 2), 4.8))
    ax = fig.subplots()
    for k, (label, value) in enumerate(groups.items()):
        mean, std = _bar_values(value, len(class_names), label)
        ax.bar(x - 0.4 + width * (k + 0.5), mean, width, label=label, yerr=std if np.any(std > 0) else None, capsize=3)
    ax.set_xticks(x, labels=class_names)
    ax.set_ylim(0, 1)
    ax.set_ylabel("F1")
    ax.set_title(title)
    ax.grid(axis="y", alpha=0.3)
    ax.legend(fontsize=8, ncols=min(n, 4))
    fig.tight_layout()
    return _save(fig, out_path)


def val_curves_chart(
    curves: dict[str, list[list[float]]],
    out_path: Path | str,
    baseline: str | None = None,
    title: str = "val macro-F1 per epoch",
) -> Path:
    """Small multiples, one panel per group: each seed's val macro-F1 curve, and the baseline group's
    seed-mean curve dashed in every other panel, so that each strategy's curve reads against it."""
    curves = {name: runs for name, runs in curves.items() if runs}
    if not curves:
        raise ReportError("no val curves to draw: the runs have no epochs.csv")
    ncols = min(len(curves), 4)
    nrows = -(-len(curves) // ncols)
    fig = _new_figure((3.6 * ncols, 2.8 * nrows))
    axes = np.atleast_1d(fig.subplots(nrows, ncols, sharey=True)).ravel()
    base_mean = None
    if baseline in curves:
        length = min(map(len, curves[baseline]))
        base_mean = np.mean([c[:length] for c in curves[baseline]], axis=0)
    for ax, (name, runs) in zip(axes, curves.items()):
        for curve in runs:
            ax.plot(np.arange(1, len(curve) + 1), curve, lw=1.2)
        if base_mean is not None and name != baseline:
            ax.plot(np.arange(1, len(base_mean) + 1), base_mean, "k--", lw=1, label=f"{baseline} (mean)")
            ax.legend(fontsize=7, loc="lower right")
        ax.set_title(f"{name} (n={len(runs)})", fontsize=9)
        ax.grid(alpha=0.3)
        ax.set_xlabel("epoch", fontsize=8)
        from matplotlib.ticker import MaxNLocator

        ax.xaxis.set_major_locator(MaxNLocator(integer=True))
    for ax in axes[len(curves) :]:
        ax.set_visible(False)
    axes[0].set_ylabel("val macro-F1")
    fig.suptitle(title)
    fig.tight_layout()
    return _save(fig, out_path)
