"""Where ferkit's own files live, without importing anything heavy (the inference install has no torch)."""
from __future__ import annotations

from pathlib import Path


def _shipped_dir() -> Path:
    """The shipped models: `ferkit/shipped/` in an installed package (a wheel, `pip install .`), else
    the repository's `pretrained/` (an editable install or a checkout); pyproject.toml maps one to the other."""
    package = Path(__file__).resolve().parent
    installed = package / "shipped"
    return installed if installed.is_dir() else package.parents[1] / "pretrained"


SHIPPED_DIR = _shipped_dir()  # `ferkit pack` writes there, `Predictor()` and `ferkit quickstart` read it
