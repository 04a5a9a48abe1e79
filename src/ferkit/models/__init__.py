"""Models: the registry of architectures and heads, and checkpoints.

`build_model(arch, head, num_classes)` makes a `Classifier` = backbone -> head (`registry`).
`load_model(checkpoint)` rebuilds one from a ferkit or reference-project checkpoint (`checkpoint`).
"""

from ferkit.data.augment import to_input  # noqa: F401  (re-exported: the model input contract, defined with the augmentation)

from .checkpoint import LogitOffset, first_line, load_model, read_checkpoint, save_checkpoint
from .registry import (
    ARCHS,
    FIXED_SIZE_ARCHS,
    HEADS,
    CheckpointError,
    Classifier,
    build_model,
    count_macs,
    count_parameters,
    describe_models,
    fold_batchnorm,
    head_settings,
)

__all__ = [
    "ARCHS",
    "FIXED_SIZE_ARCHS",
    "HEADS",
    "CheckpointError",
    "Classifier",
    "LogitOffset",
    "build_model",
    "count_macs",
    "count_parameters",
    "describe_models",
    "first_line",
    "fold_batchnorm",
    "head_settings",
    "load_model",
    "read_checkpoint",
    "save_checkpoint",
    "to_input",
]
