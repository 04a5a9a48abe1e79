"""A training run's folder (`runs/<exp>/`): made without losing a run, its log and epochs.csv, and
what a resumed run needs (the random state, a best.pt a kill left unwritten). The loop is train.py."""

from __future__ import annotations

import csv
import shutil
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any

import torch

from ferkit.config import ConfigError
from ferkit.models import read_checkpoint, save_checkpoint
from ferkit.runtime.paths import atomic_file

Log = Callable[[str], None]


def rng_state(gen: torch.Generator) -> dict:
    state: dict[str, Any] = {"generator": gen.get_state(), "torch": torch.get_rng_state()}
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def set_rng_state(gen: torch.Generator, state: dict) -> None:
    gen.set_state(state["generator"])
    torch.set_rng_state(state["torch"])
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


def write_epochs_csv(path: Path, history: list[dict]) -> None:
    with atomic_file(path, "w", durable=False, newline="") as f:  # whole or the previous epoch's, never half
        w = csv.DictWriter(f, fieldnames=list(history[0]))
        w.writeheader()
        w.writerows(history)


def run_logger(run_dir: Path, log: Log, earlier: Iterable[str] = ()) -> Log:
    """Print and append to run_dir/train.log; `earlier` lines, already printed before the folder
    existed, go into the file first."""
    with open(run_dir / "train.log", "a") as f:
        f.writelines(m + "\n" for m in earlier)

    def both(msg: str) -> None:
        log(msg)
        with open(run_dir / "train.log", "a") as f:
            f.write(msg + "\n")

    return both


RESULTS = ("metrics.json", "last.pt", "best.pt")  # what a run folder holds once an epoch has finished
RUN_LOGS = ("config.json", "train.log", "epochs.csv", "events.out.tfevents.*")  # written before the first epoch ends


def prepare_run_dir(run_dir: Path, resuming: bool, overwrite: bool, log: Log) -> None:
    """Make the run folder, never losing a run: a folder that holds results is refused unless the run
    resumes or `overwrite` says to replace it; a folder left by a run that stopped before its first
    epoch (no checkpoint) starts afresh, so that two runs' logs never mix; stale .tmp files go."""
    if run_dir.exists() and not run_dir.is_dir():
        raise ConfigError(f"{run_dir} exists and is not a folder: choose another --exp or --runs_dir")
    if run_dir.is_dir() and not resuming:
        found = [n for n in RESULTS if (run_dir / n).exists()]
        if found and not overwrite:
            what = "a finished run" if "metrics.json" in found else "an unfinished run"
            hint = f"continue it with --resume {run_dir / 'last.pt'}, " if (run_dir / "last.pt").exists() else ""
            raise ConfigError(
                f"{run_dir} holds {what} ({', '.join(found)}): {hint}choose another --exp, "
                f"or pass --overwrite to replace it"
            )
        if found:
            log(f"{run_dir}: replacing the run there (--overwrite)")
            shutil.rmtree(run_dir)
        else:  # only the logs of a run that stopped before its first epoch: start them afresh
            stale = [f for pattern in RUN_LOGS for f in run_dir.glob(pattern)]
            if stale:
                log(f"{run_dir}: held a run that stopped before its first epoch (no checkpoint): starting afresh")
            for f in stale:
                f.unlink()
    try:
        run_dir.mkdir(parents=True, exist_ok=True)
        for tmp in run_dir.glob("*.tmp"):  # a write interrupted by a kill: the real file is intact
            tmp.unlink()
    except OSError as e:
        raise ConfigError(
            f"cannot write the run folder {run_dir} ({e.strerror}): choose a writable --runs_dir"
        ) from None


def complete_best(run_dir: Path, last: dict, base: dict) -> None:
    """When the run was killed after writing last.pt but before best.pt, in an epoch that was the best
    so far, write that best.pt now from last.pt's weights (the same epoch's model)."""
    history = last["history"]
    best = max(history, key=lambda r: r["val_macro_f1"])["epoch"] if history else None
    path = run_dir / "best.pt"
    if best != last["epoch"]:
        return
    if path.is_file() and read_checkpoint(path).get("epoch") == best:
        return
    save_checkpoint(base | {"model": last["model"], "epoch": best, "val_metrics": last["val_metrics"]}, path)
