"""The reference project's lightweight CNN ("seed-cnn", ~1.5M parameters).

Module names follow the reference code (`features.{i}.net`, `head`), so that a reference
checkpoint's backbone state dict loads into it unchanged.
"""

from __future__ import annotations

import torch
from torch import nn


class ConvBlock(nn.Module):
    """[3x3 conv (no bias) -> BatchNorm -> ReLU] x 2 -> 2x2 max-pool."""

    def __init__(self, c_in: int, c_out: int):
        super().__init__()
        self.net = nn.Sequential(
            nn.Conv2d(c_in, c_out, 3, padding=1, bias=False),
            nn.BatchNorm2d(c_out),
            nn.ReLU(inplace=True),
            nn.Conv2d(c_out, c_out, 3, padding=1, bias=False),
            nn.BatchNorm2d(c_out),
            nn.ReLU(inplace=True),
            nn.MaxPool2d(2),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x)


class SeedCNN(nn.Module):
    """Three conv blocks (width, 2 width, 4 width channels; 32, 64, 128 by default) and an MLP to a
    128-d feature."""

    feature_dim = 128

    def __init__(self, in_channels: int = 1, dropout: float = 0.3, width: int = 32):
        super().__init__()
        self.features = nn.Sequential(
            ConvBlock(in_channels, width), ConvBlock(width, 2 * width), ConvBlock(2 * width, 4 * width)
        )
        self.head = nn.Sequential(
            nn.Flatten(1),
            nn.Linear(4 * width * 6 * 6, 256),
            nn.ReLU(inplace=True),
            nn.Dropout(dropout),
            nn.Linear(256, self.feature_dim),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.features(x))


def seed_cnn_half() -> SeedCNN:
    """seed-cnn at half width (16, 32, 64 channels): about 4x fewer multiply-adds and 2.5-3x faster
    to train on a 2-core CPU; the strategy study's architecture (docs/RESULTS.md)."""
    return SeedCNN(width=16)
