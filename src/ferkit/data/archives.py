"""Read-only views of a folder or a .zip with one interface, so layout detection and decoding
do not care which one they read. Paths are posix strings relative to the archive root
("" is the root, "fer2013/train" a folder, "fer2013/train/angry/a.jpg" a file)."""

from __future__ import annotations

import errno
import hashlib
import os
import zipfile
import zlib
from collections.abc import Iterable
from pathlib import Path
from typing import IO

from ferkit.runtime.paths import special_kind

from .errors import DataError

IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".bmp")
JUNK_FILES = {"thumbs.db", "desktop.ini"}  # written by file managers; never data


def is_junk(name: str) -> bool:
    """Hidden files and folders (.DS_Store, ._x.jpg, .ipynb_checkpoints), __MACOSX/ and
    file-manager litter: skipped everywhere, silently."""
    return name.startswith(".") or name == "__MACOSX" or name.lower() in JUNK_FILES


def is_image(name: str) -> bool:
    return name.lower().endswith(IMAGE_SUFFIXES)


def join(prefix: str, name: str) -> str:
    return f"{prefix}/{name}" if prefix else name


def hash_stream(f: IO[bytes], h: hashlib._Hash) -> None:
    """Feed a binary stream into hash `h` in 1 MiB chunks (constant memory)."""
    for chunk in iter(lambda: f.read(1 << 20), b""):
        h.update(chunk)


MAX_ENTRY_BYTES = 64 << 20  # an image file of a dataset; a FER-2013 face is about 2 KB


def check_entry_size(size: int) -> None:
    """Refuse to read a file or zip entry larger than any image of a dataset should be (before reading it)."""
    if size > MAX_ENTRY_BYTES:
        raise ValueError(
            f"{size / 2**20:.0f} MiB uncompressed, more than the {MAX_ENTRY_BYTES >> 20} MiB an image file may be"
        )


class DirSource:
    """A folder on disk."""

    def __init__(self, root: Path):
        self.root = root
        self.display = str(root)

    def path(self, rel: str) -> str:
        return str(self.root / rel) if rel else str(self.root)

    def children(self, rel: str) -> tuple[list[str], list[str]]:
        """Sorted names of the (sub-folders, files) directly in folder `rel`, junk left out. FIFOs,
        sockets and devices count as files: reading one is refused (`read`), so they are reported,
        or skipped under --skip-bad, like any unreadable image."""
        dirs: list[str] = []
        files: list[str] = []
        with os.scandir(self.root / rel) as it:
            for entry in it:
                if is_junk(entry.name):
                    continue
                (dirs if entry.is_dir() else files).append(entry.name)
        return sorted(dirs), sorted(files)

    def open(self, rel: str) -> IO[bytes]:
        """A regular file, opened for reading. Opened without blocking and checked first: opening a
        FIFO for reading waits, forever, for a writer."""
        fd = os.open(self.root / rel, os.O_RDONLY | getattr(os, "O_NONBLOCK", 0) | getattr(os, "O_BINARY", 0))
        try:
            kind = special_kind(os.fstat(fd).st_mode)
            if kind:
                raise OSError(errno.EINVAL, f"{kind}, not a regular file", str(self.root / rel))
            if hasattr(os, "set_blocking"):
                os.set_blocking(fd, True)
            return os.fdopen(fd, "rb")
        except BaseException:
            os.close(fd)
            raise

    def read(self, rel: str) -> bytes:
        with self.open(rel) as f:
            check_entry_size(os.fstat(f.fileno()).st_size)
            return f.read()

    def tree_key(self, prefix: str, files: Iterable[str]) -> bytes:
        """Key material for the image files of a folder tree: (path relative to the tree, size,
        mtime_ns) of each. Stat-only on purpose: hashing every byte of 35,887 files would cost
        more than the ~1 s warm-load target, and any copy, edit or replacement changes size or
        mtime."""
        h = hashlib.sha256(b"dir-tree\0")
        cut = len(prefix) + 1 if prefix else 0
        for rel in files:
            try:
                st = os.stat(self.root / rel)
                size, mtime = st.st_size, st.st_mtime_ns
            except OSError:  # a dangling link or an unreadable entry: decoding reports it (or --skip-bad skips it)
                size = mtime = -1
            h.update(f"{rel[cut:]}\0{size}\0{mtime}\n".encode("utf-8", "surrogateescape"))
        return h.digest()

    def file_key(self, rel: str) -> bytes:
        """Key material for one file (a CSV): a streaming hash of its bytes."""
        h = hashlib.sha256(b"file\0")
        with self.open(rel) as f:
            hash_stream(f, h)
        return h.digest()

    def close(self) -> None:
        pass


class ZipSource:
    """A .zip read in place (members are read one by one; nothing is extracted to disk)."""

    def __init__(self, path: Path):
        self.display = str(path)
        try:
            self.zf = zipfile.ZipFile(path)
        except (zipfile.BadZipFile, OSError) as e:
            raise DataError(f"cannot open {path} as a zip ({e}): check the download") from None
        self._dirs: dict[str, set[str]] = {"": set()}  # folder -> names of its sub-folders
        self._files: dict[str, list[str]] = {"": []}  # folder -> names of its files
        self._index(info.filename for info in self.zf.infolist())

    def _index(self, names: Iterable[str]) -> None:
        """Build the folder structure from the member names. Folders may have no entry of their
        own (the real FER-2013 zip has none), so every ancestor of every member is a folder.
        Files are grouped by folder first, so the per-folder work runs once per folder, not per file."""
        by_folder: dict[str, list[str]] = {}
        for name in names:
            folder, _, base = name.rstrip("/").rpartition("/")
            files = by_folder.setdefault(folder, [])
            if name.endswith("/"):
                by_folder.setdefault(name.rstrip("/"), [])
            elif not is_junk(base):
                files.append(base)
        for folder, files in by_folder.items():
            parts = folder.split("/") if folder else []
            if any(is_junk(p) for p in parts):
                continue
            self._files.setdefault(folder, []).extend(files)
            for i in range(len(parts)):
                self._dirs.setdefault("/".join(parts[:i]), set()).add(parts[i])
                self._dirs.setdefault("/".join(parts[: i + 1]), set())

    def path(self, rel: str) -> str:
        return f"{self.display}:{rel}" if rel else self.display

    def children(self, rel: str) -> tuple[list[str], list[str]]:
        return sorted(self._dirs.get(rel, ())), sorted(self._files.get(rel, ()))

    def read(self, rel: str) -> bytes:
        check_entry_size(self.zf.getinfo(rel).file_size)  # from the zip's directory, before reading
        try:
            return self.zf.read(rel)
        except (zipfile.BadZipFile, zlib.error, EOFError) as e:
            # A damaged member (a wrong CRC-32, a cut-off stream) is a bad file, as an unreadable
            # image is: reported with its name, or skipped under --skip-bad.
            raise ValueError(f"damaged zip member ({(str(e).splitlines() or [type(e).__name__])[0]})") from None

    def open(self, rel: str) -> IO[bytes]:
        return self.zf.open(rel)

    def _central_directory_key(self) -> bytes:
        """Hash of the central directory (member names, CRCs, sizes): it changes whenever any
        member's content does, and reading it costs no member data."""
        h = hashlib.sha256(b"zip\0")
        for info in self.zf.infolist():
            h.update(f"{info.filename}\0{info.CRC}\0{info.file_size}\n".encode("utf-8", "surrogateescape"))
        return h.digest()

    def tree_key(self, prefix: str, files: Iterable[str]) -> bytes:
        return self._central_directory_key()

    def file_key(self, rel: str) -> bytes:
        return self._central_directory_key()

    def close(self) -> None:
        self.zf.close()


Source = DirSource | ZipSource
