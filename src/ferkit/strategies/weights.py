"""Per-class loss weights from the training class counts."""

from __future__ import annotations

import numpy as np

WEIGHT_MODES = ("inv", "inv_sqrt", "effective")


def class_weights(counts: np.ndarray, mode: str, beta: float = 0.999) -> np.ndarray:
    """Weights normalised to mean 1: `inv` 1/n, `inv_sqrt` 1/sqrt(n), `effective` (1-beta)/(1-beta^n).

    `effective` is the class-balanced weighting of Cui et al. (2019), "effective number of samples".
    """
    n = np.asarray(counts, dtype=np.float64)
    if (n <= 0).any():
        raise ValueError("every class needs at least one training image to compute class weights")
    if mode == "inv":
        w = 1.0 / n
    elif mode == "inv_sqrt":
        w = 1.0 / np.sqrt(n)
    elif mode == "effective":
        w = (1.0 - beta) / (1.0 - np.power(beta, n))
    else:
        raise ValueError(f"unknown weight_mode {mode!r}: choose one of {', '.join(WEIGHT_MODES)}")
    return w / w.mean()
