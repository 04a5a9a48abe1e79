"""`ferkit summary`: mean and spread over seeds, bootstrap intervals and paired tests of finished runs."""

from __future__ import annotations

import argparse
from pathlib import Path

from ferkit.commands.options import AT_LEAST_1, add_force

NAME = "summary"
HELP = "mean/std over seeds, intervals and paired tests of runs"


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "run_dirs",
        nargs="+",
        metavar="RUN_DIR",
        help="run dirs (holding metrics.json and predictions.csv), or folders of run dirs",
    )
    p.add_argument("--out", required=True, type=Path, help="folder for summary.csv/.md/.tex and per_class_f1.png")
    p.add_argument(
        "--group",
        action="append",
        default=[],
        metavar="NAME=GLOB",
        help="put runs whose dir name or path matches GLOB in group NAME (repeatable); "
        "default: dir name without a _seedN/-seedN/_sN/-sN suffix",
    )
    p.add_argument("--baseline", metavar="NAME", help="group to compare every other group with (paired.csv)")
    p.add_argument("--n-boot", type=AT_LEAST_1, default=1000, help="bootstrap resamples of the test set")
    p.add_argument("--seed", type=int, default=0, help="seed of the bootstrap resampling")
    add_force(p, "the files of an earlier summary in --out")


def run(args: argparse.Namespace) -> int:
    """Summarise runs, write the tables and figure, print the Markdown table."""
    from ferkit.report.rundirs import SUMMARY_FILES, check_report_out, find_run_dirs
    from ferkit.report.summary import summarize

    run_dirs = find_run_dirs(args.run_dirs)
    check_report_out(Path(args.out), run_dirs, SUMMARY_FILES, args.force)
    summarize(run_dirs, args.out, groups=args.group, baseline=args.baseline, n_boot=args.n_boot, seed=args.seed)
    print((Path(args.out) / "summary.md").read_text(encoding="utf-8"), end="")
    print(f"wrote {', '.join(w for w in SUMMARY_FILES if (Path(args.out) / w).is_file())} to {args.out}")
    return 0
