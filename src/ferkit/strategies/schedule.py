"""A strategy's schedule: the loss and the sampling of each epoch, deferred phases included.

Re-balancing is made of independent choices (as in LDAM-DRW, Cao et al. 2019):
- the loss (`LOSSES`: ce, wce, focal, ldam, la, ...), with optional class weights (`WEIGHT_MODES`);
- how images are drawn (`SAMPLERS`: shuffling, n_c^q);
- when each re-balancing starts (`DEFERRALS`): class weights from `reweight_from` (deferred
  re-weighting, DRW), re-sampling from `resample_from` (deferred re-sampling, DRS).

`for_epoch` is the one place that puts them together: the training loop asks it for each epoch, and
the model's effective training prior (what the calibrated probabilities are relative to) comes
from the same answer. A new sampler or deferral rule is one class and one registry line.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np
from torch import nn

from .losses import make_loss
from .sampling import SAMPLERS, PowerSampler, Sampler
from .weights import class_weights


class FromEpoch:
    """Re-balancing on from epoch `start` (1: from the first epoch; later: deferred, DRW/DRS)."""

    def __call__(self, epoch: int, start: int, epochs: int) -> bool:
        return epoch >= start


DEFERRALS: dict[str, Callable[[int, int, int], bool]] = {"from_epoch": FromEpoch()}
"""The deferral rules by name: `--defer NAME` says when a deferred re-balancing is on, for the class
weights (from `--reweight_from`) and the sampler (from `--resample_from`) alike.

Each entry is called as `rule(epoch, start, epochs)` for every epoch (`for_epoch`).

Parameters
----------
epoch : int
    The epoch, 1-based.
start : int
    The re-balancing's start epoch (`--reweight_from` or `--resample_from`; 1: from the first).
epochs : int
    The run's number of epochs.

Returns
-------
bool
    Whether the re-balancing is on in `epoch`.

Examples
--------
A new rule is a callable and one line (docs/DESIGN.md, "Extending ferkit: a new sampler or
deferral rule")::

    DEFERRALS["odd"] = OddEpochs()  # ferkit train --defer odd
"""


@dataclass
class EpochStrategy:
    """One epoch's re-balancing: its loss module, the loss's class weights and the sampler's per-image
    class weights (None: off this epoch)."""

    loss: nn.Module
    loss_weights: np.ndarray | None
    sample_weights: np.ndarray | None

    def image_weights(self, labels: np.ndarray) -> np.ndarray | None:
        """Per-image sampling weights for `EpochBatches` (None: shuffle)."""
        return None if self.sample_weights is None else self.sample_weights[labels]

    def prior(self, counts: np.ndarray) -> np.ndarray:
        """The class prior this epoch trains towards: n_c x the sampler's weight x the loss's weight,
        normalised (the natural frequencies for plain CE)."""
        p = np.asarray(counts, dtype=np.float64).copy()
        for w in (self.sample_weights, self.loss_weights):
            if w is not None:
                p = p * w
        return p / p.sum()


def sampler_of(cfg: Any) -> Sampler:
    """The run's sampler: PowerSampler(sample_q) when `sample_q` is set, else SAMPLERS[sampler]."""
    return PowerSampler(cfg.sample_q) if cfg.sample_q is not None else SAMPLERS[cfg.sampler]


def for_epoch(cfg: Any, counts: np.ndarray, epoch: int) -> EpochStrategy:
    """The loss and sampling of one epoch: the one place that puts the registries together.

    Parameters
    ----------
    cfg : RunConfig or any object with its strategy fields
        `loss`, `weight_mode`, `beta`, `sampler`, `sample_q`, `defer`, `reweight_from`,
        `resample_from`, `epochs`, `gamma`, `tau`, `ldam_margin`, `label_smoothing` and `arc_s`.
    counts : np.ndarray
        The training set's images per class, in class_names order.
    epoch : int
        The epoch, 1-based.

    Returns
    -------
    EpochStrategy
        The epoch's loss module, the loss's class weights and the sampler's per-class weights
        (None where that re-balancing is off this epoch).

    Raises
    ------
    KeyError
        `cfg.defer` or `cfg.sampler` is not registered (`config.validate` checks names first).
    ValueError
        The loss cannot be built (`make_loss`) or the class weights not computed (`class_weights`).
    """
    on = DEFERRALS[cfg.defer]
    counts = np.asarray(counts)
    weights = (
        class_weights(counts, cfg.weight_mode, cfg.beta)
        if cfg.weight_mode and on(epoch, cfg.reweight_from, cfg.epochs)
        else None
    )
    # wce is CE weighted: before its weights apply (deferred), plain CE; without any, make_loss refuses it.
    loss_name = "ce" if cfg.loss == "wce" and weights is None and cfg.weight_mode else cfg.loss
    loss = make_loss(
        loss_name,
        counts,
        weights,
        gamma=cfg.gamma,
        tau=cfg.tau,
        label_smoothing=cfg.label_smoothing,
        head_scale=cfg.arc_s,
        max_margin=cfg.ldam_margin,
    )
    sample = sampler_of(cfg).class_weights(counts) if on(epoch, cfg.resample_from, cfg.epochs) else None
    return EpochStrategy(loss, weights, sample)
