"""Re-sampling: how training images are drawn. A sampler gives each class a per-image weight; an
image of class c is then drawn with probability prop. to its class's weight (so class c as a whole
with probability prop. to n_c x weight_c).

A new sampler is one class and one line in SAMPLERS; `--sampler name` then trains with it
(docs/DESIGN.md "Adding a strategy").
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol

import numpy as np


class Sampler(Protocol):
    """What `SAMPLERS` holds: anything with a `class_weights` method (`Shuffle`, `PowerSampler`)."""

    def class_weights(self, counts: np.ndarray) -> np.ndarray | None:
        """Per-image weight of each class from the training counts; None: plain shuffling."""
        ...


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


SAMPLERS: dict[str, Sampler] = {
    "default": Shuffle(),
    "balanced": PowerSampler(0.5),
    "class_balanced": PowerSampler(0.0),
}
"""The samplers by name: `--sampler NAME`, config files and sweeps look a name up here and nowhere
else (`--sample_q q` is `PowerSampler(q)`, whatever the name).

Each entry is a `Sampler`: an object whose `class_weights` method the training loop calls with the
training set's class counts, from the epoch `--resample_from` on (`for_epoch`).

Parameters
----------
counts : np.ndarray
    (of `class_weights`) The number of training images of each class, in class_names order.

Returns
-------
np.ndarray or None
    (of `class_weights`) The per-image weight of each class, shape (num_classes,): an image of
    class c is drawn with probability prop. to it. None: no re-sampling (one permutation an epoch).

Examples
--------
A new sampler is a class and one line (docs/DESIGN.md, "Extending ferkit: a new sampler or
deferral rule")::

    SAMPLERS["rarest"] = RarestOnly()  # ferkit train --sampler rarest
"""


def sampling_weights(labels: np.ndarray, q: float, num_classes: int) -> np.ndarray:
    """Per-image weights n_c ** (q - 1), so that class c is drawn with probability prop. to n_c ** q."""
    counts = np.bincount(labels, minlength=num_classes)
    return PowerSampler(q).class_weights(counts)[labels]
