"""Batched training augmentation on tensors: one affine grid per batch.

The reference project applies, per image with PIL: horizontal flip (p = 0.5), rotation by an
angle uniform in [-15, 15] degrees (zero fill), then a random 44x44 crop of the image padded by
4 pixels (zero fill), resized back to 48x48. Each of these is an affine map of the image plane,
so their composition is one affine map per image; `grid_sample` applies all of them to a whole
batch in one call. The transforms are drawn from the same distribution; the only difference is
that the pixels are resampled once (bilinear) instead of twice.

Three further options, off by default (and then drawing nothing from the generator, so a run
without them is unchanged): scale jitter (zoom by a factor uniform in [1 - s, 1 + s]),
translate jitter (an extra shift uniform in +-t of the image side, on top of the crop offset),
both folded into the same affine map, and random erasing (Zhong et al. 2020: with probability p,
a rectangle of 2-25% of the image with aspect ratio in [0.3, 3.3] is set to grey, 0).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F

from ferkit.data.store import IMAGE_SIZE

SIZE, PAD, CROP = IMAGE_SIZE, 4, IMAGE_SIZE - 4
MAX_ANGLE = 15.0


@dataclass
class AugParams:
    """Per-image transform parameters (each a tensor of length N)."""

    flip: torch.Tensor  # bool
    angle: torch.Tensor  # degrees, uniform in [-MAX_ANGLE, MAX_ANGLE]
    off_x: torch.Tensor  # crop offset in the padded image, uniform in [0, 2 * PAD + SIZE - CROP] (+ translate jitter)
    off_y: torch.Tensor
    zoom: torch.Tensor | None = None  # > 1 zooms in; None = 1
    erase: torch.Tensor | None = None  # (N, 4) int rectangles (y0, x0, h, w); h = 0: nothing erased


def sample_params(
    n: int,
    generator: torch.Generator,
    max_angle: float = MAX_ANGLE,
    scale: float = 0.0,
    translate: float = 0.0,
    erase_p: float = 0.0,
) -> AugParams:
    """Draw the transforms for `n` images from `generator` (kept on the CPU, so CPU and GPU runs agree).

    scale, translate, erase_p: the optional jitters (module docstring); 0 draws nothing for them.
    """
    hi = 2 * PAD + SIZE - CROP  # 12: offsets 0..12, as a random crop of 44 out of 56 pixels
    p = AugParams(
        flip=torch.rand(n, generator=generator) < 0.5,
        angle=(torch.rand(n, generator=generator) * 2 - 1) * max_angle,
        off_x=torch.randint(0, hi + 1, (n,), generator=generator),
        off_y=torch.randint(0, hi + 1, (n,), generator=generator),
    )
    if scale > 0:
        p.zoom = 1 + (torch.rand(n, generator=generator) * 2 - 1) * scale
    if translate > 0:
        shift = (torch.rand(2, n, generator=generator) * 2 - 1) * (translate * SIZE)
        p.off_x, p.off_y = p.off_x + shift[0], p.off_y + shift[1]
    if erase_p > 0:
        p.erase = sample_erase(n, generator, erase_p)
    return p


def sample_erase(
    n: int,
    generator: torch.Generator,
    prob: float,
    area: tuple[float, float] = (0.02, 0.25),
    log_ratio: tuple[float, float] = (math.log(0.3), math.log(3.3)),
) -> torch.Tensor:
    """(N, 4) erasing rectangles (y0, x0, h, w) in pixels; h = w = 0 for the images left alone."""
    u = torch.rand(5, n, generator=generator)
    a = (area[0] + u[0] * (area[1] - area[0])) * SIZE * SIZE
    r = torch.exp(log_ratio[0] + u[1] * (log_ratio[1] - log_ratio[0]))
    h = torch.sqrt(a * r).round().clamp(1, SIZE)
    w = torch.sqrt(a / r).round().clamp(1, SIZE)
    y0 = (u[2] * (SIZE - h + 1)).floor()
    x0 = (u[3] * (SIZE - w + 1)).floor()
    keep = u[4] >= prob
    h, w = h.masked_fill(keep, 0), w.masked_fill(keep, 0)
    return torch.stack([y0, x0, h, w], 1).long()


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
    linear = m * scale if p.zoom is None else m * (scale / p.zoom.float()).view(-1, 1, 1)  # zoom in = see less
    return torch.cat([linear, (m @ t.unsqueeze(2))], 2)


def to_input(images: torch.Tensor) -> torch.Tensor:
    """uint8 images (N, 48, 48) -> float (N, 1, 48, 48) scaled to [-1, 1], as the model expects."""
    return images.unsqueeze(1).float().div_(127.5).sub_(1.0)


def augment(images: torch.Tensor, params: AugParams, size: int = SIZE) -> torch.Tensor:
    """uint8 (N, 48, 48) -> augmented float (N, 1, size, size) in [-1, 1] (zero fill = black = -1).

    `size` < 48 samples the same transformed image on a coarser grid (progressive resizing: the
    affine grid is in normalised coordinates, so the content is the same, with fewer pixels).
    """
    x = images.unsqueeze(1).float().div_(255.0)
    theta = affine_matrices(params).to(x.device)
    grid = F.affine_grid(theta, [len(x), 1, size, size], align_corners=False)
    x = F.grid_sample(x, grid, mode="bilinear", padding_mode="zeros", align_corners=False)
    x = x.mul_(2.0).sub_(1.0)
    if params.erase is not None:
        x = x.masked_fill(erase_mask(params.erase.to(x.device), size), 0.0)
    return x


def erase_mask(rects: torch.Tensor, size: int = SIZE) -> torch.Tensor:
    """(N, 1, size, size) bool mask of the (y0, x0, h, w) rectangles (in 48-pixel units), built by
    broadcasting (no loop): a pixel is erased when its centre, in 48-pixel units, is inside."""
    pos = (torch.arange(size, device=rects.device) + 0.5) * (SIZE / size)
    y0, x0, h, w = (rects[:, i].view(-1, 1) for i in range(4))
    rows = (pos >= y0) & (pos < y0 + h)  # (N, size)
    cols = (pos >= x0) & (pos < x0 + w)
    return (rows[:, :, None] & cols[:, None, :]).unsqueeze(1)
