"""Re-sampling: the probability of drawing a class is proportional to n_c ** q."""
from __future__ import annotations

import numpy as np

# Named samplers: q = 1 is the natural distribution (plain shuffling), q = 0.5 what the reference
# project calls "balanced" (each image weighted 1/sqrt(n_c)), q = 0 class-balanced.
SAMPLER_Q = {"default": None, "balanced": 0.5, "class_balanced": 0.0}


def sampling_weights(labels: np.ndarray, q: float, num_classes: int) -> np.ndarray:
    """Per-image weights n_c ** (q - 1), so that class c is drawn with probability prop. to n_c ** q."""
    counts = np.bincount(labels, minlength=num_classes).astype(np.float64)
    per_class = np.power(np.maximum(counts, 1.0), q - 1.0)
    return per_class[labels]
