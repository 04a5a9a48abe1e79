"""`ferkit sweep CONFIG`: a grid of strategies x seeds, run N at a time, restartable.

The file's format, with an example: `FILE_FORMAT` below (`ferkit sweep --help` shows it).

Run `<strategy>_seed<seed>` goes to `<runs_dir>/<strategy>_seed<seed>/`. A run whose
`metrics.json` exists (in the runs dir, or in the `collected` folder where a study commits
its finished runs' small outputs, so that a fresh checkout goes on where the study stopped) is skipped; one with a `last.pt` but no metrics (interrupted) is resumed;
the others start. A run to skip or resume that was trained with other settings than the file now
gives is refused (`check_same_run`): move it aside, nothing is overwritten. Each run is a `ferkit train --config` subprocess, so runs are isolated and a
crash of one does not stop the others.
"""

from __future__ import annotations

import io
import json
import os
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

from ferkit.config import ConfigError, check_types, field_names, make_config, read_table
from ferkit.runtime.paths import atomic_text, check_output

FILE_FORMAT = """\
a sweep file (TOML or YAML; docs/TRAINING.md "Sweeps and summaries"):

  seeds = [1, 2, 3]
  collected = "archive/study/runs"   # optional: finished runs copied here count as done
  [base]                      # RunConfig fields (the flags of ferkit train) shared by every run
  data_root = "data/fer2013-store"
  epochs = 30
  runs_dir = "runs/study"
  [strategies.E0]             # each strategy: RunConfig fields on top of base
  preset = "E0"
  [strategies.LA]
  loss = "la"

Run <strategy>_seed<seed> goes to <runs_dir>/<strategy>_seed<seed>/. A run with metrics.json is
skipped, one with last.pt only is resumed, the others start; a finished run trained with other
settings than the file now gives is refused (move it aside: nothing is overwritten)."""


@dataclass
class PlannedRun:
    name: str
    config: dict
    run_dir: Path
    action: str  # "skip", "resume" or "start"


def load_sweep(path: str | Path) -> tuple[dict, list[int], dict[str, dict], Path | None]:
    """Read a sweep file into (base fields, seeds, {strategy: fields}, collected folder or None)."""
    path = Path(path)
    spec = read_table(path, "sweep", (".toml", ".yaml", ".yml"))
    unknown = set(spec) - {"base", "seeds", "strategies", "collected"}
    if unknown:
        raise ConfigError(
            f"unknown section(s) in {path}: {', '.join(sorted(unknown))} (expected base, seeds, strategies, collected)"
        )
    if not spec.get("strategies"):
        raise ConfigError(f"{path} names no [strategies.<name>] table")
    seeds = spec.get("seeds", [42])
    if not isinstance(seeds, list) or not all(isinstance(s, int) for s in seeds):
        raise ConfigError(f"seeds in {path} must be a list of integers")
    collected = spec.get("collected")
    if collected is not None and not isinstance(collected, str):
        raise ConfigError(f"collected in {path} must be a folder path (a string)")
    return spec.get("base", {}), seeds, spec["strategies"], Path(collected) if collected else None


# Where a run lives, not what it trains: these may differ between a finished run and the sweep file.
PLACE_FIELDS = {"data_root", "runs_dir", "device", "resume", "run"}


def _existing_run(run_dir: Path, collected: Path | None) -> tuple[str, Path | None]:
    """(what a sweep does with a run folder, the folder whose run it keeps): "skip" a finished run
    (metrics.json is written last; a copy under `collected` counts too), "resume" an interrupted
    one (it has a last.pt), else "start" (no folder)."""
    if (run_dir / "metrics.json").is_file():
        return "skip", run_dir
    if collected is not None and (collected / run_dir.name / "metrics.json").is_file():
        return "skip", collected / run_dir.name
    return ("resume", run_dir) if (run_dir / "last.pt").is_file() else ("start", None)


def run_action(run_dir: Path, collected: Path | None = None) -> str:
    """What a sweep does with a run folder: "skip", "resume" or "start" (`_existing_run`)."""
    return _existing_run(run_dir, collected)[0]


def check_same_run(planned: dict, folder: Path | None, where: str) -> None:
    """Refuse to skip or resume the run in `folder` when it was trained with other settings than the
    sweep file now gives (a run without a config.json is taken as it is).

    Without this, changing a strategy (say epochs 30 -> 40) would silently keep the old runs."""
    if folder is None or not (folder / "config.json").is_file():
        return
    try:
        old = json.loads((folder / "config.json").read_text())
    except (OSError, ValueError) as e:
        raise ConfigError(
            f"{folder / 'config.json'} cannot be read ({e}): restore it, or move that run aside"
        ) from None
    known = {k: v for k, v in old.items() if k in field_names()}
    try:  # the same normalisation as the plan (tta False and "none" are one setting)
        old = make_config(known).to_dict()
    except ConfigError:  # a setting this version no longer accepts: compare as written
        old = known
    for key in sorted(set(old) & set(planned) - PLACE_FIELDS):
        if old[key] != planned[key]:
            raise ConfigError(
                f"{folder} was trained with {key} = {old[key]!r}, but {where} now gives "
                f"{planned[key]!r}: move that run aside (a sweep never overwrites it) or restore the setting"
            )


def plan(path: str | Path) -> list[PlannedRun]:
    """Every (strategy, seed) run with what the sweep will do with it."""
    base, seeds, strategies, collected = load_sweep(path)
    runs = []
    for name, fields in strategies.items():
        for seed in seeds:
            exp = f"{name}_seed{seed}"
            values = base | (fields or {}) | {"seed": seed, "exp": exp}
            unknown = set(values) - field_names()
            if unknown:
                raise ConfigError(
                    f"unknown field(s) in {path} [strategies.{name}] or [base]: {', '.join(sorted(unknown))}"
                )
            where = f"{path} [strategies.{name}]"
            check_types(values, where)
            try:  # every field validated now, before anything runs; the error names the strategy
                cfg = make_config(values)
            except ConfigError as e:
                raise ConfigError(f"{where}: {e}") from None
            run_dir, config = Path(cfg.runs_dir) / exp, cfg.to_dict()
            check_output(run_dir, inputs=[cfg.data_root], kind="dir", force=True, what=f"{where}: the run folder")
            action, kept = _existing_run(run_dir, collected)
            check_same_run(config, kept, f"{path} [strategies.{name}]")
            runs.append(PlannedRun(exp, config, run_dir, action))
    return runs


def _command(run: PlannedRun) -> list[str]:
    run.run_dir.mkdir(parents=True, exist_ok=True)
    if run.action == "resume":
        return [
            sys.executable,
            "-m",
            "ferkit",
            "train",
            "--resume",
            str(run.run_dir / "last.pt"),
            "--data_root",
            str(run.config["data_root"]),
        ]
    spec = run.run_dir / "sweep_config.json"
    atomic_text(spec, json.dumps({k: v for k, v in run.config.items() if v is not None and k != "resume"}, indent=2))
    return [sys.executable, "-m", "ferkit", "train", "--config", str(spec)]


def run_sweep(path: str | Path, jobs: int = 1, dry_run: bool = False, log=print) -> int:
    """Run the sweep; returns the number of runs that failed."""
    if jobs < 1:  # -3 would wait forever for a free slot, 0 divide the threads by zero
        raise ConfigError(f"jobs must be at least 1 (got {jobs})")
    runs = plan(path)
    todo = [r for r in runs if r.action != "skip"]
    for r in runs:
        log(f"{r.action:>6}  {r.name}")
    log(f"{len(runs)} runs: {len(runs) - len(todo)} done, {len(todo)} to run, {jobs} at a time")
    if dry_run or not todo:
        return 0
    env = os.environ | {"OMP_NUM_THREADS": str(max(1, (os.cpu_count() or 1) // jobs))}
    pending, failed = list(todo), list[str]()
    active: list[
        tuple[PlannedRun, subprocess.Popen[bytes], io.TextIOWrapper, float]
    ] = []  # run, process, its log, start
    while pending or active:
        while pending and len(active) < jobs:
            r = pending.pop(0)
            cmd = _command(r)  # creates the run folder
            logf = open(r.run_dir / "sweep.log", "a")
            active.append((r, subprocess.Popen(cmd, stdout=logf, stderr=subprocess.STDOUT, env=env), logf, time.time()))
            log(f" start  {r.name}: {' '.join(cmd[2:])}")
        time.sleep(1.0)
        for item in list(active):
            r, proc, logf, t0 = item
            if proc.poll() is None:
                continue
            active.remove(item)
            logf.close()
            status = "done" if proc.returncode == 0 else f"FAILED (exit {proc.returncode}, see {r.run_dir}/sweep.log)"
            if proc.returncode != 0:
                failed.append(r.name)
            log(f"{status:>6}  {r.name} in {time.time() - t0:.0f} s")
    if failed:
        log(f"{len(failed)} run(s) failed: {', '.join(failed)}; run the sweep again to retry them")
    return len(failed)
