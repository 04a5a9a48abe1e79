"""Training batches from the in-memory uint8 store: sampling order + batched augmentation.

All randomness comes from one `torch.Generator` on the CPU, whose state is saved with every
checkpoint: a resumed run draws exactly the batches an uninterrupted run would have drawn.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import fields, replace

import numpy as np
import torch

from ferkit.runtime.distributed import share

from .augment import SIZE, AugParams, augment, sample_params, to_input


def select(params: AugParams, rows: slice) -> AugParams:
    """The transforms of some of a batch's images (every field is per image)."""
    return replace(
        params, **{f.name: getattr(params, f.name)[rows] for f in fields(params) if getattr(params, f.name) is not None}
    )


class EpochBatches:
    """Iterate over one epoch of (augmented input, label) batches.

    `weights` (per image) switches from shuffling to weighted sampling with replacement,
    drawing as many images as the split holds, like torch's WeightedRandomSampler.
    `aug` turns on the optional jitters of `sample_params` (scale, translate, erase_p); `size`
    below 48 makes the augmented images smaller (progressive resizing; needs `train_augment`).
    `rank`, `world`: in a run of `world` processes (`ferkit.runtime.distributed`), every process draws the
    same global batches and transforms, and yields its share of each: images rank, rank + world, ...
    """

    def __init__(
        self,
        images: torch.Tensor,
        labels: torch.Tensor,
        batch_size: int,
        generator: torch.Generator,
        weights: np.ndarray | None = None,
        train_augment: bool = True,
        aug: dict | None = None,
        size: int = SIZE,
        rank: int = 0,
        world: int = 1,
        with_index: bool = False,
    ):
        self.images, self.labels = images, labels
        self.batch_size = batch_size
        self.generator = generator
        self.weights = None if weights is None else torch.as_tensor(weights, dtype=torch.float64)
        self.train_augment = train_augment
        self.aug = aug or {}  # keyword arguments of sample_params: scale, translate, erase_p
        self.size = size  # side of the augmented images (< 48: progressive resizing)
        if not 0 <= rank < world:
            raise ValueError(f"rank must be in 0..{world - 1} (got {rank})")
        self.rank, self.world = rank, world
        self.with_index = with_index  # also yield each batch's indices into the split (stored teacher logits)

    def __len__(self) -> int:
        return (len(self.labels) + self.batch_size - 1) // self.batch_size

    def order(self) -> torch.Tensor:
        n = len(self.labels)
        if self.weights is None:
            return torch.randperm(n, generator=self.generator)
        return torch.multinomial(self.weights, n, replacement=True, generator=self.generator)

    def __iter__(self) -> Iterator[tuple[torch.Tensor, ...]]:
        order = self.order().to(self.images.device)
        mine = share(self.rank, self.world)  # this process's share of each global batch
        for i in range(0, len(order), self.batch_size):
            idx = order[i : i + self.batch_size]
            if self.train_augment:  # drawn for the whole global batch, so every process's generator stays in step
                params = sample_params(len(idx), self.generator, **self.aug)
                idx = idx[mine]
                x = augment(self.images[idx], select(params, mine), self.size)
            else:
                idx = idx[mine]
                x = to_input(self.images[idx])
            x = x.contiguous(memory_format=torch.channels_last)
            yield (x, self.labels[idx], idx) if self.with_index else (x, self.labels[idx])
