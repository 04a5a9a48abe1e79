"""Use a trained model on real photos, videos and webcam snapshots.

    from ferkit.infer import Predictor
    faces = Predictor().predict(["photo.jpg"])[0]

Heavy dependencies (torch, OpenCV, onnxruntime, FastAPI) load only when used, so that
`ferkit --help` stays fast.
"""

from __future__ import annotations

from typing import Any

__all__ = ["Predictor", "default_checkpoint", "export_onnx", "ImageReadError", "ModelError"]


def __getattr__(name: str) -> Any:
    if name == "Predictor":
        from .predictor import Predictor

        return Predictor
    if name == "default_checkpoint":
        from .model_files import default_checkpoint

        return default_checkpoint
    if name == "export_onnx":
        from .export import export_onnx

        return export_onnx
    if name == "ImageReadError":
        from .io import ImageReadError

        return ImageReadError
    if name == "ModelError":  # a corrupt .onnx, or a model whose outputs are NaN
        from .onnx import ModelError

        return ModelError
    raise AttributeError(f"module 'ferkit.infer' has no attribute {name!r}")
