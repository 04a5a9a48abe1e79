"""Batched training augmentation on tensors: one affine grid per batch.

The reference project applies, per image with PIL: horizontal flip (p = 0.5), rotation by an
angle uniform in [-15, 15] degrees (zero fill), then a random 44x44 crop of the image padded by
4 pixels (zero fill), resized back to 48x48. Each of these is an affine map of the image plane,
so their composition is one affine map per image; `grid_sample` applies all of them to a whole
batch in one call. The transforms are drawn from the same distribution; the only difference is
that the pixels are resampled once (bilinear) instead of twice.
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F

SIZE, PAD, CROP = 48, 4, 44
MAX_ANGLE = 15.0


@dataclass
class AugParams:
    """Per-image transform parameters (each a tensor of length N)."""

    flip: torch.Tensor     # bool
    angle: torch.Tensor    # degrees, uniform in [-MAX_ANGLE, MAX_ANGLE]
    off_x: torch.Tensor    # crop offset in the padded image, integer uniform in [0, 2 * PAD + SIZE - CROP]
    off_y: torch.Tensor


def sample_params(n: int, generator: torch.Generator, max_angle: float = MAX_ANGLE) -> AugParams:
    """Draw the transforms for `n` images from `generator` (kept on the CPU, so CPU and GPU runs agree)."""
    hi = 2 * PAD + SIZE - CROP  # 12: offsets 0..12, as a random crop of 44 out of 56 pixels
    return AugParams(
        flip=torch.rand(n, generator=generator) < 0.5,
        angle=(torch.rand(n, generator=generator) * 2 - 1) * max_angle,
        off_x=torch.randint(0, hi + 1, (n,), generator=generator),
        off_y=torch.randint(0, hi + 1, (n,), generator=generator),
    )


def affine_matrices(p: AugParams) -> torch.Tensor:
    """(N, 2, 3) matrices mapping output coordinates to source coordinates, for `F.affine_grid`.

    Coordinates are normalised to [-1, 1] over the 48 pixels (align_corners=False). An output point
    u lands in the padded image at (44 / 48) u + (off - 6) / 24 (pixels / 24); undoing the rotation
    gives the point in the flipped image, and undoing the flip gives the source point.
    """
    scale = CROP / SIZE
    half = SIZE / 2
    center = (2 * PAD + SIZE - CROP) / 2  # offset 6 = centred crop
    t = torch.stack([(p.off_x.float() - center) / half, (p.off_y.float() - center) / half], 1)  # (N, 2)
    a = p.angle.float() * (math.pi / 180)
    cos, sin = torch.cos(a), torch.sin(a)
    # Sampling matrix of a counter-clockwise rotation by a (as PIL's Image.rotate(a)): with the
    # y axis pointing down, the source of an output point is found by this matrix.
    rinv = torch.stack([torch.stack([cos, -sin], 1), torch.stack([sin, cos], 1)], 1)  # (N, 2, 2)
    sign = torch.where(p.flip, -1.0, 1.0)
    flip = torch.diag_embed(torch.stack([sign, torch.ones_like(sign)], 1))
    m = flip @ rinv
    return torch.cat([m * scale, (m @ t.unsqueeze(2))], 2)


def augment(images: torch.Tensor, params: AugParams) -> torch.Tensor:
    """uint8 (N, 48, 48) -> augmented float (N, 1, 48, 48) in [-1, 1] (zero fill = black = -1)."""
    x = images.unsqueeze(1).float().div_(255.0)
    theta = affine_matrices(params).to(x.device)
    grid = F.affine_grid(theta, list(x.shape), align_corners=False)
    x = F.grid_sample(x, grid, mode="bilinear", padding_mode="zeros", align_corners=False)
    return x.mul_(2.0).sub_(1.0)
