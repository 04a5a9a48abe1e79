"""`fer-resnet`: a small residual network for 48x48 faces (about 1.2M parameters).

Four stages at 48, 24, 12 and 6 pixels with 32, 64, 128 and 256 channels, each a residual block
of two 3x3 convolutions; global average pooling replaces seed-cnn's 4608x256 fully connected
layer, which held 80% of its parameters. The compute goes into the convolutions instead (about
1.3x seed-cnn's multiply-adds), which is where small FER-2013 models gain accuracy.
"""

from __future__ import annotations

import torch
from torch import nn


def conv_bn(c_in: int, c_out: int, stride: int = 1) -> nn.Sequential:
    return nn.Sequential(nn.Conv2d(c_in, c_out, 3, stride, 1, bias=False), nn.BatchNorm2d(c_out))


class BasicBlock(nn.Module):
    """Two 3x3 conv-BN layers with an identity (or 1x1 projection) shortcut."""

    def __init__(self, c_in: int, c_out: int, stride: int = 1):
        super().__init__()
        self.conv1 = conv_bn(c_in, c_out, stride)
        self.conv2 = conv_bn(c_out, c_out)
        self.relu = nn.ReLU(inplace=True)
        self.shortcut = (
            nn.Identity()
            if stride == 1 and c_in == c_out
            else nn.Sequential(nn.Conv2d(c_in, c_out, 1, stride, bias=False), nn.BatchNorm2d(c_out))
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.relu(self.conv2(self.relu(self.conv1(x))) + self.shortcut(x))


class FerResNet(nn.Module):
    """stem (3x3, 32) -> blocks 32@48, 64@24, 128@12, 256@6 -> global average pool -> 256-d feature.

    `first_stride=2` makes the first block halve the resolution, so the stages run at 24, 12, 6
    and 3 pixels (use three widths to stop at 6): see `fer_resnet_fast`.
    """

    def __init__(
        self, widths: tuple[int, ...] = (32, 64, 128, 256), dropout: float = 0.3, stem: int = 32, first_stride: int = 1
    ):
        super().__init__()
        self.feature_dim = widths[-1]
        layers: list[nn.Module] = [conv_bn(1, stem), nn.ReLU(inplace=True)]
        c = stem
        for i, w in enumerate(widths):
            layers.append(BasicBlock(c, w, stride=first_stride if i == 0 else 2))
            c = w
        self.features = nn.Sequential(*layers)
        self.pool = nn.Sequential(nn.AdaptiveAvgPool2d(1), nn.Flatten(1), nn.Dropout(dropout))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.pool(self.features(x))


def fer_resnet_fast() -> FerResNet:
    """fer-resnet without its 48x48 block: the stem's 32 channels go straight into 64@24.

    That block held 30% of the multiply-adds but more of the training time on a CPU (about 37%):
    its BatchNorm, ReLU and residual add stream 128x32x48x48 activations through memory several
    times per step (`bench/train_step.py --profile`). Without it a training step is about 1.6x
    faster (`bench/results/train_step.txt`), for the fast recipe's fixed time budget.
    """
    return FerResNet((64, 128, 256), first_stride=2)


def fer_resnet_fast16() -> FerResNet:
    """fer-resnet-fast with a 16-channel stem instead of 32.

    The stem is the only layer left at 48x48, and its BatchNorm and ReLU are memory-bound: with
    half the channels a training step is about 1.1x faster. A 3x3 stem on a grayscale image sees
    9 pixels, so 16 channels still over-represent each patch. (A stride-2 stem, which would drop
    the 48x48 layer altogether, was slower: oneDNN's stride-2 convolution of one input channel.)
    """
    return FerResNet((64, 128, 256), first_stride=2, stem=16)


def fer_resnet_slim() -> FerResNet:
    """fer-resnet-fast16 with 48 channels instead of 64 in its 24x24 block.

    That block's BatchNorms, ReLUs and residual add are the memory-bound part of a step left after
    fer-resnet-fast16 (`bench/train_step.py --profile`); three quarters of the channels make a
    training step about 1.1x faster for 3% fewer parameters (`bench/results/train_step.txt`).
    """
    return FerResNet((48, 128, 256), first_stride=2, stem=16)


def fer_resnet_wide() -> FerResNet:
    """fer-resnet at twice the width (a 64-channel stem, blocks 64@48, 128@24, 256@12, 512@6; about
    4.9M parameters, 4x the multiply-adds): a teacher for distillation, trained where compute
    allows (a GPU) and never shipped."""
    return FerResNet((64, 128, 256, 512), stem=64)
