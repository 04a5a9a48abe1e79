"""The table of bad inputs that tests/test_bad_inputs.py runs (and the workspace it runs them in).

Each CLI case is (id, setup): `setup(folder) -> argv`, run by `ferkit.cli.main` in a copy of the
workspace; the id starts with the subcommand. Each must exit 2 with one line on stderr, change no
input and leave no output. API cases call the Python API and must raise the listed error (one
line); HTTP cases send a request to `ferkit serve`'s app and must get the listed status.
"""
from __future__ import annotations

import os
import shutil
import socket
import zipfile
from collections.abc import Callable
from functools import partial
from pathlib import Path

import torch
from synth import CLASSES, make_image_folders

ROOT = Path(__file__).resolve().parents[1]
SHIPPED = ROOT / "pretrained" / "ferkit-recommended.pt"


def build_workspace(root: Path) -> Path:
    """data/ (2 images per class and split), runs/done/ (a finished 1-epoch run), photo.png, and
    broken models: bad.onnx (random bytes), nan.pt (NaN weights); crc.zip (a member with a wrong CRC)."""
    from ferkit.cli import main

    make_image_folders(root / "data", {s: {c: 2 for c in CLASSES} for s in ("train", "val", "test")})
    assert main(["train", "--data_root", str(root / "data"), "--epochs", "1", "--batch_size", "8", "--exp", "done",
                 "--runs_dir", str(root / "runs"), "--arch", "seed-cnn-half"]) == 0
    shutil.copy(root / "data" / "train" / "happy" / "Training_happy_0.png", root / "photo.png")
    (root / "bad.onnx").write_bytes(os.urandom(300))
    ckpt = torch.load(root / "runs" / "done" / "best.pt", weights_only=True)
    ckpt["model"] = {k: v * float("nan") if v.is_floating_point() else v for k, v in ckpt["model"].items()}
    torch.save(ckpt, root / "nan.pt")
    crc_zip(root / "data", root / "crc.zip")
    return root


def crc_zip(folder: Path, path: Path) -> Path:
    """A zip of `folder` whose first image's stored bytes are flipped: reading it fails its CRC-32."""
    with zipfile.ZipFile(path, "w") as z:  # stored, so the flipped byte is the image's own
        for f in sorted(folder.rglob("*.png")):
            z.write(f, f.relative_to(folder).as_posix())
    data = bytearray(path.read_bytes())
    with zipfile.ZipFile(path) as z:
        info = z.infolist()[0]
    data[info.header_offset + 30 + len(info.filename.encode()) + len(info.extra) + 20] ^= 0xFF
    path.write_bytes(bytes(data))
    return path


# ---------------------------------------------------------------- setup helpers (each returns a path)

def file(tmp: Path, name: str, content: str | bytes = "x") -> str:
    path = tmp / name
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(content if isinstance(content, bytes) else content.encode())
    return str(path)


def ckpt(tmp: Path, name: str, obj) -> str:
    torch.save(obj, tmp / name)
    return str(tmp / name)


def empty_dir(tmp: Path, name: str) -> str:
    (tmp / name).mkdir(parents=True)
    return str(tmp / name)


def symlink(tmp: Path, target: str, name: str) -> str:
    (tmp / name).symlink_to(tmp / target)
    return name


def hardlink(tmp: Path, target: str, name: str) -> str:
    os.link(tmp / target, tmp / name)
    return name


def copy(tmp: Path, source: str, name: str) -> str:
    (shutil.copytree if (tmp / source).is_dir() else shutil.copy)(tmp / source, tmp / name)
    return name


def fifo(tmp: Path, name: str) -> str:
    """A FIFO: reading it blocks until someone writes to it (nobody will)."""
    (tmp / name).parent.mkdir(parents=True, exist_ok=True)
    os.mkfifo(tmp / name)
    return name


def fifo_in_tree(tmp: Path) -> str:
    copy(tmp, "data", "withfifo")
    fifo(tmp, "withfifo/train/angry/pipe.png")
    return "withfifo"


def no_val(tmp: Path) -> str:
    copy(tmp, "data", "noval")
    shutil.rmtree(tmp / "noval" / "val")
    return "noval"


def symlink_loop(tmp: Path) -> str:
    (tmp / "loop").symlink_to(tmp / "loop")
    return "loop"


LISTENING: list[socket.socket] = []  # kept open until the session ends


def busy_port() -> str:
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    s.listen()
    LISTENING.append(s)
    return str(s.getsockname()[1])


TRAIN = ["train", "--data_root", "data", "--epochs", "1", "--batch_size", "8"]
SWEEP = 'seeds = [1]\n[base]\ndata_root = "data"\nepochs = 1\n[strategies.E0]\n'
TUNE = 'trials = 1\nout = "tuned"\n[base]\ndata_root = "data"\nepochs = 1\n[search]\nlr = {low = 1e-4, high = 1e-3}\n'
PHOTO = ["predict", "photo.png", "--no-detect"]
BEST = "runs/done/best.pt"
SERVE = ["serve", "--port", "0"]

Case = tuple[str, Callable[[Path], list[str]]]
CASES: list[Case] = [
    # prepare
    ("prepare: no such source", lambda t: ["prepare", "missing.zip", "--out", "store"]),
    ("prepare: empty folder", lambda t: ["prepare", empty_dir(t, "empty"), "--out", "store"]),
    ("prepare: no val/ folder", lambda t: ["prepare", no_val(t), "--out", "store"]),
    ("prepare: a .zip that is not a zip", lambda t: ["prepare", file(t, "junk.zip", b"PK not really"), "--out", "store"]),
    ("prepare: malformed csv", lambda t: ["prepare", file(t, "fer2013.csv", "emotion,pixels,Usage\n0,1 2 3,Training\n"), "--out", "store"]),
    ("prepare: symlink loop", lambda t: ["prepare", symlink_loop(t), "--out", "store"]),
    ("prepare: --out is a file", lambda t: ["prepare", "data", "--out", file(t, "afile")]),
    ("prepare: --out is the source (the store would shadow the images)", lambda t: ["prepare", "data", "--out", "data"]),
    ("prepare: --out inside the source", lambda t: ["prepare", "data", "--out", "data/store"]),
    ("prepare: --out under a file", lambda t: ["prepare", "data", "--out", "photo.png/store"]),
    ("prepare: --out already holds a store", lambda t: ["prepare", "data", "--out", file(t, "st/ferkit_store.npz") and "st"]),
    ("prepare: unicode and spaces, --out is the source", lambda t: ["prepare", copy(t, "data", "dätä set"), "--out", "dätä set"]),
    ("prepare: a FIFO among the images (no hang)", lambda t: ["prepare", fifo_in_tree(t), "--out", "store"]),
    ("prepare: the source is a FIFO (no hang)", lambda t: ["prepare", fifo(t, "pipe.zip"), "--out", "store"]),
    ("prepare: a FIFO named fer2013.csv (no hang)", lambda t: ["prepare", fifo(t, "csvdir/fer2013.csv") and "csvdir", "--out", "store"]),
    ("prepare: a zip member with a bad CRC", lambda t: ["prepare", "crc.zip", "--out", "store"]),
    # train: flags
    ("train: no --data_root", lambda t: ["train", "--epochs", "1"]),
    ("train: --lr nan", lambda t: TRAIN + ["--lr", "nan"]),
    ("train: --lr inf", lambda t: TRAIN + ["--lr", "inf"]),
    ("train: --lr -1", lambda t: TRAIN + ["--lr", "-1"]),
    ("train: --epochs -1", lambda t: TRAIN[:3] + ["--epochs", "-1"]),
    ("train: --epochs abc", lambda t: TRAIN[:3] + ["--epochs", "abc"]),
    ("train: --batch_size 0", lambda t: TRAIN[:5] + ["--batch_size", "0"]),
    ("train: --weight_decay nan", lambda t: TRAIN + ["--weight_decay", "nan"]),
    ("train: --label_smoothing 1.5 (crashed mid-run)", lambda t: TRAIN + ["--label_smoothing", "1.5"]),
    ("train: --beta 2", lambda t: TRAIN + ["--beta", "2"]),
    ("train: --gamma -1", lambda t: TRAIN + ["--gamma", "-1"]),
    ("train: --mixup -1", lambda t: TRAIN + ["--mixup", "-1"]),
    ("train: --cutmix -1", lambda t: TRAIN + ["--cutmix", "-1"]),
    ("train: --clip_norm 0", lambda t: TRAIN + ["--clip_norm", "0"]),
    ("train: --erase_p 2", lambda t: TRAIN + ["--erase_p", "2"]),
    ("train: --nproc 0", lambda t: TRAIN + ["--nproc", "0"]),
    ("train: --device tpu", lambda t: TRAIN + ["--device", "tpu"]),
    ("train: --device cuda without CUDA", lambda t: TRAIN + ["--device", "cuda" if not torch.cuda.is_available() else "cuda:99"]),
    ("train: --exp ../x", lambda t: TRAIN + ["--exp", "../x"]),
    ("train: --exp a/b", lambda t: TRAIN + ["--exp", "a/b"]),
    ("train: --exp /abs", lambda t: TRAIN + ["--exp", str(t / "abs")]),
    ("train: unknown --loss", lambda t: TRAIN + ["--loss", "nope"]),
    ("train: unknown --arch", lambda t: TRAIN + ["--arch", "vit"]),
    ("train: wce without weights", lambda t: TRAIN + ["--loss", "wce"]),
    ("train: --small_size 8", lambda t: TRAIN + ["--arch", "fer-resnet", "--small_epochs", "1", "--small_size", "8"]),
    ("train: --runs_dir is a file", lambda t: TRAIN + ["--runs_dir", file(t, "runsfile")]),
    ("train: --runs_dir inside the data", lambda t: TRAIN + ["--runs_dir", "data/runs"]),
    ("train: a finished run of the same name", lambda t: TRAIN + ["--exp", "done"]),
    ("train: --resume missing", lambda t: TRAIN + ["--resume", "nope/last.pt"]),
    ("train: --resume a best.pt", lambda t: TRAIN + ["--resume", BEST]),
    ("train: --resume with --epochs and --arch (they were ignored)", lambda t: [
        "train", "--data_root", "data", "--exp", "done", "--resume", "runs/done/last.pt", "--epochs", "2", "--arch", "fer-resnet"]),
    ("train: --resume with another lr in --config", lambda t: [
        "train", "--resume", "runs/done/last.pt", "--config", file(t, "c.toml", "lr = 0.5")]),
    ("train: data root does not exist", lambda t: ["train", "--data_root", "nowhere", "--epochs", "1"]),
    ("train: data root is a FIFO (no hang)", lambda t: ["train", "--data_root", fifo(t, "pipe"), "--epochs", "1"]),
    # train: config files
    ("train: config missing file", lambda t: TRAIN + ["--config", "none.toml"]),
    ("train: config is a FIFO (no hang)", lambda t: TRAIN + ["--config", fifo(t, "c.toml")]),
    ("train: config wrong suffix", lambda t: TRAIN + ["--config", file(t, "c.ini", "epochs = 1")]),
    ("train: config malformed TOML", lambda t: TRAIN + ["--config", file(t, "c.toml", "epochs = = 1")]),
    ("train: config malformed YAML", lambda t: TRAIN + ["--config", file(t, "c.yaml", "epochs: [1\n")]),
    ("train: config malformed JSON", lambda t: TRAIN + ["--config", file(t, "c.json", "{epochs: 1")]),
    ("train: config not a table", lambda t: TRAIN + ["--config", file(t, "c.json", "[1, 2]")]),
    ("train: config epochs = 'three'", lambda t: ["train", "--data_root", "data", "--config", file(t, "c.toml", 'epochs = "three"')]),
    ("train: config lr = 'fast'", lambda t: TRAIN + ["--config", file(t, "c.toml", 'lr = "fast"')]),
    ("train: config epochs = 1.5", lambda t: ["train", "--data_root", "data", "--config", file(t, "c.toml", "epochs = 1.5")]),
    ("train: config amp = 'no'", lambda t: TRAIN + ["--config", file(t, "c.toml", 'amp = "no"')]),
    ("train: config unknown field", lambda t: TRAIN + ["--config", file(t, "c.toml", "epoch = 3")]),
    ("train: config label_smoothing = 1.5", lambda t: ["train", "--data_root", "data", "--config", file(t, "c.toml", "label_smoothing = 1.5")]),
    # eval and checkpoints
    ("eval: no such checkpoint", lambda t: ["eval", "nope.pt", "--data_root", "data"]),
    ("eval: junk bytes", lambda t: ["eval", file(t, "junk.pt", b"not a checkpoint"), "--data_root", "data"]),
    ("eval: a list, not a dict", lambda t: ["eval", ckpt(t, "list.pt", [1, 2]), "--data_root", "data"]),
    ("eval: ferkit dict missing keys", lambda t: ["eval", ckpt(t, "partial.pt", {"format": "ferkit", "arch": "seed-cnn"}), "--data_root", "data"]),
    ("eval: unknown dict", lambda t: ["eval", ckpt(t, "other.pt", {"weights": torch.zeros(2)}), "--data_root", "data"]),
    ("eval: weights of another arch", lambda t: ["eval", ckpt(t, "wrong.pt", dict(torch.load(SHIPPED, weights_only=True), arch="seed-cnn")), "--data_root", "data"]),
    ("eval: the checkpoint is a FIFO (no hang)", lambda t: ["eval", fifo(t, "pipe.pt"), "--data_root", "data"]),
    ("eval: NaN weights", lambda t: ["eval", "nan.pt", "--data_root", "data", "--out", "ev"]),
    ("eval: --device tpu", lambda t: ["eval", BEST, "--device", "tpu"]),
    ("eval: --split bogus", lambda t: ["eval", BEST, "--split", "bogus"]),
    ("eval: into a training run's folder", lambda t: ["eval", BEST, "--out", "runs/done"]),
    ("eval: --out is a file", lambda t: ["eval", BEST, "--out", file(t, "evfile")]),
    ("eval: --out is the data", lambda t: ["eval", BEST, "--data_root", "data", "--out", "data"]),
    ("eval: --out holds an earlier evaluation", lambda t: ["eval", BEST, "--out", file(t, "ev/metrics.json", "{}") and "ev"]),
    # predict
    ("predict: an empty folder", lambda t: ["predict", empty_dir(t, "photos"), "--no-detect", "--ckpt", BEST]),
    ("predict: --every 0", lambda t: ["predict", "data", "--every", "0", "--ckpt", BEST]),
    ("predict: --ckpt missing", lambda t: ["predict", "data", "--ckpt", "nope.pt"]),
    ("predict: --out is the input photo (it became a JSON row)", lambda t: PHOTO + ["--out", "photo.png"]),
    ("predict: --annotate is the input's own folder (the photo was overwritten)", lambda t: ["predict", "photo.png", "--annotate", "."]),
    ("predict: --out is a symbolic link to the input", lambda t: PHOTO + ["--out", symlink(t, "photo.png", "link.jsonl")]),
    ("predict: --out is a hard link of the input", lambda t: PHOTO + ["--out", hardlink(t, "photo.png", "hard.jsonl")]),
    ("predict: --out is the input through another path", lambda t: PHOTO + ["--out", "runs/../photo.png"]),
    ("predict: --out inside an input folder", lambda t: ["predict", "data", "--no-detect", "--out", "data/p.jsonl"]),
    ("predict: --out exists", lambda t: PHOTO + ["--out", file(t, "old.jsonl", "{}\n")]),
    ("predict: --out is a folder", lambda t: PHOTO + ["--out", empty_dir(t, "outdir")]),
    ("predict: --out under a file", lambda t: PHOTO + ["--out", "photo.png/p.jsonl"]),
    ("predict: --annotate is a file", lambda t: PHOTO + ["--annotate", file(t, "annfile")]),
    ("predict: --annotate holds an earlier copy", lambda t: PHOTO + ["--annotate", file(t, "ann/photo.png") and "ann"]),
    ("predict: --annotate inside an input folder", lambda t: ["predict", "data", "--annotate", "data/ann"]),
    ("predict: unicode and spaces, --out is the input", lambda t: ["predict", copy(t, "photo.png", "fötö bild.png"), "--out", "fötö bild.png"]),
    ("predict: --threads -1", lambda t: PHOTO + ["--threads", "-1"]),
    ("predict: --threads 0", lambda t: PHOTO + ["--threads", "0"]),
    ("predict: --max-pixels 0", lambda t: PHOTO + ["--max-pixels", "0"]),
    ("predict: --score-threshold 2", lambda t: PHOTO + ["--score-threshold", "2"]),
    ("predict: --margin -0.1", lambda t: PHOTO + ["--margin", "-0.1"]),
    ("predict: --min-face 0", lambda t: PHOTO + ["--min-face", "0"]),
    ("predict: --scale-factor 1", lambda t: PHOTO + ["--scale-factor", "1"]),
    ("predict: --scale-factor with the yunet detector", lambda t: PHOTO + ["--scale-factor", "1.1"]),
    ("predict: --smooth 0", lambda t: PHOTO + ["--smooth", "0"]),
    ("predict: --format xml", lambda t: PHOTO + ["--format", "xml"]),
    ("predict: a corrupt .onnx", lambda t: PHOTO + ["--ckpt", "bad.onnx"]),
    ("predict: NaN weights (rows said score NaN)", lambda t: PHOTO + ["--ckpt", "nan.pt", "--out", "p.jsonl"]),
    ("predict: the checkpoint is a FIFO (no hang)", lambda t: PHOTO + ["--ckpt", fifo(t, "pipe.pt")]),
    # export
    ("export: --out is the checkpoint (it was replaced)", lambda t: ["export", BEST, "--out", BEST]),
    ("export: --out is a link to the checkpoint", lambda t: ["export", BEST, "--out", symlink(t, BEST, "link.onnx")]),
    ("export: --out exists", lambda t: ["export", BEST, "--out", file(t, "m.onnx", b"old")]),
    ("export: --out is a folder", lambda t: ["export", BEST, "--out", empty_dir(t, "m.onnx")]),
    ("export: --out under a file", lambda t: ["export", BEST, "--out", "photo.png/m.onnx"]),
    ("export: --out is not .onnx", lambda t: ["export", BEST, "--out", "m.pt"]),
    ("export: --opset 3", lambda t: ["export", BEST, "--out", "m.onnx", "--opset", "3"]),
    ("export: --int8 --calib 0", lambda t: ["export", BEST, "--int8", "--calib", "0"]),
    ("export: NaN weights", lambda t: ["export", "nan.pt", "--out", "m.onnx"]),
    # posthoc
    ("posthoc: no such checkpoint", lambda t: ["posthoc", "nope.pt", "--method", "la", "--out", "la.pt"]),
    ("posthoc: --out is the checkpoint (it was overwritten)", lambda t: ["posthoc", BEST, "--method", "la", "--out", BEST]),
    ("posthoc: --crt_epochs -1 (crashed mid-run)", lambda t: ["posthoc", BEST, "--method", "crt", "--crt_epochs", "-1", "--out", "c.pt"]),
    ("posthoc: --out exists", lambda t: ["posthoc", BEST, "--method", "la", "--out", file(t, "la.pt")]),
    ("posthoc: --out is a folder", lambda t: ["posthoc", BEST, "--method", "la", "--out", empty_dir(t, "la")]),
    ("posthoc: --out inside the data", lambda t: ["posthoc", BEST, "--method", "la", "--data_root", "data", "--out", "data/la.pt"]),
    ("posthoc: unknown --method", lambda t: ["posthoc", BEST, "--method", "nope", "--out", "x.pt"]),
    # pack
    ("pack: no such checkpoint", lambda t: ["pack", "nope.pt", "--out", "m.pt"]),
    ("pack: --out is the checkpoint (float32 became float16)", lambda t: ["pack", BEST, "--out", BEST]),
    ("pack: --out is a hard link of the checkpoint", lambda t: ["pack", BEST, "--out", hardlink(t, BEST, "m.pt")]),
    ("pack: --out exists", lambda t: ["pack", BEST, "--out", file(t, "m.pt")]),
    ("pack: its card would replace a file", lambda t: ["pack", BEST, "--out", file(t, "m.md") and "m.pt"]),
    ("pack: --out is a folder", lambda t: ["pack", BEST, "--out", empty_dir(t, "m.pt")]),
    # summary, figures, report
    ("summary: no runs", lambda t: ["summary", "nowhere", "--out", "sum"]),
    ("summary: --out is a run folder it reads (it wrote into it)", lambda t: ["summary", "runs/done", "--out", "runs/done"]),
    ("summary: --out inside a run folder it reads", lambda t: ["summary", "runs/done", "--out", "runs/done/sum"]),
    ("summary: --out is another run's folder", lambda t: ["summary", "runs/done", "--out", file(t, "runs2/x/metrics.json") and "runs2/x"]),
    ("summary: --out is a file", lambda t: ["summary", "runs/done", "--out", file(t, "sumfile")]),
    ("summary: --out holds an earlier summary", lambda t: ["summary", "runs/done", "--out", file(t, "sum/summary.csv") and "sum"]),
    ("summary: --n-boot 0", lambda t: ["summary", "runs/done", "--out", "sum", "--n-boot", "0"]),
    ("figures: one run", lambda t: ["figures", "runs/done", "--out", "figs"]),
    ("figures: --out is a run folder it reads", lambda t: ["figures", "runs/done", copy(t, "runs/done", "runs/two"), "--out", "runs/two"]),
    # sweep and tune
    ("sweep: missing file", lambda t: ["sweep", "none.toml"]),
    ("sweep: malformed", lambda t: ["sweep", file(t, "s.toml", "seeds = [1\n")]),
    ("sweep: unknown field", lambda t: ["sweep", file(t, "s.toml", SWEEP + "lossy = 1\n")]),
    ("sweep: epochs = 'x'", lambda t: ["sweep", file(t, "s.toml", SWEEP.replace("epochs = 1", 'epochs = "x"'))]),
    ("sweep: --jobs -3 (it waited forever)", lambda t: ["sweep", file(t, "s.toml", SWEEP), "--jobs", "-3"]),
    ("sweep: --jobs 0 (ZeroDivisionError)", lambda t: ["sweep", file(t, "s.toml", SWEEP), "--jobs", "0"]),
    ("sweep: a strategy's lr = -1 names the strategy and the key", lambda t: ["sweep", file(t, "s.toml", SWEEP + "lr = -1\n")]),
    ("sweep: label_smoothing = 1.5 in [base]", lambda t: ["sweep", file(t, "s.toml", SWEEP.replace("epochs = 1", "epochs = 1\nlabel_smoothing = 1.5"))]),
    ("sweep: its run folders inside the data", lambda t: ["sweep", file(t, "s.toml", SWEEP.replace("epochs = 1", 'epochs = 1\nruns_dir = "data/runs"'))]),
    ("sweep: --cpus-per-run 0", lambda t: ["sweep", file(t, "s.toml", SWEEP), "--backend", "ray", "--cpus-per-run", "0"]),
    ("tune: missing file", lambda t: ["tune", "none.toml"]),
    ("tune: trials = 0", lambda t: ["tune", file(t, "t.toml", TUNE.replace("trials = 1", "trials = 0"))]),
    ("tune: out inside the data", lambda t: ["tune", file(t, "t.toml", TUNE.replace('"tuned"', '"data/tuned"'))]),
    ("tune: [search] of an unknown field", lambda t: ["tune", file(t, "t.toml", TUNE.replace("lr = {", "lrr = {"))]),
    # quickstart, serve, teacher-logits, models
    ("quickstart: --epochs -1", lambda t: ["quickstart", "data", "--epochs", "-1"]),
    ("quickstart: no such data", lambda t: ["quickstart", "nowhere"]),
    ("quickstart: --runs_dir inside the data", lambda t: ["quickstart", "data", "--runs_dir", "data/runs"]),
    ("quickstart: the data is a FIFO (no hang)", lambda t: ["quickstart", fifo(t, "pipe.zip")]),
    ("serve: --port -1 (three tracebacks)", lambda t: ["serve", "--port", "-1"]),
    ("serve: --port 70000", lambda t: ["serve", "--port", "70000"]),
    ("serve: --max-bytes -1", lambda t: SERVE + ["--max-bytes", "-1"]),
    ("serve: --max-pixels 0", lambda t: SERVE + ["--max-pixels", "0"]),
    ("serve: --threads -1", lambda t: SERVE + ["--threads", "-1"]),
    ("serve: --align with the haar detector", lambda t: SERVE + ["--detector", "haar", "--align"]),
    ("serve: a corrupt .onnx", lambda t: SERVE + ["--ckpt", "bad.onnx"]),
    ("serve: NaN weights", lambda t: SERVE + ["--ckpt", "nan.pt"]),
    ("serve: --ckpt missing", lambda t: SERVE + ["--ckpt", "nope.pt"]),
    ("serve: the port is in use", lambda t: ["serve", "--port", busy_port(), "--ckpt", BEST]),
    ("teacher-logits: --out is a link to the teacher", lambda t: ["teacher-logits", BEST, "--data_root", "data", "--out", hardlink(t, BEST, "t.npz")]),
    ("teacher-logits: --out exists", lambda t: ["teacher-logits", BEST, "--data_root", "data", "--out", file(t, "t.npz")]),
    ("models: an unknown flag", lambda t: ["models", "--bogus"]),
]


# What the one line must say, for the examples (by the start of the case's id): both paths, the
# flag, the strategy and the key.
SAYS: dict[str, tuple[str, ...]] = {
    "prepare: --out is the source": ("--out data", "the input data"),
    "prepare: a FIFO among": ("pipe.png", "FIFO", "--skip-bad"),
    "prepare: a zip member": ("crc.zip", "CRC-32", "--skip-bad"),
    "predict: --out is the input photo": ("--out photo.png", "the input photo.png"),
    "predict: --annotate is the input's own": ("--annotate .", "the input photo.png"),
    "predict: NaN weights": ("nan.pt", "NaN"),
    "predict: a corrupt .onnx": ("bad.onnx", "not a valid ONNX model"),
    "predict: --scale-factor with the yunet": ("--scale-factor is a haar setting, not yunet's",),
    "serve: --align with the haar": ("--align is a yunet setting, not haar's",),
    "export: --out is the checkpoint": ("--out runs/done/best.pt", "the input runs/done/best.pt"),
    "posthoc: --out is the checkpoint": ("--out runs/done/best.pt", "the input runs/done/best.pt"),
    "pack: --out is the checkpoint": ("--out runs/done/best.pt", "the input runs/done/best.pt"),
    "summary: --out is a run folder it reads": ("--out runs/done", "the input runs/done"),
    "train: --resume with --epochs": ("--arch fer-resnet", "--epochs 2", "runs/done/last.pt"),
    "train: --label_smoothing": ("label_smoothing", "[0, 1)"),
    "sweep: --jobs -3": ("--jobs", ">= 1"),
    "sweep: a strategy's lr": ("[strategies.E0]", "lr must be > 0"),
    "serve: --port -1": ("--port", "[0, 65535]"),
    "posthoc: --crt_epochs": ("--crt_epochs", ">= 1"),
}


# ---------------------------------------------------------------- the Python API

def api(where: str, *args, **kwargs) -> Callable[[], object]:
    """The call `module.function(*args, **kwargs)` (where = "module:function"), imported when made."""
    module, name = where.split(":")

    def call():
        import importlib
        return getattr(importlib.import_module(module), name)(*args, **kwargs)
    return call


def quiet(line: str) -> None:
    """A `log` that prints nothing."""


def _errors(*names: str) -> tuple[type[Exception], ...]:
    import importlib
    where = {"ModelError": "ferkit.infer.onnx", "OutputError": "ferkit.runtime.paths", "DataError": "ferkit.data",
             "ConfigError": "ferkit.config", "CheckpointError": "ferkit.models", "ImageReadError": "ferkit.infer.io"}
    return tuple(getattr(importlib.import_module(where[n]), n) for n in names)


ApiCase = tuple[str, Callable[[Path], Callable[[], object]], tuple[str, ...]]  # setup(folder) -> the call
API_CASES: list[ApiCase] = [
    ("api: Predictor(a corrupt .onnx)", lambda t: api("ferkit.infer:Predictor", "bad.onnx"), ("ModelError",)),
    ("api: Predictor(NaN weights)", lambda t: api("ferkit.infer:Predictor", "nan.pt", bf16=False), ("ModelError",)),
    ("api: Predictor(threads=0)", lambda t: api("ferkit.infer:Predictor", BEST, threads=0), ("ConfigError",)),
    ("api: Predictor(batch_size=0)", lambda t: api("ferkit.infer:Predictor", BEST, batch_size=0), ("ConfigError",)),
    ("api: Predictor(a missing checkpoint)", lambda t: api("ferkit.infer:Predictor", "nope.pt"), ("CheckpointError",)),
    ("api: Predictor.predict(a FIFO) (no hang)", lambda t: partial(api("ferkit.infer:Predictor", BEST, detect=False)().predict,
                                                                   fifo(t, "pipe.png")), ("ImageReadError",)),
    ("api: load_data(a folder with a FIFO) (no hang)", lambda t: api("ferkit.data:load_data", fifo_in_tree(t), log=quiet), ("DataError",)),
    ("api: load_data(a FIFO) (no hang)", lambda t: api("ferkit.data:load_data", fifo(t, "pipe"), log=quiet), ("DataError",)),
    ("api: load_data(a zip member with a bad CRC)", lambda t: api("ferkit.data:load_data", "crc.zip", log=quiet), ("DataError",)),
    ("api: prepare(source, out=source)", lambda t: api("ferkit.data:prepare", "data", "data", log=quiet), ("OutputError",)),
    ("api: export_onnx(out=the checkpoint)", lambda t: api("ferkit.infer.export:export_onnx", BEST, BEST), ("OutputError",)),
    ("api: export_onnx(out=an existing file)", lambda t: api("ferkit.infer.export:export_onnx", BEST, file(t, "m.onnx")), ("OutputError",)),
    ("api: pack(out=the checkpoint)", lambda t: api("ferkit.pretrained:pack", BEST, BEST, "data", log=quiet), ("OutputError",)),
    ("api: adjust_file(out=the checkpoint)", lambda t: api("ferkit.posthoc:adjust_file", BEST, "la", BEST, "data"), ("OutputError",)),
    ("api: evaluate_checkpoint(into a run folder)", lambda t: api("ferkit.evaluate:evaluate_checkpoint", BEST, "data", "runs/done", log=quiet),
     ("OutputError",)),
    ("api: make_config(label_smoothing=1.5)", lambda t: api("ferkit.config:make_config", {"label_smoothing": 1.5}), ("ConfigError",)),
    ("api: atomic_text under a file", lambda t: api("ferkit.runtime.paths:atomic_text", "photo.png/x.txt", "x"), ("OutputError",)),
]


# ---------------------------------------------------------------- the web service (ferkit serve's app)

def _png(size: tuple[int, int]) -> bytes:
    import io

    from PIL import Image
    buf = io.BytesIO()
    Image.new("L", size).save(buf, format="PNG")
    return buf.getvalue()


def _upload(client, data: bytes, name: str = "x.png", **params):
    return client.post("/predict", files={"file": (name, data)}, params=params)


HttpCase = tuple[str, Callable[[object], object], int]
HTTP_CASES: list[HttpCase] = [
    ("http: an empty upload", lambda c: _upload(c, b""), 400),
    ("http: a text file", lambda c: _upload(c, b"hello, not an image", "x.txt"), 415),
    ("http: a truncated PNG", lambda c: _upload(c, _png((64, 64))[:60]), 400),
    ("http: a decompression bomb", lambda c: _upload(c, _png((7100, 7100))), 413),
    ("http: over --max-bytes", lambda c: _upload(c, b"\0" * 300_000), 413),
    ("http: no file field", lambda c: c.post("/predict", data={"other": "x"}), 422),
    ("http: detect=maybe", lambda c: _upload(c, _png((48, 48)), detect="maybe"), 422),
    ("http: an unknown path", lambda c: c.get("/nope"), 404),
    ("http: GET /predict", lambda c: c.get("/predict"), 405),
]
