"""Mixup (Zhang et al. 2018) and CutMix (Yun et al. 2019) on a batch, drawn from the run's generator."""

from __future__ import annotations

import torch


def mix_batch(
    x: torch.Tensor, y: torch.Tensor, generator: torch.Generator, mixup: float = 0.0, cutmix: float = 0.0
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, float, torch.Tensor | None]:
    """Return (mixed x, y_a, y_b, lam, perm); the loss is lam * L(y_a) + (1 - lam) * L(y_b), and
    y_b = y_a[perm] (perm is None when nothing is mixed; a stored teacher mixes its targets by it).

    With both alphas set, each batch uses one of the two at random (as timm does).
    """
    if mixup <= 0 and cutmix <= 0:
        return x, y, y, 1.0, None
    use_cutmix = cutmix > 0 and (mixup <= 0 or torch.rand(1, generator=generator).item() < 0.5)
    alpha = cutmix if use_cutmix else mixup
    lam = _beta(alpha, generator)
    perm = torch.randperm(len(y), generator=generator).to(x.device)
    if not use_cutmix:
        return lam * x + (1 - lam) * x[perm], y, y[perm], lam, perm
    h, w = x.shape[-2:]
    cut_h, cut_w = int(h * (1 - lam) ** 0.5), int(w * (1 - lam) ** 0.5)
    cy = int(torch.randint(0, h, (1,), generator=generator))
    cx = int(torch.randint(0, w, (1,), generator=generator))
    y0, y1 = max(cy - cut_h // 2, 0), min(cy + cut_h // 2, h)
    x0, x1 = max(cx - cut_w // 2, 0), min(cx + cut_w // 2, w)
    x = x.clone()
    x[..., y0:y1, x0:x1] = x[perm][..., y0:y1, x0:x1]
    lam = 1 - (y1 - y0) * (x1 - x0) / (h * w)  # the area actually pasted
    return x, y, y[perm], lam, perm


def _beta(alpha: float, generator: torch.Generator) -> float:
    """A Beta(alpha, alpha) draw from `generator` (torch.distributions has no generator argument)."""
    a = torch._standard_gamma(torch.tensor([alpha, alpha], dtype=torch.float64), generator=generator)
    return float(a[0] / a.sum())
