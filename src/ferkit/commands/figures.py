"""`ferkit figures`: confusion matrices side by side and per-class F1 bars of several runs."""

from __future__ import annotations

import argparse
from pathlib import Path

from ferkit.commands.options import add_force

NAME = "figures"
HELP = "confusion matrices and per-class F1 of several runs"


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("run_dirs", nargs="+", metavar="RUN_DIR", help="two or more run dirs, or folders of run dirs")
    p.add_argument("--out", required=True, type=Path, help="folder for confusions.png and per_class_f1.png")
    add_force(p, "the figures of an earlier run of figures in --out")


def run(args: argparse.Namespace) -> int:
    """Confusion matrices side by side, and per-class F1 bars per group (std over seeds)."""
    from ferkit.report import figures
    from ferkit.report.rundirs import check_report_out, find_run_dirs, run_labels
    from ferkit.report.stats import ReportError, mean_std
    from ferkit.report.summary import group_runs, read_metrics

    run_dirs = find_run_dirs(args.run_dirs)
    if len(run_dirs) < 2:
        raise ReportError(f"figures compares runs: pass at least two run dirs, got {len(run_dirs)}")
    out = Path(args.out)
    check_report_out(out, run_dirs, ["confusions.png", "per_class_f1.png"], args.force)
    metrics = {d: read_metrics(d) for d in run_dirs}
    figures.compare_confusions(dict(zip(run_labels(run_dirs), metrics.values())), out / "confusions.png")
    class_names = metrics[run_dirs[0]]["class_names"]  # compare_confusions checked all runs agree
    bars = {}
    for name, dirs in group_runs(run_dirs).items():
        mean, std = mean_std([metrics[d]["per_class_f1"] for d in dirs])
        bars[f"{name} (n={len(dirs)})"] = {"mean": mean, "std": std}
    figures.per_class_f1_chart(
        bars, class_names, out / "per_class_f1.png", title="test per-class F1 (mean ± std over seeds)"
    )
    print(f"wrote confusions.png and per_class_f1.png to {out}")
    return 0
