"""Untrusted files given to ferkit: each is refused with one line on stderr and exit 2, runs nothing,
and writes nothing."""
from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

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


# ---------------------------------------------------------------- the table of bad inputs
# Each case: (id, setup(tmp) -> argv). Run in-process in a fresh folder with a tiny valid dataset
# at data/ and a finished run at runs/done/; the case must exit 2 with one line on stderr, no
# traceback, and leave the folder exactly as it was.

def _file(tmp: Path, name: str, content: str | bytes) -> str:
    path = tmp / name
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(content if isinstance(content, bytes) else content.encode())
    return str(path)


def _ckpt(tmp: Path, name: str, obj) -> str:
    torch.save(obj, tmp / name)
    return str(tmp / name)


def _symlink_loop(tmp: Path) -> str:
    (tmp / "loop").symlink_to(tmp / "loop")
    return str(tmp / "loop")


def _empty_dir(tmp: Path, name: str) -> str:
    (tmp / name).mkdir()
    return str(tmp / name)


def _no_val(tmp: Path) -> str:
    import shutil
    shutil.copytree(tmp / "data", tmp / "noval")
    shutil.rmtree(tmp / "noval" / "val")
    return str(tmp / "noval")


TRAIN = ["train", "--data_root", "data", "--epochs", "1", "--batch_size", "8"]
SWEEP_OK = 'seeds = [1]\n[base]\ndata_root = "data"\nepochs = 1\n[strategies.E0]\n'

CASES = [
    # prepare
    ("prepare: no such source", lambda t: ["prepare", "missing.zip", "--out", "store"]),
    ("prepare: empty folder", lambda t: ["prepare", _empty_dir(t, "empty"), "--out", "store"]),
    ("prepare: no val/ folder", lambda t: ["prepare", _no_val(t), "--out", "store"]),
    ("prepare: a .zip that is not a zip", lambda t: ["prepare", _file(t, "junk.zip", b"PK not really"), "--out", "store"]),
    ("prepare: malformed csv", lambda t: ["prepare", _file(t, "fer2013.csv", "emotion,pixels,Usage\n0,1 2 3,Training\n"), "--out", "store"]),
    ("prepare: symlink loop", lambda t: ["prepare", _symlink_loop(t), "--out", "store"]),
    ("prepare: --out is a file", lambda t: ["prepare", "data", "--out", _file(t, "afile", "x")]),
    # train: flags
    ("train: no --data_root", lambda t: ["train", "--epochs", "1"]),
    ("train: --lr nan", lambda t: TRAIN + ["--lr", "nan"]),
    ("train: --lr inf", lambda t: TRAIN + ["--lr", "inf"]),
    ("train: --lr -1", lambda t: TRAIN + ["--lr", "-1"]),
    ("train: --epochs -1", lambda t: TRAIN[:3] + ["--epochs", "-1"]),
    ("train: --batch_size 0", lambda t: TRAIN[:5] + ["--batch_size", "0"]),
    ("train: --weight_decay nan", lambda t: TRAIN + ["--weight_decay", "nan"]),
    ("train: --device tpu", lambda t: TRAIN + ["--device", "tpu"]),
    ("train: --device cuda without CUDA", lambda t: TRAIN + ["--device", "cuda" if not torch.cuda.is_available() else "cuda:99"]),
    ("train: --exp ../x", lambda t: TRAIN + ["--exp", "../x"]),
    ("train: --exp a/b", lambda t: TRAIN + ["--exp", "a/b"]),
    ("train: --exp /abs", lambda t: TRAIN + ["--exp", str(t / "abs")]),
    ("train: unknown --loss", lambda t: TRAIN + ["--loss", "nope"]),
    ("train: unknown --arch", lambda t: TRAIN + ["--arch", "vit"]),
    ("train: wce without weights", lambda t: TRAIN + ["--loss", "wce"]),
    ("train: --small_size 8", lambda t: TRAIN + ["--arch", "fer-resnet", "--small_epochs", "1", "--small_size", "8"]),
    ("train: --runs_dir is a file", lambda t: TRAIN + ["--runs_dir", _file(t, "runsfile", "x")]),
    ("train: a finished run of the same name", lambda t: TRAIN + ["--exp", "done"]),
    ("train: --resume missing", lambda t: TRAIN + ["--resume", "nope/last.pt"]),
    ("train: --resume a best.pt", lambda t: TRAIN + ["--resume", "runs/done/best.pt"]),
    ("train: data root does not exist", lambda t: ["train", "--data_root", "nowhere", "--epochs", "1"]),
    # train: config files
    ("config: missing file", lambda t: TRAIN + ["--config", "none.toml"]),
    ("config: wrong suffix", lambda t: TRAIN + ["--config", _file(t, "c.ini", "epochs = 1")]),
    ("config: malformed TOML", lambda t: TRAIN + ["--config", _file(t, "c.toml", "epochs = = 1")]),
    ("config: malformed YAML", lambda t: TRAIN + ["--config", _file(t, "c.yaml", "epochs: [1\n")]),
    ("config: malformed JSON", lambda t: TRAIN + ["--config", _file(t, "c.json", "{epochs: 1")]),
    ("config: not a table", lambda t: TRAIN + ["--config", _file(t, "c.json", "[1, 2]")]),
    ("config: epochs = 'three'", lambda t: ["train", "--data_root", "data", "--config", _file(t, "c.toml", 'epochs = "three"')]),
    ("config: lr = 'fast'", lambda t: TRAIN + ["--config", _file(t, "c.toml", 'lr = "fast"')]),
    ("config: epochs = 1.5", lambda t: ["train", "--data_root", "data", "--config", _file(t, "c.toml", "epochs = 1.5")]),
    ("config: amp = 'no'", lambda t: TRAIN + ["--config", _file(t, "c.toml", 'amp = "no"')]),
    ("config: unknown field", lambda t: TRAIN + ["--config", _file(t, "c.toml", "epoch = 3")]),
    # eval and checkpoints
    ("eval: no such checkpoint", lambda t: ["eval", "nope.pt", "--data_root", "data"]),
    ("eval: junk bytes", lambda t: ["eval", _file(t, "junk.pt", b"not a checkpoint"), "--data_root", "data"]),
    ("eval: a list, not a dict", lambda t: ["eval", _ckpt(t, "list.pt", [1, 2]), "--data_root", "data"]),
    ("eval: ferkit dict missing keys", lambda t: ["eval", _ckpt(t, "partial.pt", {"format": "ferkit", "arch": "seed-cnn"}), "--data_root", "data"]),
    ("eval: unknown dict", lambda t: ["eval", _ckpt(t, "other.pt", {"weights": torch.zeros(2)}), "--data_root", "data"]),
    ("eval: weights of another arch", lambda t: ["eval", _ckpt(t, "wrong.pt", dict(torch.load(SHIPPED, weights_only=True), arch="seed-cnn")), "--data_root", "data"]),
    ("eval: --device tpu", lambda t: ["eval", "runs/done/best.pt", "--device", "tpu"]),
    ("eval: into a training run's folder", lambda t: ["eval", "runs/done/best.pt", "--out", "runs/done"]),
    # predict
    ("predict: an empty folder", lambda t: ["predict", _empty_dir(t, "photos"), "--no-detect", "--ckpt", "runs/done/best.pt"]),
    ("predict: --every 0", lambda t: ["predict", "data", "--every", "0", "--ckpt", "runs/done/best.pt"]),
    ("predict: --ckpt missing", lambda t: ["predict", "data", "--ckpt", "nope.pt"]),
    # sweep
    ("sweep: missing file", lambda t: ["sweep", "none.toml"]),
    ("sweep: malformed", lambda t: ["sweep", _file(t, "s.toml", "seeds = [1\n")]),
    ("sweep: unknown field", lambda t: ["sweep", _file(t, "s.toml", SWEEP_OK + "lossy = 1\n")]),
    ("sweep: epochs = 'x'", lambda t: ["sweep", _file(t, "s.toml", SWEEP_OK.replace("epochs = 1", 'epochs = "x"'))]),
    # other commands
    ("posthoc: no such checkpoint", lambda t: ["posthoc", "nope.pt", "--method", "la", "--out", "la.pt"]),
    ("pack: no such checkpoint", lambda t: ["pack", "nope.pt", "--out", "m.pt"]),
    ("summary: no runs", lambda t: ["summary", "nowhere", "--out", "sum"]),
]


@pytest.fixture(scope="module")
def workspace(tmp_path_factory) -> Path:
    """A tiny valid dataset and one finished run, made once and copied for each case."""
    from ferkit.cli import main
    from synth import make_image_folders

    root = tmp_path_factory.mktemp("ws")
    make_image_folders(root / "data", {s: {c: 2 for c in ["angry", "disgust", "fear", "happy", "neutral", "sad",
                                                           "surprise"]} for s in ("train", "val", "test")})
    assert main(["train", "--data_root", str(root / "data"), "--epochs", "1", "--batch_size", "8", "--exp", "done",
                 "--runs_dir", str(root / "runs")]) == 0
    return root


@pytest.mark.parametrize("name, setup", CASES, ids=[c[0] for c in CASES])
def test_bad_input_gets_one_line_exit_2_and_leaves_nothing(name, setup, workspace, tmp_path, monkeypatch, capsys):
    import shutil

    from ferkit.cli import main

    for item in ("data", "runs"):
        shutil.copytree(workspace / item, tmp_path / item, symlinks=True)
    monkeypatch.chdir(tmp_path)
    argv = setup(tmp_path)
    before = {p: p.stat().st_mtime_ns for p in tmp_path.rglob("*") if not p.is_symlink()}
    capsys.readouterr()
    code = main(argv)
    err = capsys.readouterr().err
    lines = [line for line in err.splitlines() if line.strip()]
    assert code == 2, (code, err)
    assert len(lines) == 1 and "Traceback" not in err, err
    assert lines[0].startswith(f"ferkit {argv[0]}"), err
    after = {p: p.stat().st_mtime_ns for p in tmp_path.rglob("*") if not p.is_symlink()}
    assert after == before, f"files changed: {sorted(set(after) ^ set(before)) or 'modified'}"


def test_the_table_covers_every_command_and_at_least_40_cases():
    assert len(CASES) >= 40
    assert {c[0].split(":")[0] for c in CASES} >= {"prepare", "train", "config", "eval", "predict", "sweep"}


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

    from ferkit.data import load_data
    from ferkit.infer.io import decode_image
    from synth import make_image_folders

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

    from ferkit.data import DataError, load_data
    from ferkit.data.archives import MAX_ENTRY_BYTES
    from synth import make_image_folders, zip_folder

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
