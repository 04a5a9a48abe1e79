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
val only (`ferkit posthoc --method temperature`, one T per TTA mode: `temperature_for`).

Applied (numpy only, so the torch-free inference install applies it too): `adjust` divides the
log-probabilities by T and re-weights them to another class prior (`prior_ratio`: the prior asked
for, `read_prior`, over the one the model learned, `effective_prior`); `coverage_curve` is what
`--min-score` keeps at each threshold (docs/INFERENCE.md, "Scores: calibration, the class prior
and abstention").
"""

from __future__ import annotations

from collections.abc import Callable

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
    return {"count": count, "confidence": mean_conf, "accuracy": accuracy, "edges": np.linspace(0.0, 1.0, n_bins + 1)}


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
    return float(
        np.mean([_binned_gap(probs[:, k], (labels == k).astype(np.float64), n_bins) for k in range(probs.shape[1])])
    )


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
    return {
        "ece": ece(probs, labels, n_bins),
        "classwise_ece": classwise_ece(probs, labels, n_bins),
        "nll": nll(probs, labels),
        "brier": brier(probs, labels),
        "n_bins": n_bins,
    }


def softmax(logits: np.ndarray, temperature: float = 1.0) -> np.ndarray:
    """Row-wise softmax(logits / temperature), float64."""
    z = np.asarray(logits, dtype=np.float64) / temperature
    z = z - z.max(1, keepdims=True)
    e = np.exp(z)
    return e / e.sum(1, keepdims=True)


def fit_temperature(
    logits: np.ndarray, labels: np.ndarray, lo: float = 0.05, hi: float = 20.0, tol: float = 1e-6
) -> float:
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


# ---------------------------------------------------------------- calibration applied

ONNX_KEY = "ferkit_calibration"  # the ONNX metadata entry that carries a checkpoint's "calibration" record (JSON)
PRIORS = ("model", "train", "uniform")
TINY = 1e-30  # log(0) guard for probabilities that underflowed in float32


def adjust(probs: np.ndarray, temperature: float = 1.0, prior_ratio: np.ndarray | None = None) -> np.ndarray:
    """Probabilities with a temperature and a class-prior change applied: softmax(log p / T + log r).

    softmax(log p / T) is softmax(logits / T), so this works on any backend's probabilities (int8
    ONNX included); r = pi_new / pi_model is the label-shift correction p(y|x) prop. to p(y|x) r_y.
    T = 1 without r returns `probs` itself (raw scores are untouched)."""
    if temperature == 1.0 and prior_ratio is None:
        return probs
    z = np.log(np.maximum(np.asarray(probs, dtype=np.float64), TINY)) / temperature
    if prior_ratio is not None:
        z = z + np.log(np.asarray(prior_ratio, dtype=np.float64))
    return softmax(z).astype(np.asarray(probs).dtype)


def temperature_for(record: dict | None, tta: str = "none") -> float:
    """The temperature of a calibration record for a TTA mode ("none", "flip", "crops"): the one
    fitted on val with that mode (averaging views softens the probabilities, so each mode has its
    own), else the record's single `temperature`; 1 without a record."""
    if not record:
        return 1.0
    return float((record.get("temperatures") or {}).get(tta, record.get("temperature", 1.0)))


def effective_prior(
    config: dict, counts: np.ndarray, posthoc: dict | None = None, epoch: int | None = None
) -> np.ndarray:
    """The class prior a model effectively learned, from its run configuration and the train class counts n_c.

    The training strategy's own answer for the checkpoint's epoch (`strategies.for_epoch(...).prior`:
    n_c x the sampler's class weight x the loss's class weight, deferred phases and custom samplers
    included), then: the logit-adjusted losses (`la` with tau, `bsoftmax` with 1) train logits +
    tau log pi, so the bare logits carry pi^-tau more. Post-hoc: `la` divides by pi^tau, `crt`
    re-trains the head class-balanced (uniform); `taunorm` has no prior of its own and leaves it.
    Focal and LDAM losses are taken as cross-entropy (their effect on the prior is not a closed form).
    `epoch` None: the last epoch (every deferred phase reached)."""
    from ferkit.config import RunConfig, field_names  # lazily: the strategies package imports torch
    from ferkit.strategies import for_epoch

    cfg = RunConfig(**{k: v for k, v in config.items() if k in field_names()})
    n = np.asarray(counts, dtype=np.float64)
    prior = for_epoch(cfg, n, cfg.epochs if epoch is None else epoch).prior(n)
    tau = {"la": cfg.tau, "bsoftmax": 1.0}.get(cfg.loss, 0.0)
    if posthoc and posthoc.get("method") == "la":
        tau += posthoc.get("tau", 0.0)
    prior = prior * np.power(n / n.sum(), -tau)
    if posthoc and posthoc.get("method") == "crt":
        prior = np.ones_like(n)
    return prior / prior.sum()


def read_prior(spec: str | dict | list | tuple | np.ndarray, class_names: list[str]) -> str | np.ndarray:
    """A prior as the user gives it: "model", "train", "uniform", a JSON file ({class: frequency} or a
    list of one number per class, in class order; plain text with one number per class works too), a
    dict or a list. Returns the name, or the frequencies normalised; a bad one is a one-line ValueError."""
    if isinstance(spec, str) and spec in PRIORS:
        return spec
    if isinstance(spec, (str, bytes)) or hasattr(spec, "__fspath__"):
        spec = read_prior_file(str(spec))
    k = len(class_names)
    if isinstance(spec, dict):
        unknown = sorted(set(map(str, spec)) - set(class_names))
        missing = [c for c in class_names if c not in spec]
        if unknown or missing:
            raise ValueError(
                "prior: "
                + (f"unknown class {unknown[0]!r}" if unknown else f"no frequency for {missing[0]}")
                + f": give one for each of {', '.join(class_names)}"
            )
        spec = [spec[c] for c in class_names]
    try:
        values = np.asarray(spec, dtype=np.float64).reshape(-1)
    except (TypeError, ValueError):
        raise ValueError(f"prior: expected {k} numbers, one per class ({', '.join(class_names)})") from None
    if len(values) != k:
        raise ValueError(f"prior: {len(values)} numbers for {k} classes: give one per class ({', '.join(class_names)})")
    if not np.isfinite(values).all() or (values <= 0).any():
        bad = class_names[int(np.argmax(~np.isfinite(values) | (values <= 0)))]
        raise ValueError(f"prior: every class needs a frequency above 0 ({bad} has {values[class_names.index(bad)]})")
    return values / values.sum()


def read_prior_file(path: str) -> dict | list:
    """A prior file's contents: JSON, or plain numbers separated by commas or white space."""
    import json
    from pathlib import Path

    p = Path(path)
    if not p.is_file():
        raise ValueError(
            f"prior: {path} is neither model, train, uniform nor a file: give one of those, or a JSON "
            "file of {class: frequency}"
        )
    text = p.read_text(encoding="utf-8", errors="replace")
    try:
        return json.loads(text)
    except json.JSONDecodeError:
        try:
            return [float(v) for v in text.replace(",", " ").split()]
        except ValueError:
            raise ValueError(f"prior: {path} is not JSON ({{class: frequency}} or a list) nor plain numbers") from None


def prior_ratio(
    spec: str | dict | list | tuple | np.ndarray, class_names: list[str], record: dict | None
) -> np.ndarray | None:
    """pi_new / pi_model for `spec` (`read_prior`) against the model's learned prior (`record`: a
    checkpoint's "calibration" entry, with model_prior and train_prior); None for "model"."""
    new = read_prior(spec, class_names)
    if isinstance(new, str) and new == "model":
        return None
    record = record or {}
    model = record.get("model_prior")
    if model is None:
        raise ValueError(
            f"prior {spec}: this model does not record the prior it learned: calibrate it "
            "(ferkit posthoc CKPT --method temperature --out NEW.pt), or use prior model"
        )
    if isinstance(new, str):
        new = np.asarray(record["train_prior"], dtype=np.float64) if new == "train" else np.full(len(class_names), 1.0)
    return (new / new.sum()) / np.asarray(model, dtype=np.float64)


# ---------------------------------------------------------------- abstention

COVERAGE_THRESHOLDS = tuple(round(t, 2) for t in np.arange(0.0, 0.96, 0.05))


def coverage_curve(
    probs: np.ndarray,
    labels: np.ndarray,
    macro_f1: Callable[[np.ndarray, np.ndarray], float],
    thresholds: tuple[float, ...] = COVERAGE_THRESHOLDS,
) -> list[dict]:
    """For each threshold t, the images whose top probability is at least t (those `--min-score t`
    keeps; the rest are `uncertain`): their share (coverage), count, accuracy and macro-F1 over the
    classes (`macro_f1(labels, predictions)`, ferkit.evaluate's; NaN when none is kept)."""
    probs, labels = _check(probs, labels)
    conf, pred = probs.max(1), probs.argmax(1)
    rows = []
    for t in thresholds:
        keep = conf >= t
        kept = int(keep.sum())
        rows.append(
            {
                "threshold": float(t),
                "coverage": kept / len(labels),
                "kept": kept,
                "accuracy": float((pred[keep] == labels[keep]).mean()) if kept else float("nan"),
                "macro_f1": float(macro_f1(labels[keep], pred[keep])) if kept else float("nan"),
            }
        )
    return rows
