"""Re-sampling: how training images are drawn. A sampler gives each class a per-image weight; an
image of class c is then drawn with probability prop. to its class's weight (so class c as a whole
with probability prop. to n_c x weight_c).

A new sampler is one class and one line in SAMPLERS; `--sampler name` then trains with it
(docs/DESIGN.md "Adding a strategy").
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np


class Shuffle:
    """Plain shuffling: every image once per epoch, the classes as often as they occur."""

    def class_weights(self, counts: np.ndarray) -> np.ndarray | None:
        """Per-image weight of each class; None means no re-sampling (a permutation per epoch)."""
        return None


@dataclass(frozen=True)
class PowerSampler:
    """Class c drawn with probability prop. to n_c ** q: q = 1 the natural distribution, q = 0.5 what
    the reference project calls "balanced" (each image weighted 1/sqrt(n_c)), q = 0 class-balanced."""

    q: float

    def class_weights(self, counts: np.ndarray) -> np.ndarray:
        """Per-image weights n_c ** (q - 1) (a class without images counts as one)."""
        return np.power(np.maximum(np.asarray(counts, dtype=np.float64), 1.0), self.q - 1.0)


# The samplers by name (`--sampler`); `--sample_q q` is PowerSampler(q) whatever the name.
SAMPLERS: dict[str, Shuffle | PowerSampler] = {
    "default": Shuffle(),
    "balanced": PowerSampler(0.5),
    "class_balanced": PowerSampler(0.0),
}

# Each named sampler's q (None: shuffling), for code that predates the sampler classes.
SAMPLER_Q = {name: getattr(s, "q", None) for name, s in SAMPLERS.items()}


def sampling_weights(labels: np.ndarray, q: float, num_classes: int) -> np.ndarray:
    """Per-image weights n_c ** (q - 1), so that class c is drawn with probability prop. to n_c ** q."""
    counts = np.bincount(labels, minlength=num_classes)
    return PowerSampler(q).class_weights(counts)[labels]
