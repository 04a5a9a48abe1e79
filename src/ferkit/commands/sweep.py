"""`ferkit sweep`: a grid of strategies x seeds from a TOML/YAML file, run N at a time, restartable."""

from __future__ import annotations

import argparse

from ferkit.commands.options import AT_LEAST_0, AT_LEAST_1
from ferkit.config import Bound, ConfigError
from ferkit.experiments.sweep import FILE_FORMAT  # the file's format, kept with the code that reads it

NAME = "sweep"
HELP = "run a grid of strategies x seeds from a TOML/YAML file (restartable)"


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.epilog = FILE_FORMAT  # shown as written (the CLI's formatter keeps a description and epilog raw)
    p.add_argument("config", help="the sweep file (its format: below)")
    p.add_argument("--jobs", type=AT_LEAST_1, default=1, help="runs at a time (threads are split between them)")
    p.add_argument("--dry-run", dest="dry_run", action="store_true", help="only list what would run")
    p.add_argument(
        "--backend",
        choices=["local", "ray"],
        default="local",
        help="local: --jobs processes on this machine; ray: one Ray task per run (pip install 'ferkit[ray]')",
    )
    p.add_argument("--address", help="ray: a running cluster's address (HEAD:6379); default: a local Ray for the sweep")
    p.add_argument("--cpus-per-run", type=AT_LEAST_1, default=1, help="ray: CPUs each run declares (and trains with)")
    p.add_argument("--gpus-per-run", type=Bound(0).arg(float), default=0, help="ray: GPUs each run declares")
    p.add_argument(
        "--retries", type=AT_LEAST_0, default=2, help="ray: times a run whose worker died is retried, resuming"
    )


def run(args: argparse.Namespace) -> int:
    if args.backend == "ray":
        from ferkit.experiments.sweep_ray import run_sweep_ray

        failed = run_sweep_ray(
            args.config, args.address, args.cpus_per_run, args.gpus_per_run, args.retries, args.dry_run
        )
    else:
        if args.address:
            raise ConfigError("--address is for --backend ray")
        from ferkit.experiments.sweep import run_sweep

        failed = run_sweep(args.config, args.jobs, args.dry_run)
    return 1 if failed else 0
