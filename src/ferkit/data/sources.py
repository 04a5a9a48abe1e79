"""`load_data` and `prepare`: find FER-2013 in whatever form the user has it, decode it once,
cache the decoded store keyed by the source's content.

Accepted forms of `data_root`:
  - an image-folder tree (train/ val/ test/, one folder per class), or a train/ + test/ tree
    whose test files are named PublicTest_* / PrivateTest_*
  - a folder (up to two levels above) holding exactly one such tree or one .csv
  - fer2013.csv (columns emotion, pixels, Usage)
  - a .zip of any of these, read in place
  - a folder written by `prepare` (ferkit_store.npz + ferkit_store.json)
"""

from __future__ import annotations

import hashlib
import zipfile
import zlib
from collections.abc import Callable
from pathlib import Path

from ferkit.runtime.paths import OutputError, check_output, special_kind

from .archives import DirSource, Source, ZipSource, join
from .csvsource import read_fer_csv
from .errors import DataError
from .folders import SPLIT_FOLDER_NAMES, decode_tree, scan_tree
from .store import (
    CLASS_NAMES,
    STORE_JSON,
    STORE_NPZ,
    STORE_VERSION,
    FerData,
    check_consistent,
    default_cache_dir,
    is_store_dir,
    load_store,
    save_store,
)

LAYOUTS = (
    "train/ val/ test/ image folders, train/ + test/ image folders with PublicTest_/PrivateTest_ "
    "files, fer2013.csv, a .zip of one of these, or a folder written by `ferkit prepare`"
)
SEARCH_DEPTH = 2  # a tree may sit this many folders below data_root (e.g. zip:data/fer2013/train)

Log = Callable[[str], None]


def load_data(
    data_root: str | Path, cache_dir: str | Path | None = None, skip_bad: bool = False, log: Log = print
) -> FerData:
    """Load FER-2013 from wherever it is, decoded once and cached.

    The first load of a source decodes every image and writes the store to the cache; later loads
    of the same content (the cache key is the source's content, not its path) read that store.

    Parameters
    ----------
    data_root : str or Path
        The dataset, in any form the module docstring lists: an image-folder tree, fer2013.csv,
        a .zip of either (read in place), a folder holding one of these, or a `prepare` folder.
    cache_dir : str or Path, optional
        Where decoded stores are cached; default ``$FERKIT_CACHE``, else ``~/.cache/ferkit``.
        A cache that cannot be written is logged and skipped (slower next time, never wrong).
    skip_bad : bool, default False
        Skip unreadable images, logging each and listing them in the result's `notes`, instead
        of failing on the first one.
    log : callable, default print
        Receives each progress line (what was read, decoded, cached or skipped).

    Returns
    -------
    FerData
        `class_names`, the `splits` ("train", "val", "test": uint8 images (N, 48, 48) and int
        labels in `class_names` order), `source`, the content `key` and `notes`.

    Raises
    ------
    DataError
        Any bad input, as one line that says what is wrong and how to fix it: a missing or
        empty path, an unrecognised layout, a damaged zip, an unreadable image (without
        `skip_bad`), inconsistent splits, or an OS error on the way (a symlink loop, a folder
        that cannot be listed).
    """
    if data_root is None or str(data_root) == "":
        raise DataError(f"no data root given: expected {LAYOUTS}")
    try:
        return _load_data(data_root, cache_dir, skip_bad, log)
    except OSError as e:
        where = e.filename or data_root
        raise DataError(f"cannot read {where} ({e.strerror or e}): check the path and its permissions") from None
    except (zipfile.BadZipFile, zlib.error, EOFError) as e:  # a damaged member of a zip read as a stream (a csv)
        raise DataError(
            f"{data_root} is a damaged zip ({str(e).splitlines()[0] if str(e) else type(e).__name__}): "
            f"download it again"
        ) from None


def _load_data(
    data_root: str | Path, cache_dir: str | Path | None = None, skip_bad: bool = False, log: Log = print
) -> FerData:
    """Load FER-2013 from `data_root` (see the module docstring for the accepted forms).

    The first load decodes every image and writes the store to `cache_dir` (default
    `$FERKIT_CACHE` or ~/.cache/ferkit); later loads of the same content read that store.
    `skip_bad=True` skips unreadable images, logging each and listing them in `notes`.
    Raises DataError (one line: what is wrong and how to fix it) on any bad input."""
    root = Path(data_root).expanduser()
    if not root.exists():
        raise DataError(f"data root {root} does not exist: expected {LAYOUTS}")
    special = special_kind(root.stat().st_mode)
    if special:  # reading a FIFO would wait forever for a writer
        raise DataError(f"data root {root} is {special}, not a file or folder: expected {LAYOUTS}")
    if is_store_dir(root):
        data = load_store(root / STORE_NPZ, root / STORE_JSON)
        data.source = str(root)
        log(f"loaded prepared store {root}")
        _replay_notes(data, log)
        return data

    source, kind, rel = open_dataset(root, log)
    try:
        if kind == "tree":
            plan = scan_tree(source, rel, log)
            key = content_key(source.tree_key(rel, plan.all_files()))
        else:
            key = content_key(source.file_key(rel))
        cache = Path(cache_dir).expanduser() if cache_dir is not None else default_cache_dir()
        stem = f"store-{key}" + ("-skipbad" if skip_bad else "")  # a strict load never sees skips
        npz_path, json_path = cache / f"{stem}.npz", cache / f"{stem}.json"
        cached = _read_cache(npz_path, json_path, log)
        if cached is not None:
            cached.source = str(root)
            _replay_notes(cached, log)
            return cached
        if kind == "tree":
            log(f"decoding {len(plan.all_files())} images from {source.path(rel)} (once; cached afterwards)")
            splits, notes = decode_tree(source, plan, skip_bad, log)
            data = FerData(
                class_names=plan.class_names, splits=splits, source=str(root), key=key, notes=plan.notes + notes
            )
        else:
            log(f"parsing {source.path(rel)} (once; cached afterwards)")
            with source.open(rel) as f:
                splits = read_fer_csv(f, rel.rsplit("/", 1)[-1])
            data = FerData(class_names=list(CLASS_NAMES), splits=splits, source=str(root), key=key, notes=[])
    finally:
        source.close()
    check_consistent(data)
    try:
        save_store(data, npz_path, json_path)
        log(f"cached the decoded store in {npz_path}")
    except (OSError, OutputError) as e:  # a cache we cannot write costs speed next time, not correctness
        log(f"could not write the cache {npz_path} ({e}); set FERKIT_CACHE to a writable folder")
    return data


def prepare(
    source: str | Path,
    out_dir: str | Path,
    skip_bad: bool = False,
    log: Log = print,
    cache_dir: str | Path | None = None,
    force: bool = False,
) -> FerData:
    """Load `source` like `load_data` and write its store into `out_dir` (`ferkit prepare`).

    `load_data(out_dir)` then reads the store directly, with no decoding and no cache. `out_dir`
    is checked before anything is decoded (`check_output`).

    Parameters
    ----------
    source : str or Path
        The dataset, in any form `load_data` accepts.
    out_dir : str or Path
        The folder to write ferkit_store.npz and ferkit_store.json into (created if needed).
        Never `source` itself or a folder inside it (the store would shadow the images).
    skip_bad : bool, default False
        As in `load_data`: skip unreadable images instead of failing.
    log : callable, default print
        Receives each progress line.
    cache_dir : str or Path, optional
        As in `load_data`.
    force : bool, default False
        Replace a store already in `out_dir`.

    Returns
    -------
    FerData
        The dataset, as `load_data` returns it.

    Raises
    ------
    OutputError
        `out_dir` is refused (the source or inside it, not writable, or an earlier store there
        without `force`), or the store could not be written (a full disk, for one).
    DataError
        `source` is bad or unreadable (see `load_data`).
    """
    out = check_output(out_dir, inputs=[source], kind="dir", files=[STORE_NPZ, STORE_JSON], force=force)
    data = load_data(source, cache_dir=cache_dir, skip_bad=skip_bad, log=log)
    save_store(data, out / STORE_NPZ, out / STORE_JSON, overwrite=force)
    log(f"wrote {out / STORE_NPZ} and {STORE_JSON}")
    return data


def content_key(material: bytes) -> str:
    """Cache key: the source's content key material plus the store format version."""
    return hashlib.sha256(f"ferkit-store-v{STORE_VERSION}\0".encode() + material).hexdigest()[:32]


def open_dataset(root: Path, log: Log) -> tuple[Source, str, str]:
    """Open `root` (folder, .csv or .zip) and find the one dataset in it: (source, kind, path),
    kind "tree" or "csv"."""
    if root.is_file() and root.suffix.lower() == ".csv":
        return DirSource(root.parent), "csv", root.name
    if root.is_dir():
        source: Source = DirSource(root)
    elif root.suffix.lower() == ".zip" or zipfile.is_zipfile(root):
        source = ZipSource(root)
    else:
        raise DataError(f"{root} is neither a folder, a .csv nor a .zip: expected {LAYOUTS}")
    found = find_datasets(source)
    if len(found) == 1:
        kind, rel = found[0]
        if rel:
            log(f"using {source.path(rel)}")
        return source, kind, rel
    source.close()
    if found:
        listed = ", ".join(rel + ("/" if kind == "tree" else "") for kind, rel in found)
        raise DataError(f"{root} holds more than one dataset ({listed}): point data_root at one of them")
    hint = ""
    if root.name.lower() in SPLIT_FOLDER_NAMES:
        hint = f" ({root.name}/ looks like a split folder: point data_root at its parent)"
    raise DataError(f"no FER-2013 data found in {root}{hint}: expected {LAYOUTS}")


def find_datasets(source: Source, rel: str = "", depth: int = 0) -> list[tuple[str, str]]:
    """(kind, path) of every image tree (a folder holding a train/val/test-like folder) and every
    .csv in `source`, searching SEARCH_DEPTH folders down and not inside a tree."""
    dirs, files = source.children(rel)
    if any(d.lower() in SPLIT_FOLDER_NAMES for d in dirs):
        return [("tree", rel)]
    found = [("csv", join(rel, f)) for f in files if f.lower().endswith(".csv")]
    if depth < SEARCH_DEPTH:
        for d in dirs:
            found += find_datasets(source, join(rel, d), depth + 1)
    return found


def _read_cache(npz_path: Path, json_path: Path, log: Log) -> FerData | None:
    """The cached store, or None when absent or unreadable (then it is rebuilt and overwritten)."""
    if not (npz_path.is_file() and json_path.is_file()):
        return None
    try:
        data = load_store(npz_path, json_path)
    except DataError as e:
        log(f"ignoring a bad cache entry ({e}); decoding again")
        return None
    log(f"loaded the cached store {npz_path}")
    return data


def _replay_notes(data: FerData, log: Log) -> None:
    """Repeat the notes of a stored dataset, so a cached load tells the user what the first did."""
    for note in data.notes:
        log(note)
