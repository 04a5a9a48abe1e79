"""A user's error, as the CLI reports it: the exception types that are one line and exit status 2,
and the hint for an optional dependency this install lacks."""

from __future__ import annotations

import importlib
import importlib.util

from ferkit.config import ConfigError
from ferkit.runtime.paths import OutputError

# Where each optional dependency comes from: a command that needs one this install lacks says which
# extra to install (the inference install, `pip install 'ferkit[infer]'`, has no torch).
EXTRA_OF = {
    "torch": "train",
    "sklearn": "train",
    "matplotlib": "train",
    "tensorboard": "train",
    "onnx": "train",
    "fastapi": "infer",
    "uvicorn": "infer",
    "multipart": "infer",
    "starlette": "infer",
    "ray": "ray",
    "optuna": "tune",
}


def known_errors() -> tuple[type[Exception], ...]:
    """User-facing error types: printed as one line, exit status 2, no traceback. Those of the
    modules that need torch or matplotlib count only where they are installed (elsewhere nothing
    raises them)."""
    from ferkit.data import DataError
    from ferkit.data.images import ImageError

    errors = [ConfigError, DataError, ImageError, OutputError, FileNotFoundError]
    for module, name in (
        ("ferkit.runtime.device", "DeviceError"),
        ("ferkit.models", "CheckpointError"),
        ("ferkit.infer.onnx", "ModelError"),
        ("ferkit.report.stats", "ReportError"),
        ("ferkit.strategies.distill", "TeacherError"),
    ):
        try:
            errors.append(getattr(importlib.import_module(module), name))
        except ModuleNotFoundError as e:
            if (e.name or "").split(".")[0] not in EXTRA_OF:
                raise
    return tuple(errors)


def missing_extra(e: ModuleNotFoundError) -> str | None:
    """The one-line hint for an optional dependency that is not installed; None for anything else."""
    package = (e.name or "").split(".")[0]
    if package not in EXTRA_OF or importlib.util.find_spec(package) is not None:  # installed: another problem
        return None
    return f"this needs {package}, which this install lacks: pip install 'ferkit[{EXTRA_OF[package]}]'"
