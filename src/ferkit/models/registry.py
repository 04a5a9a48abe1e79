"""The architectures and heads by name, and how a model is built from them.

`build_model(arch, head, num_classes)` makes a `Classifier` = backbone -> head; `ferkit models`
prints `describe_models()`.
"""

from __future__ import annotations

import copy
from collections.abc import Callable
from typing import Any

import torch
from torch import nn
from torch.nn.utils.fusion import fuse_conv_bn_eval

from ferkit.data.store import IMAGE_SIZE

from .heads import ArcFaceHead, CosineHead, Head, SoftmaxHead
from .resnet import FerResNet, fer_resnet_fast, fer_resnet_fast16, fer_resnet_slim, fer_resnet_wide
from .seedcnn import SeedCNN, seed_cnn_half

ARCHS: dict[str, Callable[[], FerResNet | SeedCNN]] = {
    "seed-cnn": SeedCNN,  # the reference project's CNN
    "seed-cnn-half": seed_cnn_half,  # seed-cnn at half width: the strategy study's cheaper protocol
    "fer-resnet": FerResNet,  # residual, global-average-pooled, same budget
    "fer-resnet-fast": fer_resnet_fast,  # fer-resnet without its 48-pixel stage: 1.6x faster to train
    "fer-resnet-fast16": fer_resnet_fast16,  # fer-resnet-fast with a 16-channel stem: 1.1x faster again
    "fer-resnet-slim": fer_resnet_slim,  # fer-resnet-fast16 with a 48-channel 24x24 block: 1.1x faster again
    "fer-resnet-wide": fer_resnet_wide,  # fer-resnet at twice the width (4.9M): a distillation teacher
}
"""The architectures (backbones) by name: `--arch NAME`, config files, sweeps and checkpoints
(their "arch") look a name up here and nowhere else.

Each entry is a factory called with no arguments (`build_model`).

Returns
-------
nn.Module
    A backbone: a 1 x 48 x 48 image batch (N, 1, H, W) -> features (N, feature_dim), with an int
    attribute `feature_dim`, the head's input size (a new backbone class joins this annotation).

Examples
--------
A new architecture is a module and one line; `ferkit models` then lists it::

    ARCHS["my-net"] = MyNet  # ferkit train --arch my-net
"""

# A fully connected layer fixes their input at 48x48; the others pool globally.
FIXED_SIZE_ARCHS = {"seed-cnn", "seed-cnn-half"}

HEADS: dict[str, type[Head]] = {
    "softmax": SoftmaxHead,
    "cosine": CosineHead,
    "arcface": ArcFaceHead,
}
"""The heads by name: `--head NAME`, config files, sweeps and checkpoints (their "head") look a
name up here and nowhere else.

Each entry is a `Head` subclass, built as `cls(in_dim, num_classes, **settings)` (`build_model`);
its `config_fields` maps each extra constructor argument to the RunConfig field it comes from
(`head_settings`), so that training and a checkpoint rebuild the same head.

Parameters
----------
in_dim : int
    The backbone's `feature_dim`.
num_classes : int
    The number of classes.
**settings
    The head's own arguments (`s` for cosine; `s`, `m` for arcface).

Examples
--------
A new head is a `Head` subclass and one line::

    HEADS["my-head"] = MyHead  # ferkit train --head my-head
"""


class CheckpointError(ValueError):
    """A checkpoint that ferkit cannot read."""


class Classifier(nn.Module):
    """backbone (image -> feature) followed by a head (feature -> logits)."""

    def __init__(self, backbone: nn.Module, head: Head):
        super().__init__()
        self.backbone = backbone
        self.head = head

    def forward(self, x: torch.Tensor, target: torch.Tensor | None = None) -> torch.Tensor:
        return self.head(self.backbone(x), target)


def head_settings(head: str, config: Any) -> dict[str, Any]:
    """The constructor arguments of a head, from a run's configuration.

    Parameters
    ----------
    head : str
        A key of `HEADS`.
    config : RunConfig or any object
        With the fields the head's `config_fields` names.

    Returns
    -------
    dict
        {} for softmax, {"s": arc_s} for cosine, {"s": arc_s, "m": arc_m} for arcface.

    Raises
    ------
    KeyError
        `head` is not in `HEADS`.
    AttributeError
        `config` lacks a field the head needs.
    """
    return {arg: getattr(config, name) for arg, name in HEADS[head].config_fields.items()}


def build_model(arch: str, head: str, num_classes: int, **head_kwargs: Any) -> Classifier:
    """Build an untrained model from the registries: `ARCHS[arch]` -> `HEADS[head]`.

    Parameters
    ----------
    arch : str
        A key of `ARCHS`.
    head : str
        A key of `HEADS`.
    num_classes : int
        The number of classes (the head's outputs).
    **head_kwargs
        The head's own arguments (`head_settings`; e.g. s=30, m=0.5 for arcface).

    Returns
    -------
    Classifier
        backbone -> head, in training mode, float32, on the CPU.

    Raises
    ------
    CheckpointError
        `arch` or `head` is not registered (a ValueError; a checkpoint naming one is unreadable).
    """
    if arch not in ARCHS:
        raise CheckpointError(f"unknown arch {arch!r}: choose one of {', '.join(ARCHS)}")
    if head not in HEADS:
        raise CheckpointError(f"unknown head {head!r}: choose one of {', '.join(HEADS)}")
    backbone = ARCHS[arch]()
    return Classifier(backbone, HEADS[head](backbone.feature_dim, num_classes, **head_kwargs))


def count_parameters(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())


def count_macs(model: nn.Module, size: int = IMAGE_SIZE) -> int:
    """Multiply-adds of one forward pass on one 1 x size x size image (conv and linear layers)."""
    total = 0

    def hook(module: nn.Module, inputs: tuple, output: torch.Tensor) -> None:
        nonlocal total
        if isinstance(module, nn.Conv2d):
            k = module.kernel_size[0] * module.kernel_size[1] * module.in_channels // module.groups
            total += output.numel() * k
        elif isinstance(module, nn.Linear):
            total += module.in_features * module.out_features

    handles = [m.register_forward_hook(hook) for m in model.modules() if isinstance(m, (nn.Conv2d, nn.Linear))]
    was_training = model.training
    model.eval()
    with torch.no_grad():
        model(torch.zeros(1, 1, size, size))
    model.train(was_training)
    for h in handles:
        h.remove()
    return total


def describe_models(num_classes: int = 7) -> str:
    """A table of the registered architectures: parameters and multiply-adds per 48x48 image."""
    width = max(map(len, ARCHS)) + 2
    lines = [f"{'arch':<{width}}{'params':>12}{'MMACs/img':>12}"]
    for name in ARCHS:
        m = build_model(name, "softmax", num_classes)
        lines.append(f"{name:<{width}}{count_parameters(m):>12,}{count_macs(m) / 1e6:>12.1f}")
    return "\n".join(lines)


def fold_batchnorm(model: nn.Module) -> nn.Module:
    """An inference copy of an eval-mode `model` in which each Conv2d -> BatchNorm2d pair of an
    nn.Sequential is one Conv2d (the BatchNorm's affine map folded into the weights and bias).

    The same function (identical up to float rounding), one pass over the activations fewer:
    BatchNorm was a quarter of the evaluation time on the CPU. `model` itself is not changed.
    """
    folded = copy.deepcopy(model)
    for seq in [m for m in folded.modules() if isinstance(m, nn.Sequential)]:
        for i in range(len(seq) - 1):
            conv, bn = seq[i], seq[i + 1]
            if isinstance(conv, nn.Conv2d) and isinstance(bn, nn.BatchNorm2d) and bn.running_mean is not None:
                seq[i], seq[i + 1] = fuse_conv_bn_eval(conv, bn), nn.Identity()
    return folded
