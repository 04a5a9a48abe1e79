"""Multi-process training (ferkit/runtime/distributed.py): sampler shards, a 2-process gloo run under torchrun,
and a checkpoint of 2 processes resumed by 1."""
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import torch
from synth import CLASSES, make_image_folders

from ferkit.data.batches import EpochBatches
from ferkit.runtime.distributed import Dist, from_env, share
from ferkit.strategies import sampling_weights


def test_shards_of_every_global_batch_make_up_the_one_process_batch():
    """Re-sampling keeps its class distribution: N processes draw exactly the one-process batches between them."""
    images = torch.randint(0, 256, (90, 48, 48), dtype=torch.uint8)
    labels = torch.tensor([0] * 60 + [1] * 20 + [2] * 10)
    weights = sampling_weights(labels.numpy(), 0.0, 3)  # class-balanced re-sampling
    one = list(EpochBatches(images, labels, 24, torch.Generator().manual_seed(5), weights, aug={"erase_p": 0.5}))
    parts = [list(EpochBatches(images, labels, 24, torch.Generator().manual_seed(5), weights, aug={"erase_p": 0.5},
                               rank=r, world=3)) for r in range(3)]
    assert all(len(p) == len(one) for p in parts)
    for b, (x, y) in enumerate(one):
        for r in range(3):
            assert torch.equal(parts[r][b][1], y[r::3]) and torch.allclose(parts[r][b][0], x[r::3])
    with pytest.raises(ValueError, match="rank must be in 0..1"):
        EpochBatches(images, labels, 8, torch.Generator(), rank=2, world=2)


def test_ranks_come_from_torchrun_or_default_to_one_process(monkeypatch):
    monkeypatch.delenv("WORLD_SIZE", raising=False)
    assert from_env() == Dist() and Dist().main and not Dist().active
    monkeypatch.setenv("WORLD_SIZE", "4")
    monkeypatch.setenv("RANK", "3")
    monkeypatch.setenv("LOCAL_RANK", "1")
    d = from_env()
    assert (d.rank, d.world, d.local_rank, d.main, d.active) == (3, 4, 1, False, True)
    assert torch.equal(torch.arange(10)[share(d.rank, d.world)], torch.tensor([3, 7]))


def train_cmd(data: Path, runs: Path, exp: str, *extra: str) -> list[str]:
    return [sys.executable, "-m", "ferkit", "train", "--data_root", str(data), "--runs_dir", str(runs), "--exp", exp,
            "--arch", "seed-cnn-half", "--batch_size", "16", *extra]


@pytest.mark.slow
def test_two_gloo_processes_write_one_run_that_one_process_resumes(tmp_path):
    data = make_image_folders(tmp_path / "fer", {s: {c: (20 if s == "train" else 4) for c in CLASSES}
                                                 for s in ("train", "val", "test")})
    runs, env = tmp_path / "runs", os.environ | {"OMP_NUM_THREADS": "1"}
    run = runs / "ddp"
    proc = subprocess.Popen(train_cmd(data, runs, "ddp", "--epochs", "40", "--seed", "3", "--nproc", "2"), env=env,
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True, start_new_session=True)
    deadline = time.monotonic() + 240
    while not (run / "epochs.csv").is_file() or len((run / "epochs.csv").read_text().splitlines()) < 3:
        assert proc.poll() is None, f"the 2-process run ended early: {proc.stderr.read()[-2000:]}"
        assert time.monotonic() < deadline, "no second epoch within 4 minutes"
        time.sleep(0.2)
    os.kill(proc.pid, signal.SIGTERM)  # mid-run: torchrun stops both workers (they run in their own sessions)
    proc.wait(60)
    rows = len((run / "epochs.csv").read_text().splitlines())
    time.sleep(2)
    assert len((run / "epochs.csv").read_text().splitlines()) == rows, "a worker went on after torchrun stopped"
    assert not (run / "metrics.json").exists(), "the run finished before it could be interrupted"
    config = json.loads((run / "config.json").read_text())
    assert config["run"]["processes"] == 2
    assert sorted(p.name for p in runs.iterdir()) == ["ddp"]  # one run folder: only rank 0 writes
    assert len(list(run.glob("events.out.tfevents.*"))) == 1
    done = int(torch.load(run / "last.pt", weights_only=False)["epoch"])
    # a checkpoint of 2 processes resumes in 1 (the global batch is the run's batch_size either way)
    r = subprocess.run([sys.executable, "-m", "ferkit", "train", "--resume", str(run / "last.pt")], env=env,
                       capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stderr[-2000:]
    log = (run / "train.log").read_text()
    assert f"resuming ddp after epoch {done} of 40" in log and "2 processes (DDP)" in log
    epochs = [int(line.split(",")[0]) for line in (run / "epochs.csv").read_text().splitlines()[1:]]
    assert epochs == list(range(1, 41)) and (run / "metrics.json").is_file()


@pytest.mark.slow
def test_two_processes_train_like_one_at_the_same_global_batch(tmp_path):
    """Same seed and global batch: the same draws and the same averaged gradient; only BatchNorm's batch
    statistics (8 images per process instead of 16, on CPU) differ. The gap to one process must be
    within seed noise: no larger than twice what another seed changes (or 0.15)."""
    data = make_image_folders(tmp_path / "fer", {s: {c: (20 if s == "train" else 3) for c in CLASSES}
                                                 for s in ("train", "val", "test")})
    env = os.environ | {"OMP_NUM_THREADS": "1"}
    runs = {"one": ["--seed", "3"], "two": ["--seed", "3", "--nproc", "2"], "other seed": ["--seed", "4"]}
    loss = {}
    for exp, extra in runs.items():
        name = exp.replace(" ", "-")
        r = subprocess.run(train_cmd(data, tmp_path / "runs", name, "--epochs", "2", *extra), env=env,
                           capture_output=True, text=True, timeout=300)
        assert r.returncode == 0, r.stderr[-2000:]
        lines = [line.split(",") for line in (tmp_path / "runs" / name / "epochs.csv").read_text().splitlines()]
        loss[exp] = float(lines[-1][lines[0].index("train_loss")])  # the last epoch's mean training loss
    noise = abs(loss["other seed"] - loss["one"])
    assert np.isfinite(loss["two"]) and abs(loss["two"] - loss["one"]) <= max(0.15, 2 * noise), loss
