"""`ferkit tune`: a hyper-parameter search with Optuna that maximises val macro-F1 (test is never computed)."""

from __future__ import annotations

import argparse

NAME = "tune"
HELP = "search hyper-parameters with Optuna on val macro-F1 (pip install 'ferkit[tune]')"
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


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.epilog = FILE_FORMAT  # shown as written (the CLI's formatter keeps a description and epilog raw)
    p.add_argument("config", help="the tune file (its format: below)")


def run(args: argparse.Namespace) -> int:
    from ferkit.experiments.tune import run_tune

    run_tune(args.config)
    return 0
