"""The decoded dataset in memory (`Split`, `FerData`) and on disk (the store).

A store is two files side by side:
  ferkit_store.npz   uncompressed arrays `<split>_images` (uint8, N x 48 x 48) and
                     `<split>_labels` (int64, N), plus `key` (the content key, a consistency check)
  ferkit_store.json  {"format", "version", "class_names", "names": {split: [...]}, "source",
                     "key", "notes"}
Uncompressed on purpose: the full 35,887-image store is 83 MB and loads in a fraction of a
second, where decoding the JPEGs again takes seconds.
"""

from __future__ import annotations

import json
import os
import zipfile
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from ferkit.runtime.paths import atomic_write

from .errors import DataError

CLASS_NAMES = ["angry", "disgust", "fear", "happy", "neutral", "sad", "surprise"]
SPLITS = ("train", "val", "test")
IMAGE_SIZE = 48
STORE_VERSION = 1  # bump when the store layout or the decoding changes: it is part of the cache key
STORE_NPZ = "ferkit_store.npz"
STORE_JSON = "ferkit_store.json"


@dataclass
class Split:
    """One split: images, labels (index into class_names) and the source name of each image."""

    images: np.ndarray  # uint8, (N, 48, 48)
    labels: np.ndarray  # int64, (N,)
    names: list[str]

    def __len__(self) -> int:
        return len(self.labels)


@dataclass
class FerData:
    """The whole dataset: class names and the train/val/test splits."""

    class_names: list[str]
    splits: dict[str, Split]
    source: str
    key: str
    notes: list[str] = field(default_factory=list)

    def counts(self, split: str) -> np.ndarray:
        """Number of images of each class in `split` (in class_names order)."""
        return np.bincount(self.splits[split].labels, minlength=len(self.class_names))


def format_counts(data: FerData) -> str:
    """A per-split, per-class count table, ready to print."""
    header = ["split", *data.class_names, "total"]
    rows = [header]
    totals = np.zeros(len(data.class_names), dtype=np.int64)
    for name in data.splits:
        counts = data.counts(name)
        totals += counts
        rows.append([name, *map(str, counts.tolist()), str(int(counts.sum()))])
    rows.append(["all", *map(str, totals.tolist()), str(int(totals.sum()))])
    widths = [max(len(row[i]) for row in rows) for i in range(len(header))]
    lines = []
    for row in rows:
        cells = [row[0].ljust(widths[0])] + [c.rjust(w) for c, w in zip(row[1:], widths[1:])]
        lines.append("  ".join(cells))
    return "\n".join(lines)


def check_consistent(data: FerData) -> None:
    """Raise DataError unless every split is well-formed and holds every class at least once."""
    for name, split in data.splits.items():
        n = len(split.labels)
        if split.images.shape != (n, IMAGE_SIZE, IMAGE_SIZE) or split.images.dtype != np.uint8:
            raise DataError(
                f"{data.source}: split {name} has images of shape {split.images.shape}, "
                f"dtype {split.images.dtype}; expected ({n}, {IMAGE_SIZE}, {IMAGE_SIZE}) uint8"
            )
        if len(split.names) != n:
            raise DataError(f"{data.source}: split {name} has {n} labels but {len(split.names)} names")
        if n and (split.labels.min() < 0 or split.labels.max() >= len(data.class_names)):
            raise DataError(f"{data.source}: split {name} has labels outside 0..{len(data.class_names) - 1}")
    for name in data.splits:
        missing = [c for c, k in zip(data.class_names, data.counts(name)) if k == 0]
        if missing:
            raise DataError(
                f"{data.source}: split {name} has no images of class {', '.join(missing)}: "
                f"every split needs every class"
            )


# ----------------------------------------------------------------------------- files on disk


def default_cache_dir() -> Path:
    """`$FERKIT_CACHE`, else ~/.cache/ferkit."""
    return Path(os.environ.get("FERKIT_CACHE") or Path.home() / ".cache" / "ferkit").expanduser()


def is_store_dir(path: Path) -> bool:
    """True when `path` is a directory written by `prepare`."""
    return path.is_dir() and (path / STORE_JSON).is_file() and (path / STORE_NPZ).is_file()


def save_store(data: FerData, npz_path: Path, json_path: Path, overwrite: bool = True) -> None:
    """Write `data` as a store: the npz first, then the json (which names the key of the npz)."""
    npz_path.parent.mkdir(parents=True, exist_ok=True)
    arrays = {"key": np.array(data.key)}
    for name, split in data.splits.items():
        arrays[f"{name}_images"] = np.ascontiguousarray(split.images, dtype=np.uint8)
        arrays[f"{name}_labels"] = np.asarray(split.labels, dtype=np.int64)
    meta = {
        "format": "ferkit-store",
        "version": STORE_VERSION,
        "class_names": data.class_names,
        "splits": list(data.splits),
        "names": {name: split.names for name, split in data.splits.items()},
        "source": data.source,
        "key": data.key,
        "notes": data.notes,
    }
    # Each file appears whole or not at all (`atomic_write`); the json, which names the npz's key,
    # goes last, so a store whose json is there is complete.
    # numpy's stubs match **arrays against savez's allow_pickle: bool (hence the ignore)
    atomic_write(npz_path, lambda f: np.savez(f, **arrays), overwrite=overwrite)  # type: ignore[arg-type]
    atomic_write(json_path, lambda f: f.write(json.dumps(meta).encode("utf-8")), overwrite=overwrite)


def load_store(npz_path: Path, json_path: Path) -> FerData:
    """Read a store written by `save_store`; DataError if it is missing, corrupt or of another version."""
    fix = "delete it and run `ferkit prepare` again"
    try:
        meta = json.loads(json_path.read_text(encoding="utf-8"))
        if meta.get("format") != "ferkit-store" or meta.get("version") != STORE_VERSION:
            raise DataError(f"{json_path} is not a version-{STORE_VERSION} ferkit store: {fix}")
        with np.load(npz_path, allow_pickle=False) as npz:
            if str(npz["key"]) != meta["key"]:
                raise DataError(f"{npz_path} does not match {json_path.name} (interrupted write?): {fix}")
            splits = {
                name: Split(images=npz[f"{name}_images"], labels=npz[f"{name}_labels"], names=meta["names"][name])
                for name in meta["splits"]
            }
    except DataError:
        raise
    except (OSError, ValueError, KeyError, TypeError, EOFError, zipfile.BadZipFile) as e:
        raise DataError(f"cannot read store {npz_path.parent} ({type(e).__name__}: {e}): {fix}") from None
    data = FerData(
        class_names=meta["class_names"], splits=splits, source=meta["source"], key=meta["key"], notes=meta["notes"]
    )
    check_consistent(data)
    return data
