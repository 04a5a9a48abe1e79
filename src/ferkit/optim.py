"""Optimisers and learning-rate schedules, by name."""

from __future__ import annotations

import math

import torch

OPTIMIZERS = ("adam", "adamw", "sgd")
SCHEDULES = ("cosine", "constant")


def make_optimizer(name: str, params, lr: float, weight_decay: float) -> torch.optim.Optimizer:
    """`adam` (the reference), `adamw` (decoupled weight decay), `sgd` (Nesterov momentum 0.9)."""
    if name == "adam":
        return torch.optim.Adam(params, lr=lr, weight_decay=weight_decay)
    if name == "adamw":
        return torch.optim.AdamW(params, lr=lr, weight_decay=weight_decay)
    if name == "sgd":
        return torch.optim.SGD(params, lr=lr, momentum=0.9, nesterov=True, weight_decay=weight_decay)
    raise ValueError(f"unknown optimizer {name!r}: choose one of {', '.join(OPTIMIZERS)}")


def lr_factor(epoch: int, epochs: int, schedule: str = "cosine", warmup: int = 0) -> float:
    """Learning-rate multiplier for a 0-based epoch: linear warm-up, then cosine to 0 (or constant).

    With warmup = 0 the cosine factor equals torch's CosineAnnealingLR(T_max=epochs) stepped once
    per epoch, which is what the reference project uses.
    """
    if epoch < warmup:
        return (epoch + 1) / (warmup + 1)
    if schedule == "constant":
        return 1.0
    span = max(epochs - warmup, 1)
    return 0.5 * (1 + math.cos(math.pi * (epoch - warmup) / span))


def make_scheduler(optimizer: torch.optim.Optimizer, epochs: int, schedule: str, warmup: int):
    """A per-epoch LambdaLR (its state is saved in last.pt, so a resumed run continues the schedule)."""
    if schedule not in SCHEDULES:
        raise ValueError(f"unknown schedule {schedule!r}: choose one of {', '.join(SCHEDULES)}")
    return torch.optim.lr_scheduler.LambdaLR(optimizer, lambda e: lr_factor(e, max(epochs, 1), schedule, warmup))
