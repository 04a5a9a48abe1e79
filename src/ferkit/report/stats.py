"""Uncertainty of test-set metrics: bootstrap confidence intervals and paired tests.

Every number here comes from confusion matrices through `metrics_from_confusion`, the one
helper that turns counts into accuracy and F1. It is tested to equal scikit-learn's
`accuracy_score` and `f1_score(average="macro", zero_division=0)` (as used by
`ferkit.evaluate.compute_metrics`); it exists so that 1000 bootstrap resamples take
milliseconds instead of a minute of sklearn calls.
"""

from __future__ import annotations

import math

import numpy as np

# Resample in chunks so that (chunk x n) index arrays stay around 32 MB even for large test sets.
_MAX_CHUNK_ITEMS = 4_000_000


class ReportError(Exception):
    """Bad input to a report: one short line that says what is wrong and how to fix it."""


def as_indices(labels, class_names: list[str]) -> np.ndarray:
    """Class indices (int64) from either indices or class names."""
    arr = np.asarray(labels)
    if arr.dtype.kind in "UO":
        index = {c: i for i, c in enumerate(class_names)}
        unknown = sorted({str(v) for v in arr.tolist()} - index.keys())
        if unknown:
            raise ReportError(f"unknown class name(s) {unknown[:3]}: expected one of {class_names}")
        return np.array([index[v] for v in arr.tolist()], dtype=np.int64)
    arr = arr.astype(np.int64)
    if arr.size and (arr.min() < 0 or arr.max() >= len(class_names)):
        raise ReportError(f"class index out of range 0..{len(class_names) - 1}")
    return arr


def mean_std(values) -> tuple[np.ndarray, np.ndarray]:
    """Mean and sample std (ddof=1) over the first axis (seeds); the std of a single seed is 0."""
    v = np.asarray(values, dtype=np.float64)
    return v.mean(axis=0), v.std(axis=0, ddof=1) if len(v) > 1 else np.zeros_like(v[0])


def _check_pair(y_true: np.ndarray, *preds: np.ndarray) -> None:
    for p in preds:
        if p.shape != y_true.shape:
            raise ReportError(f"labels and predictions differ in length: {len(y_true)} vs {len(p)}")
    if len(y_true) == 0:
        raise ReportError("no test items: cannot compute metrics of an empty split")


def confusion_counts(y_true: np.ndarray, y_pred: np.ndarray, n_classes: int) -> np.ndarray:
    """Confusion matrix (true x predicted) of integer labels, via one bincount."""
    codes = np.asarray(y_true, dtype=np.int64) * n_classes + np.asarray(y_pred, dtype=np.int64)
    return np.bincount(codes, minlength=n_classes * n_classes).reshape(n_classes, n_classes)


def metrics_from_confusion(cm: np.ndarray) -> dict[str, np.ndarray]:
    """Accuracy, macro-F1 and per-class F1 of one confusion matrix (C, C) or a stack (..., C, C).

    F1 of a class is 2 TP / (2 TP + FP + FN), and 0 when that denominator is 0 (a class that is
    neither present nor predicted), which is sklearn's `zero_division=0` with all labels listed.
    """
    cm = np.asarray(cm, dtype=np.float64)
    tp = np.diagonal(cm, axis1=-2, axis2=-1)
    true_counts = cm.sum(axis=-1)  # rows: true class
    pred_counts = cm.sum(axis=-2)  # columns: predicted class
    denom = true_counts + pred_counts
    f1 = np.divide(2 * tp, denom, out=np.zeros_like(tp), where=denom > 0)
    return {
        "accuracy": tp.sum(axis=-1) / cm.sum(axis=(-2, -1)),
        "macro_f1": f1.mean(axis=-1),
        "per_class_f1": f1,
    }


def _metric_values(cms: np.ndarray, metric: str, class_names: list[str]) -> np.ndarray:
    """One metric from a stack of confusion matrices: accuracy, macro_f1 or f1_<class>."""
    m = metrics_from_confusion(cms)
    if metric in ("accuracy", "macro_f1"):
        return m[metric]
    if metric.startswith("f1_") and metric[3:] in class_names:
        return m["per_class_f1"][..., class_names.index(metric[3:])]
    choices = ["accuracy", "macro_f1"] + [f"f1_{c}" for c in class_names]
    raise ReportError(f"unknown metric {metric!r}: choose one of {choices}")


def _bootstrap_cms(
    y_true: np.ndarray, preds: list[np.ndarray], n_classes: int, n_boot: int, seed: int
) -> list[np.ndarray]:
    """Confusion matrices (n_boot, C, C) of each prediction array, all on the same resampled items."""
    n = len(y_true)
    rng = np.random.default_rng(seed)
    codes = [y_true * n_classes + p for p in preds]
    out = [np.empty((n_boot, n_classes, n_classes), dtype=np.int64) for _ in preds]
    chunk = max(1, _MAX_CHUNK_ITEMS // n)
    cc = n_classes * n_classes
    for start in range(0, n_boot, chunk):
        rows = min(chunk, n_boot - start)
        idx = rng.integers(0, n, size=(rows, n))
        # Offset each resample's codes so that one bincount fills all its confusion matrices.
        offset = (np.arange(rows, dtype=np.int64) * cc)[:, None]
        for c, o in zip(codes, out):
            counts = np.bincount((c[idx] + offset).ravel(), minlength=rows * cc)
            o[start : start + rows] = counts.reshape(rows, n_classes, n_classes)
    return out


def bootstrap_ci(
    y_true,
    y_pred,
    class_names: list[str],
    metric: str = "macro_f1",
    n_boot: int = 1000,
    seed: int = 0,
    alpha: float = 0.05,
) -> tuple[float, float]:
    """Percentile bootstrap (1 - alpha) CI of a metric, resampling test items with replacement."""
    y_true, y_pred = as_indices(y_true, class_names), as_indices(y_pred, class_names)
    _check_pair(y_true, y_pred)
    if n_boot < 1:
        raise ReportError(f"n_boot must be at least 1, got {n_boot}")
    (cms,) = _bootstrap_cms(y_true, [y_pred], len(class_names), n_boot, seed)
    values = _metric_values(cms, metric, class_names)
    low, high = np.quantile(values, [alpha / 2, 1 - alpha / 2])
    return float(low), float(high)


def paired_bootstrap(y_true, pred_a, pred_b, class_names: list[str], **settings) -> dict:
    """Difference metric(a) - metric(b) with a paired bootstrap CI and two-sided p-value.

    Both predictions are scored on the same resampled items, so item difficulty cancels out.
    p_value = 2 * min(P(d* <= 0), P(d* >= 0)) with add-one smoothing (never exactly 0), capped at 1.
    `settings` (metric, n_boot, seed, alpha) are those of `paired_bootstrap_mean`, of which this is one pair.
    """
    return paired_bootstrap_mean(y_true, [pred_a], [pred_b], class_names, **settings)


def paired_bootstrap_mean(
    y_true,
    preds_a: list,
    preds_b: list,
    class_names: list[str],
    metric: str = "macro_f1",
    n_boot: int = 1000,
    seed: int = 0,
    alpha: float = 0.05,
    resample_seeds: bool = True,
) -> dict:
    """Mean over seed pairs of metric(a_s) - metric(b_s), with a paired bootstrap CI and p-value.

    Each resample draws test items with replacement, and every prediction array (all seeds of both
    sides) is scored on those same items, so item difficulty cancels out. With `resample_seeds`, each
    resample also draws the seed pairs with replacement (a two-level bootstrap), so the interval
    holds both sources of noise: which test images, and which training seeds. Without it, the
    interval is that of these seeds' mean under test-set sampling only. One pair is `paired_bootstrap`.
    """
    y_true = as_indices(y_true, class_names)
    preds_a = [as_indices(p, class_names) for p in preds_a]
    preds_b = [as_indices(p, class_names) for p in preds_b]
    if not preds_a or len(preds_a) != len(preds_b):
        raise ReportError(f"need as many runs on each side, at least one: got {len(preds_a)} and {len(preds_b)}")
    _check_pair(y_true, *preds_a, *preds_b)
    if n_boot < 1:
        raise ReportError(f"n_boot must be at least 1, got {n_boot}")
    c, k = len(class_names), len(preds_a)
    point = _metric_values(np.stack([confusion_counts(y_true, p, c) for p in preds_a + preds_b]), metric, class_names)
    cms = _bootstrap_cms(y_true, preds_a + preds_b, c, n_boot, seed)
    values = np.stack([_metric_values(m, metric, class_names) for m in cms])  # (2k, n_boot)
    per_pair = values[:k] - values[k:]  # (k, n_boot)
    if resample_seeds and k > 1:
        pick = np.random.default_rng([seed, 1]).integers(0, k, size=(n_boot, k))  # seed pairs drawn per resample
        d = per_pair[pick, np.arange(n_boot)[:, None]].mean(axis=1)
    else:
        d = per_pair.mean(axis=0)
    low, high = np.quantile(d, [alpha / 2, 1 - alpha / 2])
    tail = min(np.sum(d <= 0), np.sum(d >= 0))
    p_value = min(1.0, 2 * (tail + 1) / (n_boot + 1))
    return {
        "diff": float(point[:k].mean() - point[k:].mean()),
        "low": float(low),
        "high": float(high),
        "p_value": float(p_value),
    }


def binomial_two_sided_p(k: int, n: int) -> float:
    """Exact two-sided p-value of k successes in n fair coin flips: 2 * P(X <= min(k, n-k)), capped at 1."""
    if n == 0:
        return 1.0
    k = min(k, n - k)
    tail = sum(math.comb(n, i) for i in range(k + 1))
    return min(1.0, 2 * tail / 2**n)  # exact integers; int / int rounds correctly even for huge n


def mcnemar(y_true, pred_a, pred_b) -> dict:
    """Exact McNemar test on which items each classifier gets right.

    b: items a gets right and b gets wrong; c: the reverse. Under "equally accurate", b is
    Binomial(b + c, 1/2). statistic = min(b, c), as in statsmodels' exact test.
    """
    y_true, pred_a, pred_b = (np.asarray(v) for v in (y_true, pred_a, pred_b))
    _check_pair(y_true, pred_a, pred_b)
    right_a, right_b = pred_a == y_true, pred_b == y_true
    b = int(np.sum(right_a & ~right_b))
    c = int(np.sum(~right_a & right_b))
    return {"b": b, "c": c, "statistic": min(b, c), "p_value": binomial_two_sided_p(b, b + c)}
