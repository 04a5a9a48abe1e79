"""Shared test fixtures: synthetic FER-2013 writers (see synth.py), the real zip, and a
session-wide ferkit cache folder so tests never write to ~/.cache."""
from __future__ import annotations

import os
import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).parent))  # so tests can `from synth import ...`

from synth import make_fer_csv, make_image_folders  # noqa: E402

REAL_ZIP_DEFAULT = Path(__file__).resolve().parent.parent.parent / "shared" / "data" / "fer2013.zip"


@pytest.fixture(autouse=True, scope="session")
def ferkit_cache(tmp_path_factory) -> Path:
    """Point $FERKIT_CACHE at a temporary folder for the whole session (shared by all tests)."""
    cache = tmp_path_factory.mktemp("ferkit-cache")
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("FERKIT_CACHE", str(cache))
        yield cache


@pytest.fixture
def synth_folders(tmp_path) -> Path:
    """A tiny train/val/test image-folder tree (one 48x48 PNG per class per split)."""
    return make_image_folders(tmp_path / "fer2013")


@pytest.fixture
def synth_csv(tmp_path) -> Path:
    """A tiny fer2013.csv (one row per class per Usage)."""
    return make_fer_csv(tmp_path / "fer2013.csv")


def pytest_collection_modifyitems(config, items) -> None:
    """Every test that reads the real FER-2013 zip is `real_data` and `slow`, so the fast tier
    (`python -m pytest -m "not slow"`) never waits for it; the others mark themselves slow."""
    for item in items:
        if "real_zip" in getattr(item, "fixturenames", ()):
            item.add_marker(pytest.mark.real_data)
            item.add_marker(pytest.mark.slow)


@pytest.fixture
def real_zip() -> Path:
    """The real FER-2013 zip ($FERKIT_DATA_ZIP, else ../shared/data/fer2013.zip), or skip."""
    path = Path(os.environ.get("FERKIT_DATA_ZIP") or REAL_ZIP_DEFAULT)
    if not path.is_file():
        pytest.skip(f"real FER-2013 zip not found at {path} (set FERKIT_DATA_ZIP)")
    return path
