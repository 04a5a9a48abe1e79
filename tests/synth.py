"""Tiny synthetic FER-2013 datasets for tests (importable: `from synth import ...`).

    make_image_folders(root, counts={"train": {"angry": 2, ...}, ...}, size=48, color=False)
    make_fer_csv(path, n_per_class=1)
    zip_folder(folder, zip_path, arc_prefix="fer2013")
    Log(), assert_same_data(a, b)   # test helpers
"""
from __future__ import annotations

import csv
import posixpath
import zipfile
import zlib
from pathlib import Path

import numpy as np
from PIL import Image

CLASSES = ["angry", "disgust", "fear", "happy", "neutral", "sad", "surprise"]
CSV_CODES = ["angry", "disgust", "fear", "happy", "sad", "surprise", "neutral"]  # fer2013.csv order
FILE_PREFIX = {"train": "Training_", "val": "PublicTest_", "test": "PrivateTest_"}
USAGES = ["Training", "PublicTest", "PrivateTest"]


class Log(list):
    """A `log` callable that keeps the lines it is given."""

    def __call__(self, line: str) -> None:
        self.append(line)

    def has(self, text: str) -> bool:
        return any(text in line for line in self)


def assert_same_data(a, b) -> None:
    """Two FerData hold the same classes, splits, images, labels and names."""
    assert a.class_names == b.class_names and list(a.splits) == list(b.splits)
    for name in a.splits:
        np.testing.assert_array_equal(a.splits[name].images, b.splits[name].images)
        np.testing.assert_array_equal(a.splits[name].labels, b.splits[name].labels)
        assert a.splits[name].names == b.splits[name].names


def default_counts(n: int = 1, splits: tuple[str, ...] = ("train", "val", "test")) -> dict[str, dict[str, int]]:
    """`n` images of every class in every split."""
    return {s: {c: n for c in CLASSES} for s in splits}


def pixels(seed: str, size: int = 48, color: bool = False) -> np.ndarray:
    """Deterministic random pixels for one image: uint8 (size, size) or (size, size, 3)."""
    rng = np.random.default_rng(zlib.crc32(seed.encode()))
    shape = (size, size, 3) if color else (size, size)
    return rng.integers(0, 256, shape, dtype=np.uint8)


def write_image(path: Path, array: np.ndarray) -> Path:
    """Save an array as an image; the format follows the suffix (.png is lossless)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fmt = {".jpg": "JPEG", ".jpeg": "JPEG", ".png": "PNG", ".bmp": "BMP"}[path.suffix.lower()]
    Image.fromarray(array).save(path, format=fmt)
    return path


def make_image_folders(root: str | Path, counts: dict[str, dict[str, int]] | None = None, size: int = 48,
                       color: bool = False, ext: str = "png", prefix: dict[str, str] | None = None) -> Path:
    """Write `root/<split>/<class>/<Prefix><class>_<i>.<ext>` for the given counts (default: one
    image per class per split). File prefixes follow the split (Training_, PublicTest_,
    PrivateTest_) unless `prefix` overrides them. Returns `root`."""
    root = Path(root)
    prefix = {**FILE_PREFIX, **(prefix or {})}
    for split, per_class in (counts or default_counts()).items():
        for cls, n in per_class.items():
            for i in range(n):
                name = f"{prefix.get(split, '')}{cls}_{i}.{ext}"
                write_image(root / split / cls / name, pixels(f"{split}/{cls}/{name}", size, color))
    return root


def csv_rows(n_per_class: int = 1) -> list[tuple[int, str, np.ndarray]]:
    """(emotion code, Usage, 48x48 pixels) rows: `n_per_class` of every code in every Usage."""
    return [(code, usage, pixels(f"{usage}/{code}/{i}"))
            for usage in USAGES for code in range(7) for i in range(n_per_class)]


def make_fer_csv(path: str | Path, n_per_class: int = 1, extra_lines: list[str] = ()) -> Path:
    """Write a fer2013.csv (header emotion,pixels,Usage) with the rows of `csv_rows`, then
    `extra_lines` verbatim (to inject malformed rows). Returns `path`."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "w", newline="") as f:
        writer = csv.writer(f, lineterminator="\n")
        writer.writerow(["emotion", "pixels", "Usage"])
        for code, usage, px in csv_rows(n_per_class):
            writer.writerow([code, " ".join(map(str, px.ravel().tolist())), usage])
        for line in extra_lines:
            f.write(line + "\n")
    return path


def zip_folder(folder: str | Path, zip_path: str | Path, arc_prefix: str = "", junk: bool = False,
               dir_entries: bool = False) -> Path:
    """Zip every file under `folder`, naming members `<arc_prefix>/<path>` (or `<path>`).
    `junk=True` also adds macOS litter (__MACOSX/, .DS_Store) that readers must ignore;
    `dir_entries=True` adds an entry for every folder too (as `zip -r` does; the real zip has none)."""
    folder, zip_path = Path(folder), Path(zip_path)
    folders = set()
    with zipfile.ZipFile(zip_path, "w") as zf:
        for file in sorted(folder.rglob("*")):
            rel = file.relative_to(folder).as_posix()
            member = f"{arc_prefix}/{rel}" if arc_prefix else rel
            if file.is_dir():
                if dir_entries:
                    zf.write(file, member)  # zipfile names it "<member>/"
                continue
            zf.write(file, member)
            folders.add(posixpath.dirname(member))
            if junk:
                zf.writestr(posixpath.join("__MACOSX", posixpath.dirname(member), "._" + file.name), b"\0\5junk")
        if junk:
            for f in sorted(folders):
                zf.writestr(posixpath.join(f, ".DS_Store"), b"junk")
    return zip_path
