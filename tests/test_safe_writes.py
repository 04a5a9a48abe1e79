"""What ferkit guarantees about the files it writes (ferkit.runtime.paths): a command killed mid-write, or
one that meets a full disk, leaves no partial file and changes no input; writers racing for one
output leave one whole file; a full disk is one line, "no space left on DEVICE writing PATH"."""
from __future__ import annotations

import errno
import os
import re
import shutil
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest
import torch
from synth import CLASSES, make_image_folders
from test_bad_inputs import snapshot

from ferkit.cli import main
from ferkit.runtime import paths

FERKIT = [sys.executable, "-m", "ferkit"]
PROGRESS = re.compile(r"^\s*epoch \d+/\d+:")  # train's progress bar (tqdm, on stderr)


@pytest.fixture(scope="module")
def ws(tmp_path_factory) -> Path:
    """data/ (2 images per class and split), model.pt (an untrained seed-cnn-half), photo.png, run/."""
    from ferkit.models import build_model

    root = tmp_path_factory.mktemp("writes")
    make_image_folders(root / "data", {s: {c: 2 for c in CLASSES} for s in ("train", "val", "test")})
    model = build_model("seed-cnn-half", "softmax", len(CLASSES))
    torch.save({"format": "ferkit", "version": 1, "arch": "seed-cnn-half", "head": "softmax", "head_kwargs": {},
                "class_names": CLASSES, "config": {"data_root": str(root / "data")}, "model": model.state_dict()},
               root / "model.pt")
    shutil.copy(root / "data" / "test" / "sad" / "PrivateTest_sad_0.png", root / "photo.png")
    (root / "run").mkdir()
    (root / "run" / "metrics.json").write_text("{}")  # enough for `summary` to take it as a run: its guard comes first
    return root


# The output each command writes, and its command line (relative to the workspace).
COMMANDS = {
    "export": ("out/m.onnx", ["export", "model.pt", "--out", "out/m.onnx"]),
    "prepare": ("out/ferkit_store.npz", ["prepare", "data", "--out", "out"]),
    "predict": ("out/p.jsonl", ["predict", "photo.png", "--no-detect", "--ckpt", "model.pt", "--out", "out/p.jsonl"]),
}

# Run in a child process: a write to the watched file writes part of its bytes, says so, and waits
# to be killed (SIGKILL: no handler, no clean-up runs).
STALL = """
import os, sys, time
from pathlib import Path
import ferkit.runtime.paths as paths
real = paths._open_temp
def stalling(path, *args, **kwargs):
    f, temp = real(path, *args, **kwargs)
    if Path(path).name != os.environ["STALL_ON"]:
        return f, temp
    class Stall:
        def __getattr__(self, name):
            return getattr(f, name)
        def write(self, data):
            f.write(data[:max(1, len(data) // 2)])
            f.flush()
            Path(os.environ["STALL_MARK"]).touch()
            time.sleep(3600)
    return Stall(), temp
paths._open_temp = stalling
from ferkit.cli import main
sys.exit(main(sys.argv[1:]))
"""


@pytest.mark.slow  # a fresh interpreter per command
@pytest.mark.parametrize("command", sorted(COMMANDS))
def test_a_command_killed_mid_write_leaves_no_partial_file(command, ws, tmp_path):
    out, argv = COMMANDS[command]
    for item in ("data", "model.pt", "photo.png"):
        (shutil.copytree if (ws / item).is_dir() else shutil.copy)(ws / item, tmp_path / item)
    (tmp_path / "stall.py").write_text(STALL)
    before = snapshot(tmp_path)
    mark = tmp_path.parent / f"{tmp_path.name}.writing"
    env = os.environ | {"STALL_ON": Path(out).name, "STALL_MARK": str(mark)}
    child = subprocess.Popen([sys.executable, "stall.py", *argv], cwd=tmp_path, env=env,
                             stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        for _ in range(6000):  # up to 10 minutes on a busy machine: the child imports torch
            if mark.exists() or child.poll() is not None:
                break
            time.sleep(0.1)
        assert mark.exists(), f"the child never wrote {out} (exit {child.poll()})"
        os.kill(child.pid, signal.SIGKILL)
    finally:
        child.kill()
        child.wait()
    assert_only_folders_appeared(before, snapshot(tmp_path))
    assert not (tmp_path / out).exists()


def assert_only_folders_appeared(before: dict[str, str], after: dict[str, str]) -> None:
    """Every input as it was, and nothing new but (empty) folders: no file, whole or partial,
    temporary or not."""
    changed = {k: after.get(k) for k in set(before) | set(after) if before.get(k) != after.get(k)}
    assert all(v == "folder" for v in changed.values()), changed


class FullFile:
    """A file on a full disk: every write fails with ENOSPC, as os.write does there."""

    def __init__(self, f):
        self._f = f

    def __getattr__(self, name):
        return getattr(self._f, name)

    def write(self, data):
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))

    def writelines(self, lines):
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self._f.close()


def fill_disk(monkeypatch, full) -> None:
    """From now on a write to a file for which `full(path)` says so fails with ENOSPC."""
    real = paths._open_temp

    def opener(path, *args, **kwargs):
        f, temp = real(path, *args, **kwargs)
        return (FullFile(f) if full(Path(path)) else f), temp
    monkeypatch.setattr(paths, "_open_temp", opener)


@pytest.mark.parametrize("command", ["export", "predict", "train"])
def test_a_full_disk_is_one_line_and_corrupts_nothing(command, ws, tmp_path, monkeypatch, capsys):
    for item in ("data", "model.pt", "photo.png"):
        (shutil.copytree if (ws / item).is_dir() else shutil.copy)(ws / item, tmp_path / item)
    monkeypatch.chdir(tmp_path)
    if command == "train":
        argv = ["train", "--data_root", "data", "--epochs", "2", "--batch_size", "8", "--arch", "seed-cnn-half",
                "--exp", "full", "--runs_dir", "runs"]
        out, inputs, written = "runs/full/last.pt", snapshot(tmp_path / "data"), []

        def full(p: Path) -> bool:  # the disk fills up in epoch 2: its checkpoints cannot be written
            written.append(p.name)
            return written.count("last.pt") > 1 and p.name in ("last.pt", "best.pt")
        fill_disk(monkeypatch, full)
    else:
        out, argv = COMMANDS[command]
        inputs = snapshot(tmp_path)
        fill_disk(monkeypatch, lambda p: p.name == Path(out).name)
    capsys.readouterr()
    assert main(argv) == 2
    err = capsys.readouterr().err
    lines = [line for line in re.split(r"[\r\n]", err) if line.strip() and not PROGRESS.match(line)]
    assert len(lines) == 1 and lines[0].startswith(f"ferkit {command}: error: no space left on "), err
    assert f"writing {out}" in err and "Traceback" not in err, err
    if command == "train":  # epoch 1's checkpoint is intact; epoch 2's never appeared
        assert snapshot(tmp_path / "data") == inputs
        assert torch.load(tmp_path / out, weights_only=True)["epoch"] == 1
        assert not list((tmp_path / "runs").rglob("*.tmp"))
    else:
        assert_only_folders_appeared(inputs, snapshot(tmp_path))  # no output, no temporary file, inputs as they were


def test_a_full_disk_met_by_a_log_is_one_line_too(ws, tmp_path, monkeypatch, capsys):
    """A write that is not ferkit's own atomic one (the run's log) still gives the one line."""
    import builtins

    import ferkit.run_folder as train_mod  # where the run log is opened

    def full_log(path, mode="r", *args, **kwargs):
        f = builtins.open(path, mode, *args, **kwargs)
        return FullFile(f) if str(path).endswith("train.log") else f
    monkeypatch.setattr(train_mod, "open", full_log, raising=False)
    argv = ["train", "--data_root", str(ws / "data"), "--epochs", "1", "--batch_size", "8", "--arch", "seed-cnn-half",
            "--runs_dir", str(tmp_path / "runs")]
    capsys.readouterr()
    assert main(argv) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "no space left on" in err and "Traceback" not in err, err


def unshare_works() -> bool:
    try:
        return subprocess.run(["unshare", "-rm", "true"], capture_output=True, timeout=30).returncode == 0
    except (OSError, subprocess.SubprocessError):
        return False


NAMESPACES = pytest.mark.skipif(sys.platform != "linux" or not shutil.which("unshare") or not unshare_works(),
                                reason="needs a user and mount namespace (unshare -rm) to mount a small tmpfs")


def on_small_fs(ws: Path, tmp_path: Path, argv: list[str], options: str) -> tuple[subprocess.CompletedProcess, dict]:
    """Run `ferkit argv` ({fs} in it is the mount point) with a tmpfs mounted with `options` in a private
    namespace ("full": 64 KiB, filled up first); returns the result and {path: size} of the files left there."""
    fs, listing = tmp_path / "fs", tmp_path / "listing"
    fs.mkdir()
    fill = '(dd if=/dev/zero of="$1/filler" bs=4k 2>/dev/null; true)' if options == "full" else "true"
    script = (f'mount -t tmpfs -o {"size=64k" if options == "full" else options} tmpfs "$1" && {fill} && shift && "$@"; '
              'rc=$?; find "$0" -type f -printf "%s %p\\n" > "$LISTING"; exit $rc')
    argv = [a.format(fs=fs, ws=ws) for a in argv]
    r = subprocess.run(["unshare", "-rm", "sh", "-c", script, str(fs), str(fs), *FERKIT, *argv],
                       capture_output=True, text=True, env=os.environ | {"LISTING": str(listing)})
    return r, {p: int(n) for n, p in (line.split(" ", 1) for line in listing.read_text().splitlines())}


FULL = {"export": ["export", "{ws}/model.pt", "--out", "{fs}/m.onnx"],
        "predict": ["predict", "{ws}/photo.png", "--no-detect", "--ckpt", "{ws}/model.pt", "--out", "{fs}/p.jsonl"],
        "train": ["train", "--data_root", "{ws}/data", "--epochs", "1", "--batch_size", "8", "--arch", "seed-cnn-half",
                  "--runs_dir", "{fs}"]}


def refused_in_one_line(ws, tmp_path, args, mode, message) -> dict:
    """Run `args` on the small file system (`mode`), check that it exits 2 with one line holding
    `message` and leaves the workspace as it was, and return the files it left there."""
    before = snapshot(ws)
    r, files = on_small_fs(ws, tmp_path, args, mode)
    lines = r.stderr.strip().splitlines()
    assert r.returncode == 2 and len(lines) == 1 and message in lines[0], r.stderr
    assert snapshot(ws) == before
    return files


@pytest.mark.slow
@NAMESPACES
@pytest.mark.parametrize("command", sorted(FULL))
def test_a_really_full_file_system(command, ws, tmp_path):
    """The same on a real full file system: a 64 KiB tmpfs filled up, mounted in a private namespace."""
    files = refused_in_one_line(ws, tmp_path, FULL[command], "full", "no space left on tmpfs")
    assert files.pop(str(tmp_path / "fs" / "filler")) > 0
    # No file but the filler holds anything. export and predict leave no file at all; train's run
    # folder may hold the empty log and config that it opened before the disk said it was full.
    assert all(size == 0 for size in files.values()) and (command == "train" or not files), files


READ_ONLY = {"predict": FULL["predict"], "export": FULL["export"],
             "eval": ["eval", "{ws}/model.pt", "--data_root", "{ws}/data", "--out", "{fs}/ev"],
             "summary": ["summary", "{ws}/run", "--out", "{fs}/sum"],
             "pack": ["pack", "{ws}/model.pt", "--data_root", "{ws}/data", "--out", "{fs}/m.pt"]}


@pytest.mark.slow
@NAMESPACES
@pytest.mark.parametrize("command", sorted(READ_ONLY))
def test_a_read_only_file_system_is_refused_before_any_work(command, ws, tmp_path):
    assert refused_in_one_line(ws, tmp_path, READ_ONLY[command], "ro", "read-only file system") == {}


@pytest.mark.skipif(not hasattr(os, "geteuid") or os.geteuid() == 0, reason="root may write anywhere")
@pytest.mark.parametrize("command", sorted(READ_ONLY))
def test_a_folder_without_write_permission_is_refused_before_any_work(command, ws, tmp_path, capsys):
    locked = tmp_path / "fs"
    locked.mkdir(mode=0o555)
    try:
        assert main([a.format(fs=locked, ws=ws) for a in READ_ONLY[command]]) == 2
    finally:
        locked.chmod(0o755)
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "no permission to write" in err, err
    assert list(locked.iterdir()) == []


def test_writers_racing_for_one_output_leave_one_whole_file(tmp_path):
    """Replacing: every read sees one writer's whole file. Not replacing (no --force): one writer wins,
    the others are told the file appeared meanwhile, and nothing is mixed."""
    target, versions, stop = tmp_path / "out.bin", [bytes([i]) * 300_000 for i in range(4)], threading.Event()
    paths.atomic_write(target, lambda f: f.write(versions[0]))
    seen = set()

    def reader():
        while not stop.is_set():
            seen.add(target.read_bytes())

    def writer(v: bytes):
        for _ in range(10):
            paths.atomic_write(target, lambda f: f.write(v))
    threads = [threading.Thread(target=reader)] + [threading.Thread(target=writer, args=(v,)) for v in versions]
    for t in threads:
        t.start()
    for t in threads[1:]:
        t.join()
    stop.set()
    threads[0].join()
    assert seen <= set(versions) and target.read_bytes() in versions

    new, barrier, results = tmp_path / "new.txt", threading.Barrier(4), []

    def once(i: int):
        barrier.wait()
        try:
            paths.atomic_text(new, f"writer {i}\n" * 1000, overwrite=False)
            results.append(i)
        except paths.OutputError as e:
            assert "appeared while ferkit was writing it" in str(e)
    racers = [threading.Thread(target=once, args=(i,)) for i in range(4)]
    for t in racers:
        t.start()
    for t in racers:
        t.join()
    assert len(results) == 1 and new.read_text() == f"writer {results[0]}\n" * 1000
    assert sorted(p.name for p in tmp_path.iterdir()) == ["new.txt", "out.bin"]  # no temporary file left
