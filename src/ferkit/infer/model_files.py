"""Which model file a checkpoint runs as: the shipped model, and the ONNX files `ferkit export` writes
next to a .pt (its "siblings"), which `Predictor(backend="auto")` runs where they are faster or where
torch is not installed (`ferkit.infer.predictor.choose_backend`)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from ferkit.runtime.paths import SHIPPED_DIR


def default_checkpoint() -> Path:
    """The shipped recommended model, `pretrained/ferkit-recommended.pt` in the repository."""
    path = SHIPPED_DIR / "ferkit-recommended.pt"
    if not path.is_file():
        raise FileNotFoundError(
            f"no shipped model found at {path}; pass a checkpoint path (e.g. --ckpt runs/<exp>/best.pt)"
        )
    return path


def int8_sibling(checkpoint: Any) -> Path | None:
    """The int8 ONNX model `ferkit export CKPT --int8` wrote next to a .pt checkpoint, if there is one."""
    if not isinstance(checkpoint, (str, Path)) or not str(checkpoint).endswith(".pt"):
        return None
    path = Path(checkpoint).with_suffix(".int8.onnx")
    return path if path.is_file() else None


def is_onnx_file(checkpoint: Any) -> bool:
    """Whether `checkpoint` names a .onnx file (rather than a .pt or a checkpoint dict)."""
    return isinstance(checkpoint, (str, Path)) and str(checkpoint).lower().endswith(".onnx")


def onnx_sibling(checkpoint: Any) -> Path | None:
    """The ONNX model next to a .pt checkpoint: its int8 one (`ferkit export --int8`), else its
    float32 one (`ferkit export`); None without either."""
    int8 = int8_sibling(checkpoint)
    if int8 is not None or not isinstance(checkpoint, (str, Path)) or not str(checkpoint).endswith(".pt"):
        return int8
    fp32 = Path(checkpoint).with_suffix(".onnx")
    return fp32 if fp32.is_file() else None


def without_torch(checkpoint: Any, device: str = "cpu", bf16: bool | str = "auto") -> Path:
    """In an install without torch: the ONNX file to run for `checkpoint` (`onnx_sibling`), or a
    one-line ValueError that says what to install or export."""
    if device != "cpu" or bf16 != "auto":
        raise ValueError(
            f"device {device!r} and bf16 {bf16!r} are torch settings and this install has no torch: "
            "pip install 'ferkit[train]', or leave them at cpu and auto"
        )
    onnx = onnx_sibling(checkpoint)
    if onnx is None:
        raise ValueError(
            f"{checkpoint if isinstance(checkpoint, (str, Path)) else 'this checkpoint'} is a "
            "PyTorch checkpoint and this install has no torch: pip install 'ferkit[train]', or "
            "export it where torch is (ferkit export CKPT) and pass the .onnx file"
        )
    return onnx
