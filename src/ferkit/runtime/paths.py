"""Where ferkit's own files live, and how every command writes yours. Nothing heavy is imported
here: the inference install has no torch.

Every command that writes goes through two steps (docs/INFERENCE.md, "What ferkit guarantees
about your files"):

- `check_output`, before any work starts: the output is not, and is not inside, one of the
  command's inputs (followed through symbolic and hard links); it is of the right kind (file or
  folder) and can be written there; and it does not replace an earlier result unless the user
  said so (`--force`). Each refusal is one `OutputError` line that names both paths.
- `atomic_file` / `atomic_write` / `atomic_path`, for every file: the bytes go to a temporary
  file in the same folder, which is renamed into place only once it is complete. A crash, a
  kill or a full disk leaves the earlier file (or none), never a partial one; a full disk is one
  line, "no space left on DEVICE writing PATH".
"""

from __future__ import annotations

import contextlib
import errno
import os
import stat
import uuid
from collections.abc import Callable, Iterable, Iterator
from pathlib import Path
from typing import IO, Any


def _shipped_dir() -> Path:
    """The shipped models: `ferkit/shipped/` in an installed package (a wheel, `pip install .`), else
    the repository's `pretrained/` (an editable install or a checkout); pyproject.toml maps one to the other."""
    package = Path(__file__).resolve().parents[1]  # src/ferkit (this file is ferkit/runtime/paths.py)
    installed = package / "shipped"
    return installed if installed.is_dir() else package.parents[1] / "pretrained"


SHIPPED_DIR = _shipped_dir()  # `ferkit pack` writes there, `Predictor()` and `ferkit quickstart` read it

NO_SPACE = (errno.ENOSPC, errno.EDQUOT)


class OutputError(ValueError):
    """An output ferkit refuses to write, or could not write: one line that names it (and the input
    it would have replaced)."""


def special_kind(mode: int) -> str | None:
    """What a file that is neither a regular file nor a folder is ("a FIFO", ...), from its st_mode;
    None for a regular file or a folder. Reading a FIFO blocks until someone writes to it."""
    for test, name in (
        (stat.S_ISFIFO, "a FIFO"),
        (stat.S_ISSOCK, "a socket"),
        (stat.S_ISCHR, "a character device"),
        (stat.S_ISBLK, "a block device"),
    ):
        if test(mode):
            return name
    return None


# ---------------------------------------------------------------------------- the guard


def _resolved(path: str | Path) -> Path:
    return Path(os.path.realpath(os.path.expanduser(path)))  # Path.resolve raises on a symlink loop


def _same_file(a: Path, b: Path) -> bool:
    """The same file under two names (a hard link, or one path through a symbolic link)."""
    try:
        return os.path.samefile(a, b)
    except OSError:
        return False


def _clash(target: Path, inputs: list[tuple[str, Path]]) -> tuple[str, str] | None:
    """(how, which input) when writing `target` would destroy an input, else None."""
    real = _resolved(target)
    for given, inp in inputs:
        if real == inp:
            return "is the input", given
        if _same_file(real, inp):
            return "is a link to the input", given  # a hard link: the same file under another name
        if inp in real.parents and inp.is_dir():
            return "is inside the input", given
    return None


def _existing_ancestor(path: Path) -> Path:
    """The nearest folder above `path` (or `path` itself) that exists."""
    p = Path(os.path.abspath(path))
    while not p.exists() and p != p.parent:
        p = p.parent
    return p


def _unwritable(folder: Path) -> str | None:
    """Why files cannot be created in `folder`, or None. Checked by asking, not by writing: a refused
    command leaves nothing behind, not even an empty folder."""
    try:
        if os.statvfs(folder).f_flag & os.ST_RDONLY:
            return f"{folder} is on a read-only file system"
    except (OSError, AttributeError):  # no statvfs (Windows): the access check below still runs
        pass
    if not os.access(folder, os.W_OK | os.X_OK):
        return f"no permission to write in {folder}"
    return None


def check_output(
    path: str | Path,
    *,
    inputs: Iterable[str | Path | None] = (),
    kind: str = "file",
    force: bool = False,
    files: Iterable[str] = (),
    not_into: Iterable[str] = (),
    what: str = "--out",
    force_flag: str = "--force",
) -> Path:
    """Check an output before any work starts; return it as a Path, or raise a one-line OutputError.

    kind "file": `path` is the file to write. kind "dir": `path` is a folder into which the command
    writes `files` (names). Refused: an output that is, or is inside, one of `inputs` (files or
    folders), or the same file as one under another name; a file where a folder is needed and the
    reverse; a place that cannot be written; an existing file (kind "file") or any of `files`
    (kind "dir") unless `force`; and, whatever `force` says, a folder holding any of `not_into`
    (a training run's best.pt, say). `what` names the output in messages (its flag)."""
    out = Path(path).expanduser()
    given = [(str(i), _resolved(i)) for i in inputs if i is not None and str(i) != ""]
    targets = [out] if kind == "file" else [out, *(out / name for name in files)]
    for target in targets:
        clash = _clash(target, given)
        if clash:
            how, inp = clash
            where = f"{how} {inp}" if target == out else f"would write {target.name} over the input {inp}"
            raise OutputError(f"{what} {out} {where}: ferkit never writes over its inputs, choose another path")
    if out.exists():
        if kind == "file" and out.is_dir():
            raise OutputError(f"{what} {out} is a folder: give the path of a file")
        if kind == "dir" and not out.is_dir():
            raise OutputError(f"{what} {out} is a file, not a folder: give a folder")
        special = special_kind(out.stat().st_mode) if kind == "file" else None
        if special:
            raise OutputError(f"{what} {out} is {special}, not a regular file: give the path of a file")
    folder = _existing_ancestor(out if kind == "dir" else out.parent)
    if not folder.is_dir():
        raise OutputError(f"{what} {out} cannot be created: {folder} is a file, not a folder")
    why = _unwritable(folder)
    if why:
        raise OutputError(f"{what} {out} cannot be written: {why}; choose another path")
    if kind == "dir" and out.is_dir():
        run = [n for n in not_into if (out / n).exists()]
        if run:
            raise OutputError(f"{what} {out} holds a training run ({', '.join(run)}): write elsewhere")
        for name in files:
            if (out / name).is_dir():
                raise OutputError(
                    f"{what} {out} holds a folder {name}, where ferkit writes a file: choose another folder"
                )
    if not force:
        found = [out] if kind == "file" and out.exists() else [out / n for n in files if (out / n).exists()]
        if found:
            more = f" and {len(found) - 1} more" if len(found) > 1 else ""
            held = f"{what} {out} exists" if found == [out] else f"{what} {out} already holds {found[0].name}{more}"
            raise OutputError(f"{held}: pass {force_flag} to replace it, or choose another path")
    return out


# ---------------------------------------------------------------------------- writing


def device_of(path: str | Path) -> str:
    """The file system a path lies on, for a message: "/dev/sda1 (mounted at /data)", else the mount point."""
    mount = _existing_ancestor(Path(path))
    while not os.path.ismount(mount) and mount != mount.parent:
        mount = mount.parent
    device = None
    try:
        with open("/proc/self/mounts", encoding="utf-8") as f:
            for line in f:
                parts = line.split()
                if len(parts) > 1 and parts[1].replace("\\040", " ") == str(mount):
                    device = parts[0]  # the last one listed is the one on top
    except OSError:
        pass
    return f"{device} (mounted at {mount})" if device else str(mount)


def no_space(path: str | Path) -> OutputError:
    return OutputError(
        f"no space left on {device_of(path)} writing {path}: nothing was replaced; free some space or write elsewhere"
    )


def write_error(e: OSError, path: str | Path) -> OutputError:
    """An OS error met while writing `path`, as one line."""
    if e.errno in NO_SPACE:
        return no_space(path)
    return OutputError(f"cannot write {path} ({e.strerror or e})")


def _temp_name(path: Path, suffix: str = "") -> Path:
    # Ends in .tmp (before `suffix`): a run folder's stale temporaries are recognised by that.
    return path.with_name(f"{path.stem if suffix else path.name}.{os.getpid()}.{uuid.uuid4().hex[:8]}.tmp{suffix}")


# Linux: an unnamed file in the target folder (O_TMPFILE), given its name only once complete, so
# that even a SIGKILL leaves nothing behind. Elsewhere, or on a file system without it, a named
# temporary file, removed on any error the process lives through.
_UNNAMED = hasattr(os, "O_TMPFILE") and os.path.isdir("/proc/self/fd")


def _open_temp(path: Path, binary: bool, encoding: str | None, newline: str | None) -> tuple[IO[Any], Path | None]:
    """(a writable file next to `path`, its temporary name or None when it has none yet)."""

    def wrap(fd: int) -> IO[Any]:
        if binary:
            return os.fdopen(fd, "wb")
        return os.fdopen(fd, "w", encoding=encoding or "utf-8", newline=newline)

    flags = os.O_WRONLY | getattr(os, "O_CLOEXEC", 0) | getattr(os, "O_BINARY", 0)
    if _UNNAMED:
        try:
            return wrap(os.open(path.parent, flags | os.O_TMPFILE, 0o666)), None
        except OSError as e:
            if e.errno not in (errno.EOPNOTSUPP, errno.EISDIR, errno.EINVAL):
                raise
    temp = _temp_name(path)
    return wrap(os.open(temp, flags | os.O_CREAT | os.O_EXCL, 0o666)), temp


def _link(source: str | Path, path: Path) -> None:
    """Hard-link `source` as `path`, following a /proc/self/fd link to the unnamed file it names
    (os.link follows links only through linkat, which it calls when given a folder descriptor)."""
    folder = os.open(path.parent, os.O_RDONLY | getattr(os, "O_DIRECTORY", 0))
    try:
        os.link(os.path.abspath(source), path.name, dst_dir_fd=folder, follow_symlinks=True)
    finally:
        os.close(folder)


def _place(source: str | Path, path: Path, overwrite: bool) -> None:
    """Give the finished file `source` the name `path`: os.replace, or, when nothing may be
    overwritten, a hard link, which fails if `path` appeared meanwhile (another process wrote it)."""
    if overwrite:
        os.replace(source, path)
        return
    try:
        _link(source, path)
    except FileExistsError:
        raise OutputError(
            f"{path} appeared while ferkit was writing it (another process?): it was left as it "
            f"is; pass --force to replace it"
        ) from None


def _commit(f: IO[Any], temp: Path | None, path: Path, overwrite: bool) -> None:
    if temp is None:  # an unnamed file: link it in through /proc
        source = f"/proc/self/fd/{f.fileno()}"
        if not overwrite:
            _place(source, path, False)
            return
        temp = _temp_name(path)
        _link(source, temp)
        try:
            os.replace(temp, path)
        except OSError:
            temp.unlink(missing_ok=True)
            raise
        return
    _place(temp, path, overwrite)


@contextlib.contextmanager
def atomic_file(
    path: str | Path,
    mode: str = "wb",
    *,
    overwrite: bool = True,
    durable: bool = True,
    encoding: str | None = None,
    newline: str | None = None,
) -> Iterator[IO[Any]]:
    """Open `path` for writing ("wb" or "w"); it appears, whole, when the block ends without an error.

    An exception in the block (a kill, a full disk) leaves the earlier file, or none. `overwrite`
    False refuses to replace a file that appeared meanwhile. `durable` also flushes the file to the
    disk before it is renamed (off for many small derived files, such as annotated copies)."""
    path = Path(path)
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        f, temp = _open_temp(path, "b" in mode, encoding, newline)
    except OSError as e:
        raise write_error(e, path) from None
    try:
        try:
            yield f
        except OSError as e:
            if e.errno in NO_SPACE:  # only writes say this: the file being written is `path`
                raise no_space(path) from None
            raise
        try:
            f.flush()
            if durable:
                os.fsync(f.fileno())
            _commit(f, temp, path, overwrite)
        except OSError as e:
            raise write_error(e, path) from None
    finally:
        with contextlib.suppress(OSError):
            f.close()
        if temp is not None:  # gone after a rename; left after a failure or a hard link
            with contextlib.suppress(OSError):
                temp.unlink()


def atomic_write(
    path: str | Path, write: Callable[[IO[bytes]], Any], *, overwrite: bool = True, durable: bool = True
) -> Path:
    """Write `path` with `write(binary file)` through `atomic_file`; returns the path."""
    with atomic_file(path, "wb", overwrite=overwrite, durable=durable) as f:
        write(f)
    return Path(path)


def atomic_text(path: str | Path, text: str, *, overwrite: bool = True) -> Path:
    """Write `text` (UTF-8) to `path` through `atomic_file`."""
    return atomic_write(path, lambda f: f.write(text.encode("utf-8")), overwrite=overwrite)


@contextlib.contextmanager
def atomic_path(path: str | Path, *, overwrite: bool = True) -> Iterator[Path]:
    """A temporary path next to `path` (same suffix) for a library that writes only to a path
    (OpenCV's VideoWriter); renamed to `path` when the block ends without an error, removed
    otherwise. A SIGKILL can leave it (named `<stem>.<pid>.<random>.tmp<suffix>`), never `path`."""
    path = Path(path)
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
    except OSError as e:
        raise write_error(e, path) from None
    temp = _temp_name(path, path.suffix)
    try:
        try:
            yield temp
        except OSError as e:
            if e.errno in NO_SPACE:
                raise no_space(path) from None
            raise
        if temp.exists():  # the writer may have had nothing to write
            try:
                _place(temp, path, overwrite)
            except OSError as e:
                raise write_error(e, path) from None
    finally:
        with contextlib.suppress(OSError):
            temp.unlink()
