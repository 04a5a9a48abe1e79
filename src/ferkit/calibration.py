"""Calibration: how far a model's probabilities can be believed, and temperature scaling.

Every measure is computed here and only here, from what predictions.csv holds (the probabilities
of each image and its true class):

- `ece`: expected calibration error of the top class (Guo et al., 2017), 15 equal-width bins
  (lo, hi] over [0, 1]: the mean over images of |accuracy - confidence| of their bin;
- `classwise_ece`: the same for each class's probability against "is this class" (Kull et al.,
  2019), averaged over classes: it also sees the probabilities of the classes not predicted;
- `nll`: mean negative log-likelihood of the true class;
- `brier`: mean squared distance between the probability vector and the one-hot truth (0 to 2);
- `reliability`: per bin, its count, mean confidence and accuracy (the reliability diagram).

`fit_temperature` finds the one scalar T that divides the logits to minimise NLL; it is fitted on
val only (docs/INFERENCE.md, "Calibration").
"""
from __future__ import annotations

import numpy as np

N_BINS = 15
EPS = 1e-12  # log(0) guard: a probability of exactly 0 on the true class costs -log(1e-12) = 27.6


def _check(probs: np.ndarray, labels: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    probs, labels = np.asarray(probs, dtype=np.float64), np.asarray(labels, dtype=np.int64)
    if probs.ndim != 2 or len(probs) != len(labels) or len(labels) == 0:
        raise ValueError(f"probs must be N x K and labels N (got {probs.shape} and {labels.shape}, N > 0)")
    return probs, labels


def bin_index(confidence: np.ndarray, n_bins: int = N_BINS) -> np.ndarray:
    """The bin of each confidence: (lo, hi] intervals of width 1 / n_bins; 0 goes to the first bin."""
    return np.clip(np.ceil(np.asarray(confidence) * n_bins).astype(np.int64) - 1, 0, n_bins - 1)


def reliability(probs: np.ndarray, labels: np.ndarray, n_bins: int = N_BINS) -> dict[str, np.ndarray]:
    """Per bin of top-class confidence: count, mean confidence and accuracy (NaN where empty)."""
    probs, labels = _check(probs, labels)
    conf, correct = probs.max(1), (probs.argmax(1) == labels).astype(np.float64)
    b = bin_index(conf, n_bins)
    count = np.bincount(b, minlength=n_bins).astype(np.float64)
    with np.errstate(invalid="ignore", divide="ignore"):
        mean_conf = np.bincount(b, weights=conf, minlength=n_bins) / count
        accuracy = np.bincount(b, weights=correct, minlength=n_bins) / count
    return {"count": count, "confidence": mean_conf, "accuracy": accuracy,
            "edges": np.linspace(0.0, 1.0, n_bins + 1)}


def _binned_gap(conf: np.ndarray, hit: np.ndarray, n_bins: int) -> float:
    """sum over bins of |B| / N x |mean hit - mean confidence| in B."""
    b = bin_index(conf, n_bins)  # |sum of hits - sum of confidences| in a bin = |B| x its gap of means
    gap = np.abs(np.bincount(b, weights=hit, minlength=n_bins) - np.bincount(b, weights=conf, minlength=n_bins))
    return float(gap.sum() / len(conf))


def ece(probs: np.ndarray, labels: np.ndarray, n_bins: int = N_BINS) -> float:
    """Expected calibration error of the top class (0 = perfectly calibrated, 1 = worst)."""
    probs, labels = _check(probs, labels)
    return _binned_gap(probs.max(1), (probs.argmax(1) == labels).astype(np.float64), n_bins)


def classwise_ece(probs: np.ndarray, labels: np.ndarray, n_bins: int = N_BINS) -> float:
    """The mean over classes k of the ECE of p_k against the indicator of class k."""
    probs, labels = _check(probs, labels)
    return float(np.mean([_binned_gap(probs[:, k], (labels == k).astype(np.float64), n_bins)
                          for k in range(probs.shape[1])]))


def nll(probs: np.ndarray, labels: np.ndarray) -> float:
    """Mean negative log-likelihood of the true class."""
    probs, labels = _check(probs, labels)
    return float(-np.mean(np.log(np.maximum(probs[np.arange(len(labels)), labels], EPS))))


def brier(probs: np.ndarray, labels: np.ndarray) -> float:
    """Mean over images of sum_k (p_k - [y = k])^2."""
    probs, labels = _check(probs, labels)
    onehot = np.eye(probs.shape[1])[labels]
    return float(np.mean(np.sum((probs - onehot) ** 2, axis=1)))


def calibration_metrics(probs: np.ndarray, labels: np.ndarray, n_bins: int = N_BINS) -> dict[str, float]:
    """ECE, class-wise ECE, NLL and Brier score of one split's predictions."""
    return {"ece": ece(probs, labels, n_bins), "classwise_ece": classwise_ece(probs, labels, n_bins),
            "nll": nll(probs, labels), "brier": brier(probs, labels), "n_bins": n_bins}


def softmax(logits: np.ndarray, temperature: float = 1.0) -> np.ndarray:
    z = np.asarray(logits, dtype=np.float64) / temperature
    z = z - z.max(1, keepdims=True)
    e = np.exp(z)
    return e / e.sum(1, keepdims=True)


def fit_temperature(logits: np.ndarray, labels: np.ndarray, lo: float = 0.05, hi: float = 20.0,
                    tol: float = 1e-6) -> float:
    """The temperature T in [lo, hi] that minimises NLL(softmax(logits / T)) on these (val) images.

    NLL is convex in 1/T (a log-sum-exp of a linear function of it), so a golden-section search
    over 1/T finds the one minimum; an answer at either end of the range means the model is
    hopelessly over- or under-confident, and is returned as it is.
    """
    logits, labels = _check(logits, labels)
    rows = np.arange(len(labels))

    def loss(beta: float) -> float:
        z = logits * beta
        z = z - z.max(1, keepdims=True)
        return float(np.mean(np.log(np.exp(z).sum(1)) - z[rows, labels]))

    a, b = 1.0 / hi, 1.0 / lo
    g = (np.sqrt(5.0) - 1) / 2
    c, d = b - g * (b - a), a + g * (b - a)
    fc, fd = loss(c), loss(d)
    while b - a > tol:
        if fc < fd:
            b, d, fd = d, c, fc
            c = b - g * (b - a)
            fc = loss(c)
        else:
            a, c, fc = c, d, fd
            d = a + g * (b - a)
            fd = loss(d)
    return float(1.0 / ((a + b) / 2))
