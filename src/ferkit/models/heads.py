"""Classifier heads: map a feature vector to class logits.

Every head takes `(features, target=None)`. Only margin-based heads use `target`, and only in
training mode, so evaluation never depends on the labels.
"""

from __future__ import annotations

import math
from typing import ClassVar

import torch
import torch.nn.functional as F
from torch import nn


class Head(nn.Module):
    """What every head is: built as `Head(in_dim, num_classes, **settings)`, called as
    `head(features, target=None)`; `config_fields` maps each extra constructor argument to the
    RunConfig field it comes from (`head_settings`)."""

    config_fields: ClassVar[dict[str, str]] = {}

    def __init__(self, in_dim: int, num_classes: int):
        super().__init__()

    def forward(self, x: torch.Tensor, target: torch.Tensor | None = None) -> torch.Tensor:
        raise NotImplementedError


class SoftmaxHead(Head):
    """A plain linear classifier (`fc`, as in the reference project)."""

    def __init__(self, in_dim: int, num_classes: int):
        super().__init__(in_dim, num_classes)
        self.fc = nn.Linear(in_dim, num_classes)

    def forward(self, x: torch.Tensor, target: torch.Tensor | None = None) -> torch.Tensor:
        return self.fc(x)


class CosineHead(Head):
    """Cosine classifier: scale * cos(feature, class weight)."""

    config_fields = {"s": "arc_s"}

    def __init__(self, in_dim: int, num_classes: int, s: float = 30.0):
        super().__init__(in_dim, num_classes)
        self.s = s
        self.weight = nn.Parameter(torch.empty(num_classes, in_dim))
        nn.init.xavier_uniform_(self.weight)

    def cosine(self, x: torch.Tensor) -> torch.Tensor:
        # Normalise in float32: under bf16 autocast the norms would lose too much precision.
        return F.linear(F.normalize(x.float(), dim=1), F.normalize(self.weight.float(), dim=1))

    def forward(self, x: torch.Tensor, target: torch.Tensor | None = None) -> torch.Tensor:
        return self.s * self.cosine(x)


class ArcFaceHead(CosineHead):
    """Additive angular margin (Deng et al. 2019): s * cos(theta + m) for the true class in training."""

    config_fields = {"s": "arc_s", "m": "arc_m"}

    def __init__(self, in_dim: int, num_classes: int, s: float = 30.0, m: float = 0.5):
        super().__init__(in_dim, num_classes, s)
        self.m = m

    def forward(self, x: torch.Tensor, target: torch.Tensor | None = None) -> torch.Tensor:
        cos = self.cosine(x)
        if not self.training or target is None:
            return self.s * cos
        sin = torch.sqrt((1.0 - cos * cos).clamp(min=1e-7))
        phi = cos * math.cos(self.m) - sin * math.sin(self.m)
        # Past theta = pi - m, cos(theta + m) is no longer monotonic: use the usual linear fallback.
        th, mm = math.cos(math.pi - self.m), math.sin(math.pi - self.m) * self.m
        phi = torch.where(cos > th, phi, cos - mm)
        one_hot = F.one_hot(target, cos.shape[1]).bool()
        return self.s * torch.where(one_hot, phi, cos)
