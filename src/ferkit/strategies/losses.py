"""Losses. Each is a module `loss(logits, target) -> scalar`, built from the class counts.

Class weights (re-weighting) are an independent choice: any loss takes an optional `weight`.
"""
from __future__ import annotations

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

    def __init__(self, weight: torch.Tensor | None = None, label_smoothing: float = 0.0):
        super().__init__()
        self.register_buffer("weight", weight)
        self.label_smoothing = label_smoothing

    def forward(self, logits: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        return F.cross_entropy(logits.float(), target, weight=self.weight, label_smoothing=self.label_smoothing)


class FocalLoss(nn.Module):
    """Focal loss (Lin et al. 2017): -(1 - p_t)^gamma log p_t, optionally class-weighted."""

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

    def __init__(self, offset: torch.Tensor, weight: torch.Tensor | None = None, label_smoothing: float = 0.0):
        super().__init__(weight, label_smoothing)
        self.register_buffer("offset", offset)

    def forward(self, logits: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        return super().forward(logits.float() + self.offset, target)


class LDAMLoss(CrossEntropy):
    """LDAM (Cao et al. 2019): subtract a margin m_c prop. to n_c^(-1/4) (largest `max_margin`) from the
    true-class cosine. Meant for a cosine head, whose logits are s * cos: the margin is s * m_c in logits.
    """

    def __init__(self, counts: np.ndarray, max_margin: float = 0.5, s: float = 30.0,
                 weight: torch.Tensor | None = None, label_smoothing: float = 0.0):
        super().__init__(weight, label_smoothing)
        m = np.power(np.asarray(counts, dtype=np.float64), -0.25)
        self.register_buffer("margin", torch.tensor(s * max_margin * m / m.max(), dtype=torch.float32))

    def forward(self, logits: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        return super().forward(logits.float() - F.one_hot(target, logits.shape[1]) * self.margin, target)


LOSSES = ("ce", "wce", "focal", "ldam", "la", "bsoftmax")


def make_loss(name: str, counts: np.ndarray, weight: np.ndarray | None = None, gamma: float = 2.0,
              tau: float = 1.0, label_smoothing: float = 0.0, head_scale: float = 30.0) -> nn.Module:
    """Build a loss by name. `weight` (per-class, mean 1) re-weights any of them; `wce` requires it."""
    w = None if weight is None else torch.tensor(weight, dtype=torch.float32)
    prior = torch.tensor(np.asarray(counts, dtype=np.float64) / np.sum(counts), dtype=torch.float32)
    if name == "ce":
        return CrossEntropy(w, label_smoothing)
    if name == "wce":
        if w is None:
            raise ValueError("loss 'wce' needs class weights: set --weight_mode")
        return CrossEntropy(w, label_smoothing)
    if name == "focal":
        return FocalLoss(w, gamma, label_smoothing)
    if name == "la":
        return AdjustedCE(tau * prior.log(), w, label_smoothing)
    if name == "bsoftmax":
        return AdjustedCE(prior.log(), w, label_smoothing)
    if name == "ldam":
        return LDAMLoss(counts, 0.5, head_scale, w, label_smoothing)
    raise ValueError(f"unknown loss {name!r}: choose one of {', '.join(LOSSES)}")
