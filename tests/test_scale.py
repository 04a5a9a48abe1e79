"""Scaling out: `ferkit sweep --backend ray` on a two-node Ray cluster on loopback (same metrics as the
local backend; a killed worker's run is retried and resumes) and `ferkit tune` (Optuna). Skipped
when Ray or Optuna is not installed; CI installs both."""
from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import threading
import time
from pathlib import Path

import pytest
from synth import make_image_folders

from ferkit.cli import main

CLASSES = ["angry", "disgust", "fear", "happy", "neutral", "sad", "surprise"]


def _sweep_file(tmp_path: Path, runs: Path, epochs: int = 3) -> Path:
    data = make_image_folders(tmp_path / "fer", {s: {c: 3 for c in CLASSES} for s in ("train", "val", "test")})
    f = tmp_path / f"sweep-{runs.name}.toml"
    f.write_text(f'seeds = [1, 2]\n[base]\ndata_root = "{data}"\nepochs = {epochs}\nbatch_size = 8\n'
                 f'runs_dir = "{runs}"\n[strategies.E0]\npreset = "E0"\n[strategies.LA]\nloss = "la"\n')
    return f


def _outputs(runs: Path) -> dict:
    """Each run's per-epoch figures (without its timings) and test predictions: what must not depend
    on where or how often a run was started."""
    out = {}
    for d in sorted(runs.iterdir()):
        rows = [line.split(",") for line in (d / "epochs.csv").read_text().splitlines()]
        keep = [i for i, c in enumerate(rows[0]) if c not in ("train_img_per_s", "seconds")]
        out[d.name] = ([[r[i] for i in keep] for r in rows], (d / "predictions.csv").read_text())
    return out


def test_ray_backend_without_ray_says_how_to_install(tmp_path, monkeypatch, capsys):
    import builtins

    real_import = builtins.__import__

    def no_ray(name, *a, **k):
        if name == "ray":
            raise ImportError("no ray")
        return real_import(name, *a, **k)

    monkeypatch.setattr(builtins, "__import__", no_ray)
    assert main(["sweep", str(_sweep_file(tmp_path, tmp_path / "runs")), "--backend", "ray"]) == 2
    assert "pip install 'ferkit[ray]'" in capsys.readouterr().err


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture
def ray_cluster():
    """A head and a second node on 127.0.0.1, one CPU each, each with its own temp dir (short paths:
    Ray's Unix sockets live there, and a socket path has at most 107 characters)."""
    import shutil
    import tempfile

    pytest.importorskip("ray")
    tmp = Path(tempfile.mkdtemp(prefix="ray", dir="/tmp"))
    port = _free_port()
    common = ["--num-cpus", "1", "--disable-usage-stats", "--object-store-memory", str(100 * 2 ** 20)]
    env = os.environ | {"RAY_AUTH_MODE": "disabled"}
    subprocess.run(["ray", "start", "--head", "--port", str(port), "--node-ip-address", "127.0.0.1",
                    "--temp-dir", str(tmp / "h"), "--include-dashboard=false", *common],
                   check=True, capture_output=True, env=env, timeout=300)
    try:
        subprocess.run(["ray", "start", "--address", f"127.0.0.1:{port}", "--node-ip-address", "127.0.0.1",
                        "--temp-dir", str(tmp / "n"), *common],
                       check=True, capture_output=True, env=env, timeout=300)
        yield f"127.0.0.1:{port}"
    finally:
        subprocess.run(["ray", "stop", "--force"], capture_output=True, env=env, timeout=300)
        shutil.rmtree(tmp, ignore_errors=True)


@pytest.mark.slow
def test_ray_sweep_on_two_nodes_matches_local_and_survives_a_killed_worker(tmp_path, ray_cluster, monkeypatch):
    monkeypatch.setenv("RAY_AUTH_MODE", "disabled")
    local, on_ray = tmp_path / "local", tmp_path / "ray"
    assert main(["sweep", str(_sweep_file(tmp_path, local)), "--jobs", "2"]) == 0
    sweep = _sweep_file(tmp_path, on_ray)
    result: dict = {}
    runner = threading.Thread(target=lambda: result.update(code=main(
        ["sweep", str(sweep), "--backend", "ray", "--address", ray_cluster, "--retries", "3"])))
    runner.start()
    killed = None
    deadline = time.time() + 600
    while killed is None and runner.is_alive() and time.time() < deadline:
        # kill the worker of a run that has finished an epoch (its retry must resume from last.pt)
        for d in on_ray.glob("*"):
            if (d / "last.pt").is_file() and not (d / "metrics.json").is_file() and (d / "ray_worker.json").is_file():
                killed = json.loads((d / "ray_worker.json").read_text())["pid"]
                os.kill(killed, signal.SIGKILL)
                break
        time.sleep(0.2)
    runner.join(900)
    assert killed is not None, "no worker was caught mid-run"
    assert result.get("code") == 0
    assert _outputs(on_ray) == _outputs(local)  # every run finished, as the local backend's did
    logs = " ".join((d / "train.log").read_text() for d in on_ray.iterdir())
    assert "resum" in logs.lower()  # the killed run continued from its last.pt


@pytest.mark.slow
def test_tune_searches_on_val_writes_its_table_and_never_computes_test(tmp_path, capsys):
    pytest.importorskip("optuna")
    data = make_image_folders(tmp_path / "fer", {s: {c: 3 for c in CLASSES} for s in ("train", "val", "test")})
    f = tmp_path / "tune.toml"
    f.write_text(f'trials = 4\nout = "{tmp_path / "search"}"\nwarmup_epochs = 1\n[base]\ndata_root = "{data}"\n'
                 f'epochs = 2\nbatch_size = 8\n[search]\nlr = {{low = 1e-4, high = 1e-2, log = true}}\n'
                 f'sampler = {{choices = ["default", "balanced"]}}\n')
    assert main(["tune", str(f)]) == 0
    out = tmp_path / "search"
    import csv
    rows = list(csv.DictReader(open(out / "trials.csv")))
    assert [r["trial"] for r in rows] == ["0", "1", "2", "3"] and {"lr", "sampler", "val_macro_f1", "state"} <= set(rows[0])
    best = json.loads((out / "best.json").read_text())
    done = [r for r in rows if r["val_macro_f1"]]
    assert best["best_value"] == max(float(r["val_macro_f1"]) for r in done)
    assert best["best_config"]["lr"] == best["best_params"]["lr"] and best["best_config"]["epochs"] == 2
    for trial in (out / "trials").iterdir():  # val only: no trial wrote test metrics
        assert not (trial / "metrics.json").exists() and not (trial / "predictions.csv").exists()
    assert main(["tune", str(f)]) == 2  # the same out again is refused: nothing is overwritten
    assert "holds a search already" in capsys.readouterr().err
