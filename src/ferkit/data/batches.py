"""Training batches from the in-memory uint8 store: sampling order + batched augmentation.

All randomness comes from one `torch.Generator` on the CPU, whose state is saved with every
checkpoint: a resumed run draws exactly the batches an uninterrupted run would have drawn.
"""
from __future__ import annotations

from typing import Iterator

import numpy as np
import torch

from .augment import SIZE, augment, sample_params, to_input


class EpochBatches:
    """Iterate over one epoch of (augmented input, label) batches.

    `weights` (per image) switches from shuffling to weighted sampling with replacement,
    drawing as many images as the split holds, like torch's WeightedRandomSampler.
    `aug` turns on the optional jitters of `sample_params` (scale, translate, erase_p); `size`
    below 48 makes the augmented images smaller (progressive resizing; needs `train_augment`).
    """

    def __init__(self, images: torch.Tensor, labels: torch.Tensor, batch_size: int, generator: torch.Generator,
                 weights: np.ndarray | None = None, train_augment: bool = True, aug: dict | None = None,
                 size: int = SIZE):
        self.images, self.labels = images, labels
        self.batch_size = batch_size
        self.generator = generator
        self.weights = None if weights is None else torch.as_tensor(weights, dtype=torch.float64)
        self.train_augment = train_augment
        self.aug = aug or {}  # keyword arguments of sample_params: scale, translate, erase_p
        self.size = size  # side of the augmented images (< 48: progressive resizing)

    def __len__(self) -> int:
        return (len(self.labels) + self.batch_size - 1) // self.batch_size

    def order(self) -> torch.Tensor:
        n = len(self.labels)
        if self.weights is None:
            return torch.randperm(n, generator=self.generator)
        return torch.multinomial(self.weights, n, replacement=True, generator=self.generator)

    def __iter__(self) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        order = self.order().to(self.images.device)
        for i in range(0, len(order), self.batch_size):
            idx = order[i:i + self.batch_size]
            imgs = self.images[idx]
            if self.train_augment:
                x = augment(imgs, sample_params(len(idx), self.generator, **self.aug), self.size)
            else:
                x = to_input(imgs)
            yield x.contiguous(memory_format=torch.channels_last), self.labels[idx]
