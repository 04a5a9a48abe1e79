"""Losses. Each is a module `loss(logits, target) -> scalar`, built from the class counts.

Class weights (re-weighting) are an independent choice: any loss takes an optional `weight`.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn


def _weighted_mean(per_sample: torch.Tensor, target: torch.Tensor, weight: torch.Tensor | None) -> torch.Tensor:
    """Mean over the batch; with class weights, sum(w_i l_i) / sum(w_i), as PyTorch's weighted CE."""
    if weight is None:
        return per_sample.mean()
    w = weight[target]
    return (w * per_sample).sum() / w.sum()


class CrossEntropy(nn.Module):
    """Cross-entropy, optionally class-weighted and label-smoothed."""

    weight: torch.Tensor | None  # a buffer (register_buffer): it follows the module to the device

    def __init__(self, weight: torch.Tensor | None = None, label_smoothing: float = 0.0):
        super().__init__()
        self.register_buffer("weight", weight)
        self.label_smoothing = label_smoothing

    def forward(self, logits: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        return F.cross_entropy(logits.float(), target, weight=self.weight, label_smoothing=self.label_smoothing)


class FocalLoss(nn.Module):
    """Focal loss (Lin et al. 2017): -(1 - p_t)^gamma log p_t, optionally class-weighted."""

    weight: torch.Tensor | None  # a buffer

    def __init__(self, weight: torch.Tensor | None = None, gamma: float = 2.0, label_smoothing: float = 0.0):
        super().__init__()
        self.register_buffer("weight", weight)
        self.gamma = gamma
        self.label_smoothing = label_smoothing

    def forward(self, logits: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        logp = F.log_softmax(logits.float(), 1)
        ce = F.cross_entropy(logits.float(), target, reduction="none", label_smoothing=self.label_smoothing)
        pt = logp.gather(1, target[:, None]).squeeze(1).exp()
        return _weighted_mean((1 - pt) ** self.gamma * ce, target, self.weight)


class AdjustedCE(CrossEntropy):
    """Cross-entropy on logits shifted by a fixed per-class offset (training only).

    Logit adjustment (Menon et al. 2021): offset = tau * log prior. Balanced softmax
    (Ren et al. 2020) is the case tau = 1. LDAM (Cao et al. 2019) instead subtracts a margin
    from the true-class logit only; see `LDAMLoss`.
    """

    offset: torch.Tensor  # a buffer

    def __init__(self, offset: torch.Tensor, weight: torch.Tensor | None = None, label_smoothing: float = 0.0):
        super().__init__(weight, label_smoothing)
        self.register_buffer("offset", offset)

    def forward(self, logits: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        return super().forward(logits.float() + self.offset, target)


class LDAMLoss(CrossEntropy):
    """LDAM (Cao et al. 2019): subtract a margin m_c prop. to n_c^(-1/4) (largest `max_margin`) from the
    true-class cosine. Meant for a cosine head, whose logits are s * cos: the margin is s * m_c in logits.
    """

    margin: torch.Tensor  # a buffer

    def __init__(
        self,
        counts: np.ndarray,
        max_margin: float = 0.5,
        s: float = 30.0,
        weight: torch.Tensor | None = None,
        label_smoothing: float = 0.0,
    ):
        super().__init__(weight, label_smoothing)
        m = np.power(np.asarray(counts, dtype=np.float64), -0.25)
        self.register_buffer("margin", torch.tensor(s * max_margin * m / m.max(), dtype=torch.float32))

    def forward(self, logits: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        return super().forward(logits.float() - F.one_hot(target, logits.shape[1]) * self.margin, target)


@dataclass
class LossSpec:
    """What a loss is built from: the training set's class counts, this epoch's class weights (None:
    no re-weighting; any loss takes them) and the run's settings."""

    counts: np.ndarray
    weight: torch.Tensor | None = None
    gamma: float = 2.0  # focal
    tau: float = 1.0  # logit adjustment
    label_smoothing: float = 0.0
    head_scale: float = 30.0  # the cosine/arcface head's s (LDAM's margins are in its units)
    max_margin: float = 0.5  # ldam: the rarest class's margin, in cosine units

    @property
    def log_prior(self) -> torch.Tensor:
        n = np.asarray(self.counts, dtype=np.float64)
        return torch.tensor(n / n.sum(), dtype=torch.float32).log()  # the prior in float32, then its log


def _wce(spec: LossSpec) -> nn.Module:
    if spec.weight is None:
        raise ValueError("loss wce needs class weights: add --weight_mode inv|inv_sqrt|effective")
    return CrossEntropy(spec.weight, spec.label_smoothing)


LOSSES: dict[str, Callable[[LossSpec], nn.Module]] = {
    "ce": lambda s: CrossEntropy(s.weight, s.label_smoothing),
    "wce": _wce,
    "focal": lambda s: FocalLoss(s.weight, s.gamma, s.label_smoothing),
    "ldam": lambda s: LDAMLoss(s.counts, s.max_margin, s.head_scale, s.weight, s.label_smoothing),
    "la": lambda s: AdjustedCE(s.tau * s.log_prior, s.weight, s.label_smoothing),
    "bsoftmax": lambda s: AdjustedCE(s.log_prior, s.weight, s.label_smoothing),
}
"""The losses by name: `--loss NAME`, config files and sweeps look a name up here and nowhere else.

Each entry is a builder, called once per epoch (the class weights may change with the epoch).

Parameters
----------
spec : LossSpec
    The training set's class counts, this epoch's class weights (None: no re-weighting; every
    loss takes them) and the run's `gamma`, `tau`, `label_smoothing` and `head_scale`.

Returns
-------
nn.Module
    `loss(logits, target) -> scalar tensor`, logits (N, C) and integer targets (N,).

Raises
------
ValueError
    The loss cannot be built from `spec` (`wce` without class weights). `config.validate` builds
    the last epoch's loss before training, so the error comes before any data is read.

Examples
--------
A new loss is a class and one line (docs/DESIGN.md, "Extending ferkit: a new loss")::

    LOSSES["half_ce"] = lambda spec: HalfCE(spec.weight)  # ferkit train --loss half_ce
"""


def make_loss(name: str, counts: np.ndarray, weight: np.ndarray | None = None, **settings: float) -> nn.Module:
    """Build the loss `name` from its `LOSSES` entry.

    Parameters
    ----------
    name : str
        A key of `LOSSES`.
    counts : np.ndarray
        The training set's images per class (class_names order).
    weight : np.ndarray, optional
        Class weights (per class, mean 1; `class_weights`) that re-weight any loss; None: none.
    **settings : float
        LossSpec's other fields: `gamma`, `tau`, `label_smoothing`, `head_scale`, `max_margin`.

    Returns
    -------
    nn.Module
        `loss(logits, target) -> scalar tensor`.

    Raises
    ------
    ValueError
        `name` is not in `LOSSES`, or its builder refuses these settings (`wce` without `weight`).
    """
    if name not in LOSSES:
        raise ValueError(f"unknown loss {name!r}: choose one of {', '.join(LOSSES)}")
    w = None if weight is None else torch.tensor(weight, dtype=torch.float32)
    return LOSSES[name](LossSpec(np.asarray(counts), w, **settings))
