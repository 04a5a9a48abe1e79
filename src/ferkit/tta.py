"""Test-time augmentation (TTA): the views of a batch of faces whose softmax outputs are averaged.

One definition for evaluation (`ferkit.evaluate.predict_proba`) and inference
(`ferkit.infer.Predictor`), so a shipped model's card and a prediction on a photo use the same
views. Light on imports: the inference path does not load scikit-learn.
"""
from __future__ import annotations

import torch

from ferkit.data.augment import AugParams, augment
from ferkit.models import to_input


def tta_mode(tta: bool | str | None) -> str:
    """Normalise a TTA setting: False/None/"none" -> "none", True/"flip" -> "flip", "crops" -> "crops"."""
    mode = {None: "none", False: "none", True: "flip"}.get(tta, tta)
    if mode not in TTA_MODES:
        raise ValueError(f"unknown tta {tta!r}: choose none, flip or crops")
    return mode


TTA_MODES = ("none", "flip", "crops")  # cheapest first: a tie when choosing on val keeps the cheaper

CROP_OFFSETS = [(6, 6), (2, 2), (10, 2), (2, 10), (10, 10)]  # centre, and 4 px towards each corner


def crop_views(n: int) -> list[AugParams]:
    """The "crops" TTA views of a batch of n images: 5 crops of 44 px of the image padded by 4 px
    (`CROP_OFFSETS`), resized to 48 as in training, each as is and mirrored: 10 views."""
    return [AugParams(flip=torch.full((n,), flip), angle=torch.zeros(n), off_x=torch.full((n,), ox),
                      off_y=torch.full((n,), oy)) for flip in (False, True) for ox, oy in CROP_OFFSETS]


def view_count(tta: bool | str | None) -> int:
    """How many views (forward passes per image) a TTA setting costs: 1, 2 or 10."""
    return {"none": 1, "flip": 2, "crops": 2 * len(CROP_OFFSETS)}[tta_mode(tta)]


def tta_inputs(images: torch.Tensor, tta: bool | str) -> list[torch.Tensor]:
    """The model inputs whose softmax outputs are averaged, for a batch of uint8 images (N, 48, 48):
    one (N, 1, 48, 48) tensor per view of `tta_mode(tta)`. `ferkit.infer.Predictor` uses it too."""
    mode = tta_mode(tta)
    if mode == "crops":
        return [augment(images, view) for view in crop_views(len(images))]
    x = to_input(images)
    return [x, x.flip(3)] if mode == "flip" else [x]
