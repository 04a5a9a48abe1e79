"""`ferkit tune CONFIG`: a hyper-parameter search with Optuna that maximises val macro-F1.

The file's format, with an example: `FILE_FORMAT` below (`ferkit tune --help` shows it).

Each trial trains `base` with the sampled values; its val macro-F1 after each epoch goes to
Optuna's median pruner, which stops a trial that falls below the median of the earlier trials at
the same epoch (after `warmup_epochs`). The search never computes test: each trial evaluates its
best checkpoint on val only, and `best.json` holds the configuration to train and test once.
Trials run one after the other (the search is sequential); a trial's folder is kept, so its curve
and checkpoint can be looked at.
"""

from __future__ import annotations

import csv
import json
from pathlib import Path
from typing import Any

from ferkit.config import ConfigError, check_types, field_names, make_config, read_table
from ferkit.runtime.paths import atomic_file, atomic_text, check_output

FILE_FORMAT = """\
a tune file (TOML or YAML; docs/TRAINING.md "Hyper-parameter search"):

  trials = 20
  out = "runs/tune-e5"            # trials/<trial>/ run folders, trials.csv, best.json
  [base]                          # RunConfig fields (the flags of ferkit train) shared by every trial
  data_root = "data/fer2013-store"
  preset = "E5"
  epochs = 30
  [search]                        # a field and its range
  lr = {low = 1e-4, high = 3e-3, log = true}
  weight_decay = {low = 0.0, high = 0.1}
  reweight_from = {low = 10, high = 28}     # ints when both bounds are
  sampler = {choices = ["default", "balanced"]}

Each trial's val macro-F1 per epoch feeds Optuna's median pruner; each trial evaluates its best
checkpoint on val only, and best.json holds the configuration to train and test once."""


def load_tune(path: str | Path) -> dict:
    """Read and check a tune file: {"trials", "out", "base", "search", "warmup_epochs", "seed"}."""
    spec = read_table(path, "tune", (".toml", ".yaml", ".yml"))
    unknown = set(spec) - {"trials", "out", "base", "search", "warmup_epochs", "seed"}
    if unknown:
        raise ConfigError(
            f"unknown field(s) in {path}: {', '.join(sorted(unknown))} (expected trials, out, base, search, warmup_epochs, seed)"
        )
    search = spec.get("search") or {}
    if not search:
        raise ConfigError(f"{path} has no [search] table: name at least one field and its range")
    bad = set(search) - field_names()
    if bad:
        raise ConfigError(f"[search] in {path} names unknown field(s): {', '.join(sorted(bad))}")
    for name, rng in search.items():
        if not isinstance(rng, dict) or not ({"low", "high"} <= set(rng) or "choices" in rng):
            raise ConfigError(f"[search] {name} in {path} must be {{low = .., high = ..}} or {{choices = [..]}}")
    base = spec.get("base") or {}
    check_types(base, f"{path} [base]")
    trials = spec.get("trials", 20)
    if not isinstance(trials, int) or trials < 1:
        raise ConfigError(f"trials in {path} must be a positive integer")
    return {
        "trials": trials,
        "out": spec.get("out", f"runs/tune-{Path(path).stem}"),
        "base": base,
        "search": search,
        "warmup_epochs": spec.get("warmup_epochs", 2),
        "seed": spec.get("seed", 0),
    }


def suggest(trial: Any, search: dict) -> dict:
    """The trial's values for each searched field."""
    values = {}
    for name, rng in search.items():
        if "choices" in rng:
            values[name] = trial.suggest_categorical(name, list(rng["choices"]))
        elif isinstance(rng["low"], int) and isinstance(rng["high"], int) and not rng.get("log"):
            values[name] = trial.suggest_int(name, rng["low"], rng["high"])
        else:
            values[name] = trial.suggest_float(name, float(rng["low"]), float(rng["high"]), log=bool(rng.get("log")))
    return values


def run_tune(path: str | Path, log=print) -> dict:
    """Run the search; returns {"best_value", "best_params", "best_config"} (also in best.json)."""
    try:
        import optuna
    except ImportError:
        raise ConfigError("ferkit tune needs Optuna: pip install 'ferkit[tune]' (or pip install optuna)") from None
    from ferkit.train import fit

    spec = load_tune(path)
    out = Path(spec["out"])
    if (out / "trials.csv").exists() or (out / "trials").exists():
        raise ConfigError(f"{out} holds a search already: set another out in {path}, or move that folder away")
    base = make_config(spec["base"])  # a bad base fails now, not in the first trial
    check_output(
        out, inputs=[base.data_root, path], kind="dir", files=["trials.csv", "best.json"], what=f"out ({path})"
    )
    out.mkdir(parents=True, exist_ok=True)

    def objective(trial) -> float:
        values = spec["base"] | suggest(trial, spec["search"])
        values |= {"exp": f"trial{trial.number:03d}", "runs_dir": str(out / "trials")}
        cfg = make_config(values)

        def report(epoch: int, val_f1: float) -> None:
            trial.report(val_f1, epoch)
            if trial.should_prune():
                raise optuna.TrialPruned(f"epoch {epoch}: val macro-F1 {val_f1:.4f} below the median")

        metrics = fit(cfg, log=lambda s: None, progress=False, on_epoch=report, splits=("val",))
        return metrics["macro_f1"]

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    study = optuna.create_study(
        direction="maximize",
        sampler=optuna.samplers.TPESampler(seed=spec["seed"]),
        pruner=optuna.pruners.MedianPruner(n_startup_trials=2, n_warmup_steps=spec["warmup_epochs"]),
    )

    def progress(study, trial) -> None:
        value = "pruned" if trial.value is None else f"val macro-F1 {trial.value:.4f}"
        log(f"trial {trial.number}: {trial.state.name.lower()}, {value}, {trial.params}")

    study.optimize(objective, n_trials=spec["trials"], callbacks=[progress])
    rows = [
        {
            "trial": t.number,
            "state": t.state.name.lower(),
            "val_macro_f1": t.value,
            "epochs": len(t.intermediate_values),
            **t.params,
        }
        for t in study.trials
    ]
    columns = list(dict.fromkeys(k for r in rows for k in r))
    with atomic_file(out / "trials.csv", "w", newline="") as f:
        w = csv.DictWriter(f, columns, restval="")
        w.writeheader()
        w.writerows(rows)
    complete = [t for t in study.trials if t.value is not None]
    if not complete:
        raise ConfigError("every trial was pruned or failed: widen the ranges or raise warmup_epochs")
    best = study.best_trial
    result = {
        "best_trial": best.number,
        "best_value": best.value,
        "best_params": best.params,
        "best_config": spec["base"] | best.params,
        "chosen_on": "val macro-F1 (test never computed)",
    }
    atomic_text(out / "best.json", json.dumps(result, indent=2) + "\n")
    log(
        f"best: trial {best.number}, val macro-F1 {best.value:.4f}, {best.params}; wrote {out / 'trials.csv'} "
        f"and {out / 'best.json'} (train it with its best_config, then test once)"
    )
    return result
