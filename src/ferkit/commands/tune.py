"""`ferkit tune`: a hyper-parameter search with Optuna that maximises val macro-F1 (test is never computed)."""

from __future__ import annotations

import argparse

from ferkit.experiments.tune import FILE_FORMAT  # the file's format, kept with the code that reads it

NAME = "tune"
HELP = "search hyper-parameters with Optuna on val macro-F1 (pip install 'ferkit[tune]')"


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.epilog = FILE_FORMAT  # shown as written (the CLI's formatter keeps a description and epilog raw)
    p.add_argument("config", help="the tune file (its format: below)")


def run(args: argparse.Namespace) -> int:
    from ferkit.experiments.tune import run_tune

    run_tune(args.config)
    return 0
