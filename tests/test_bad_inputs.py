"""Untrusted files, paths and values given to ferkit: each is refused with one line on stderr and exit 2
(or a 4xx), runs nothing, changes no input and leaves no partial output. The table is in bad_cases.py."""
from __future__ import annotations

import contextlib
import hashlib
import os
import shutil
import signal
import stat
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
import torch
from bad_cases import API_CASES, CASES, HTTP_CASES, SAYS, _errors, build_workspace, crc_zip

ROOT = Path(__file__).resolve().parents[1]
SHIPPED = ROOT / "pretrained" / "ferkit-recommended.pt"


class Payload:
    """Unpickling this calls os.system: the classic malicious checkpoint."""

    def __init__(self, marker: Path):
        self.marker = marker

    def __reduce__(self):
        return (os.system, (f"touch {self.marker}",))


@pytest.fixture
def evil_checkpoint(tmp_path) -> tuple[Path, Path]:
    """A checkpoint that looks like ferkit's but runs `touch MARKER` when unpickled without restrictions."""
    marker = tmp_path / "PAYLOAD_RAN"
    ckpt = torch.load(SHIPPED, weights_only=True)
    ckpt["config"] = dict(ckpt["config"], note=Payload(marker))
    path = tmp_path / "evil.pt"
    torch.save(ckpt, path)
    return path, marker


@pytest.mark.slow  # a fresh interpreter per command
@pytest.mark.parametrize("command", [
    ["eval", "{ckpt}", "--data_root", "{tmp}/nodata"],
    ["predict", "{face}", "--no-detect", "--ckpt", "{ckpt}", "--out", "{tmp}/out/p.jsonl"],
    ["train", "--data_root", "{tmp}/nodata", "--epochs", "0", "--resume", "{ckpt}", "--runs_dir", "{tmp}/out"],
    ["posthoc", "{ckpt}", "--method", "la", "--data_root", "{tmp}/nodata", "--out", "{tmp}/out/la.pt"],
    ["pack", "{ckpt}", "--out", "{tmp}/out/m.pt", "--data_root", "{tmp}/nodata"],
    ["export", "{ckpt}", "--out", "{tmp}/out/m.onnx"],
])
def test_a_checkpoint_that_runs_code_is_refused_and_nothing_runs(evil_checkpoint, tmp_path, command):
    ckpt, marker = evil_checkpoint
    face = ROOT / "docs" / "ui-screenshot.png"  # any image: the checkpoint is refused before it is read
    args = [a.format(ckpt=ckpt, tmp=tmp_path, face=face) for a in command]
    before = set(tmp_path.rglob("*"))
    r = subprocess.run([sys.executable, "-m", "ferkit", *args], capture_output=True, text=True, cwd=tmp_path)
    assert not marker.exists(), "the checkpoint's payload ran"
    assert r.returncode == 2, r.stderr
    lines = r.stderr.strip().splitlines()
    assert len(lines) == 1 and "refusing to load" in lines[0] and "posix.system" in lines[0], r.stderr
    assert "Traceback" not in r.stderr
    assert set(tmp_path.rglob("*")) == before, "a refused checkpoint left files behind"


def test_the_shipped_and_reference_checkpoints_still_load(tmp_path):
    """Data-only loading keeps ferkit's own files and the reference project's format working."""
    import argparse

    import numpy as np

    from ferkit.models import build_model, load_model

    model, info = load_model(SHIPPED)
    assert info["arch"] == "fer-resnet"
    seed = build_model("seed-cnn", "softmax", 7)
    backbone = {k[len("backbone."):]: v for k, v in seed.state_dict().items() if k.startswith("backbone.")}
    head = {k[len("head."):]: v for k, v in seed.state_dict().items() if k.startswith("head.")}
    ref = {"backbone": backbone, "head": head, "args": argparse.Namespace(lr=1e-3, head="softmax"),
           "best_f1": np.float64(0.58), "epoch": np.int64(29), "hist": np.zeros(3)}
    torch.save(ref, tmp_path / "E5_balanced_best.pt")
    model, info = load_model(tmp_path / "E5_balanced_best.pt")
    assert info["arch"] == "seed-cnn" and info["head"] == "softmax"


# ---------------------------------------------------------------- the table of bad inputs (tests/bad_cases.py)

@pytest.fixture(scope="session")
def workspace(tmp_path_factory) -> Path:
    """A tiny dataset, a finished run and broken models, made once (bad_cases.build_workspace)."""
    return build_workspace(tmp_path_factory.mktemp("ws"))


@pytest.fixture
def case_dir(workspace, tmp_path, monkeypatch) -> Path:
    """A copy of the workspace to run one case in (hard links: a case must not change them anyway,
    and the hashes below would see it), as the current folder."""
    for item in workspace.iterdir():
        if item.is_dir():
            shutil.copytree(item, tmp_path / item.name, copy_function=os.link)
        else:
            os.link(item, tmp_path / item.name)
    monkeypatch.chdir(tmp_path)
    return tmp_path


_HASHES: dict[tuple, str] = {}


def snapshot(root: Path) -> dict[str, str]:
    """Every path under `root` with what it is: a folder, a link and its target, a FIFO, or a regular
    file's SHA-256 (cached by inode, size and mtime, as the cases share the workspace's files)."""
    found = {}
    for folder, dirs, files in os.walk(root):
        for name in dirs + files:
            path = Path(folder) / name
            st = path.lstat()
            if stat.S_ISLNK(st.st_mode):
                found[str(path)] = "link to " + os.readlink(path)
            elif stat.S_ISDIR(st.st_mode):
                found[str(path)] = "folder"
            elif not stat.S_ISREG(st.st_mode):
                found[str(path)] = "special"
            else:
                key = (st.st_ino, st.st_size, st.st_mtime_ns)
                if key not in _HASHES:
                    _HASHES[key] = hashlib.sha256(path.read_bytes()).hexdigest()
                found[str(path)] = _HASHES[key]
    return found


@contextlib.contextmanager
def deadline(seconds: int) -> Iterator[None]:
    """Fail a case that hangs (a FIFO read, a sweep waiting for a slot that never frees) instead of
    hanging the test run: SIGALRM interrupts even a blocking open()."""
    def stop(signum, frame):
        raise TimeoutError(f"still running after {seconds} s")
    old = signal.signal(signal.SIGALRM, stop)
    signal.alarm(seconds)
    try:
        yield
    finally:
        signal.alarm(0)
        signal.signal(signal.SIGALRM, old)


def no_server(*args, **kwargs):
    raise AssertionError("ferkit serve started a server for a bad input")


@pytest.mark.parametrize("name, setup", CASES, ids=[c[0] for c in CASES])
def test_bad_input_gets_one_line_exit_2_and_leaves_nothing(name, setup, case_dir, monkeypatch, capsys):
    import uvicorn

    from ferkit.cli import main

    monkeypatch.setattr(uvicorn, "run", no_server)
    argv = setup(case_dir)
    assert argv[0] == name.split(":")[0]
    before = snapshot(case_dir)
    capsys.readouterr()
    with deadline(10 if "no hang" in name else 120):  # the FIFO cases must return at once: 10 s is generous
        code = main(argv)
    err = capsys.readouterr().err
    lines = [line for line in err.splitlines() if line.strip()]
    assert code == 2, (code, err)
    assert len(lines) == 1 and "Traceback" not in err, err
    assert lines[0].startswith(f"ferkit {argv[0]}: error: "), err
    for prefix, words in SAYS.items():
        assert not name.startswith(prefix) or all(w in lines[0] for w in words), (words, lines[0])
    after = snapshot(case_dir)
    assert after == before, f"changed or left behind: {sorted(k for k in set(after) | set(before) if after.get(k) != before.get(k))}"


@pytest.mark.parametrize("name, setup, errors", API_CASES, ids=[c[0] for c in API_CASES])
def test_the_python_api_refuses_with_one_line(name, setup, errors, case_dir):
    call = setup(case_dir)
    before = snapshot(case_dir)
    with deadline(10 if "no hang" in name else 120), pytest.raises(_errors(*errors)) as e:
        call()
    assert len(str(e.value).splitlines()) == 1, str(e.value)
    assert snapshot(case_dir) == before


@pytest.fixture(scope="module")
def client(workspace):
    from fastapi.testclient import TestClient

    from ferkit.infer import Predictor
    from ferkit.infer.service import create_app

    app = create_app(Predictor(workspace / "runs" / "done" / "best.pt", bf16=False), max_bytes=200_000)
    with TestClient(app) as c:
        yield c


@pytest.mark.parametrize("name, send, status", HTTP_CASES, ids=[c[0] for c in HTTP_CASES])
def test_the_service_refuses_with_a_4xx_and_one_line(name, send, status, client, workspace):
    before = snapshot(workspace)
    r = send(client)
    assert r.status_code == status, r.text
    detail = r.json()["detail"]
    assert "Traceback" not in r.text and (not isinstance(detail, str) or len(detail.splitlines()) == 1), detail
    assert snapshot(workspace) == before


def test_skip_bad_skips_a_fifo_and_a_damaged_zip_member_with_a_note(workspace, tmp_path):
    """The two bad files that used to hang or give a traceback are skipped like unreadable images."""
    from synth import Log

    from ferkit.data import load_data

    shutil.copytree(workspace / "data", tmp_path / "data")
    os.mkfifo(tmp_path / "data" / "train" / "angry" / "pipe.png")
    damaged = crc_zip(workspace / "data", tmp_path / "crc.zip")  # its first image, of 42, cannot be read
    for source, name, kept in ((tmp_path / "data", "pipe.png", 42), (damaged, "PrivateTest_angry_0.png", 41)):
        with deadline(10):
            log = Log()
            data = load_data(source, cache_dir=tmp_path / "cache", skip_bad=True, log=log)
        assert sum(map(len, data.splits.values())) == kept and any(name in n for n in data.notes), data.notes
        assert log.has("skipped 1 unreadable image")


def test_the_table_covers_every_subcommand_and_the_python_api():
    from ferkit.cli import build_parser

    commands = set(next(a for a in build_parser()._actions if a.dest == "command").choices)
    covered = {c[0].split(":")[0] for c in CASES + API_CASES + HTTP_CASES}
    assert commands - covered == set(), f"no case for {sorted(commands - covered)}"
    assert {"api", "http"} <= covered
    assert len(CASES) + len(API_CASES) + len(HTTP_CASES) >= 100


# ---------------------------------------------------------------- images: bombs, 16-bit, oversized entries

def _png(size: tuple[int, int], mode: str = "L", array=None) -> bytes:
    import io

    from PIL import Image
    im = Image.fromarray(array) if array is not None else Image.new(mode, size)
    buf = io.BytesIO()
    im.save(buf, format="PNG")
    return buf.getvalue()


def test_a_decompression_bomb_is_refused_from_its_header():
    """A 50-megapixel PNG of a few hundred KB is refused before its pixels are decoded."""
    from ferkit.data.images import MAX_PIXELS, ImageError, open_image
    from ferkit.infer.io import ImageReadError, decode_image

    bomb = _png((7100, 7100))
    assert len(bomb) < 1_000_000 and 7100 * 7100 > MAX_PIXELS
    with pytest.raises(ImageReadError) as e:
        decode_image(bomb, "bomb.png")
    assert e.value.kind == "too_large" and "megapixels" in str(e.value) and "--max-pixels" in str(e.value)
    with pytest.raises(ImageError):
        open_image(_png((200, 200)), "small.png", max_pixels=10_000)  # the limit is configurable
    assert decode_image(_png((200, 200)), max_pixels=40_000).shape == (200, 200)


def test_16_bit_images_are_scaled_not_clipped(tmp_path):
    import numpy as np
    from synth import make_image_folders

    from ferkit.data import load_data
    from ferkit.infer.io import decode_image

    ramp = (np.arange(48 * 48, dtype=np.uint16).reshape(48, 48) * 28).astype(np.uint16)  # 0 .. 64,484
    gray = decode_image(_png((48, 48), array=ramp))
    assert gray.dtype == np.uint8 and gray.min() == 0 and 250 <= gray.max() <= 255 and 100 < gray.mean() < 155
    root = make_image_folders(tmp_path / "fer")
    (root / "train" / "happy" / "Training_happy_0.png").write_bytes(_png((48, 48), array=ramp))
    data = load_data(root, cache_dir=tmp_path / "cache", log=lambda s: None)
    i = data.splits["train"].names.index("train/happy/Training_happy_0.png")
    np.testing.assert_array_equal(data.splits["train"].images[i], gray)


def test_skip_bad_skips_a_dangling_symlink_and_an_oversized_zip_entry(tmp_path):
    import zipfile

    from synth import make_image_folders, zip_folder

    from ferkit.data import DataError, load_data
    from ferkit.data.archives import MAX_ENTRY_BYTES

    root = make_image_folders(tmp_path / "fer", {s: {c: 2 for c in ["angry", "disgust", "fear", "happy", "neutral",
                                                                      "sad", "surprise"]} for s in ("train", "val", "test")})
    (root / "train" / "sad" / "Training_sad_9.png").symlink_to(tmp_path / "gone.png")
    with pytest.raises(DataError, match="Training_sad_9.png"):
        load_data(root, cache_dir=tmp_path / "c1", log=lambda s: None)
    data = load_data(root, cache_dir=tmp_path / "c2", skip_bad=True, log=lambda s: None)
    assert len(data.splits["train"]) == 14 and any("Training_sad_9.png" in n for n in data.notes)

    (root / "train" / "sad" / "Training_sad_9.png").unlink()
    archive = zip_folder(root, tmp_path / "fer.zip")
    with zipfile.ZipFile(archive, "a", compression=zipfile.ZIP_DEFLATED) as z:  # 65 MiB of zeros: a tiny entry
        z.writestr("train/sad/Training_sad_8.png", b"\0" * (MAX_ENTRY_BYTES + (1 << 20)))
    with pytest.raises(DataError, match="more than the 64 MiB"):
        load_data(archive, cache_dir=tmp_path / "c3", log=lambda s: None)
