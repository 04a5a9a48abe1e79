"""Reports over finished runs: summary tables, statistics and figures.

stats    bootstrap CIs, paired bootstrap, exact McNemar (numpy only)
figures  confusion matrices and per-class F1 bar charts (matplotlib, Agg canvas)
summary  load run dirs, group seeds, write summary.csv/.md/.tex and paired.csv
commands argparse wiring of `ferkit summary` and `ferkit figures`
"""

from ferkit.report.figures import compare_confusions, per_class_f1_chart, plot_confusion
from ferkit.report.stats import ReportError, bootstrap_ci, mcnemar, metrics_from_confusion, paired_bootstrap
from ferkit.report.summary import group_runs, load_run, read_metrics, split_seed, summarize

__all__ = [
    "ReportError",
    "bootstrap_ci",
    "paired_bootstrap",
    "mcnemar",
    "metrics_from_confusion",
    "plot_confusion",
    "compare_confusions",
    "per_class_f1_chart",
    "load_run",
    "read_metrics",
    "split_seed",
    "group_runs",
    "summarize",
]
