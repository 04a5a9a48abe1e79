"""Test-time augmentation (TTA): the views of a batch of faces whose softmax outputs are averaged.

One definition for evaluation (`ferkit.evaluate.predict_proba`) and inference
(`ferkit.infer.Predictor`), so a shipped model's card and a prediction on a photo use the same
views. Light on imports: torch loads only inside the tensor functions, so that the inference path
(`tta_views`, numpy) runs without it, and neither loads scikit-learn.

Two implementations of the same views: `tta_inputs` on tensors (evaluation, on any device) and
`tta_views` on numpy arrays (inference, with or without torch).
tests/test_train.py::test_numpy_tta_views_are_the_tensor_views checks that they agree to float rounding.
"""

from __future__ import annotations

import functools
from typing import TYPE_CHECKING

import numpy as np

if TYPE_CHECKING:
    import torch

    from ferkit.data.augment import AugParams


def tta_mode(tta: bool | str | None) -> str:
    """Normalise a TTA setting: False/None/"none" -> "none", True/"flip" -> "flip", "crops" -> "crops"."""
    mode = tta if isinstance(tta, str) else "flip" if tta else "none"
    if mode not in TTA_MODES:
        raise ValueError(f"unknown tta {tta!r}: choose none, flip or crops")
    return mode


TTA_MODES = ("none", "flip", "crops")  # cheapest first: a tie when choosing on val keeps the cheaper

CROP_OFFSETS = [(6, 6), (2, 2), (10, 2), (2, 10), (10, 10)]  # centre, and 4 px towards each corner


def crop_views(n: int) -> list[AugParams]:
    """The "crops" TTA views of a batch of n images: 5 crops of 44 px of the image padded by 4 px
    (`CROP_OFFSETS`), resized to 48 as in training, each as is and mirrored: 10 views."""
    import torch

    from ferkit.data.augment import AugParams

    return [
        AugParams(
            flip=torch.full((n,), flip), angle=torch.zeros(n), off_x=torch.full((n,), ox), off_y=torch.full((n,), oy)
        )
        for flip in (False, True)
        for ox, oy in CROP_OFFSETS
    ]


def view_count(tta: bool | str | None) -> int:
    """How many views (forward passes per image) a TTA setting costs: 1, 2 or 10."""
    return {"none": 1, "flip": 2, "crops": 2 * len(CROP_OFFSETS)}[tta_mode(tta)]


def tta_inputs(images: torch.Tensor, tta: bool | str) -> list[torch.Tensor]:
    """The model inputs whose softmax outputs are averaged, for a batch of uint8 images (N, 48, 48):
    one (N, 1, 48, 48) tensor per view of `tta_mode(tta)`."""
    from ferkit.data.augment import augment, to_input

    mode = tta_mode(tta)
    if mode == "crops":
        return [augment(images, view) for view in crop_views(len(images))]
    x = to_input(images)
    return [x, x.flip(3)] if mode == "flip" else [x]


@functools.cache  # 10 views of fixed offsets: made once, read-only afterwards
def _resample_matrix(flip: bool, offset: float, size: int = 48, crop: int = 44, pad: int = 4) -> np.ndarray:
    """(size, size) matrix R with out = R @ line: one axis of a crop view, as `augment` samples it
    (`F.grid_sample`, bilinear, zero padding, align_corners=False). A crop view has no rotation, so
    its 2-D bilinear sampling is one such 1-D resampling along each axis."""
    centre = (2 * pad + size - crop) / 2
    u = (2 * np.arange(size) + 1) / size - 1  # output pixel centres, normalised
    src = (crop / size) * u + (offset - centre) / (size / 2)  # the source point, normalised
    if flip:
        src = -src
    pos = ((src + 1) * size - 1) / 2  # ... in source pixels
    left = np.floor(pos).astype(int)
    frac = pos - left
    r = np.zeros((size, size), np.float64)
    for tap, weight in ((left, 1 - frac), (left + 1, frac)):
        inside = (tap >= 0) & (tap < size)  # taps outside the image read 0 (black)
        r[np.arange(size)[inside], tap[inside]] += weight[inside]
    r = r.astype(np.float32)
    r.setflags(write=False)  # shared by every call (the cache above)
    return r


def tta_views(images: np.ndarray, tta: bool | str) -> list[np.ndarray]:
    """`tta_inputs` in numpy: uint8 images (N, 48, 48) -> one float32 (N, 1, 48, 48) array in
    [-1, 1] per view of `tta_mode(tta)`, the same views (to float rounding) without torch."""
    mode = tta_mode(tta)
    x = images.astype(np.float32)
    if mode != "crops":
        x = x[:, None] / np.float32(127.5) - np.float32(1.0)  # `to_input`
        return [x, x[..., ::-1].copy()] if mode == "flip" else [x]
    x /= np.float32(255.0)
    views = []
    for flip in (False, True):
        for ox, oy in CROP_OFFSETS:
            rows, cols = _resample_matrix(False, oy), _resample_matrix(flip, ox)
            views.append(((rows @ x @ cols.T) * np.float32(2.0) - np.float32(1.0))[:, None])
    return views
