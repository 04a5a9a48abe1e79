"""`ferkit summary` and `ferkit figures`: argparse wiring called by ferkit.cli.

Bad input raises `ReportError` with one line that says what to fix; the CLI prints it and exits 2.
"""
from __future__ import annotations

import argparse
from pathlib import Path

from ferkit.paths import check_output
from ferkit.report import figures
from ferkit.report.stats import ReportError, mean_std
from ferkit.report.summary import group_runs, read_metrics, summarize


def find_run_dirs(paths: list[str | Path], log=print) -> list[Path]:
    """Run dirs from the command line: each path is a run dir (holds metrics.json) or a folder
    whose direct subfolders are run dirs. Repeats are dropped; skipped subfolders are reported."""
    found: list[Path] = []
    for p in map(Path, paths):
        if not p.is_dir():
            raise ReportError(f"{p} is not a directory: pass run dirs (holding metrics.json) or their parent")
        if (p / "metrics.json").is_file():
            found.append(p)
            continue
        subdirs = sorted(d for d in p.iterdir() if d.is_dir())
        runs = [d for d in subdirs if (d / "metrics.json").is_file()]
        if not runs:
            raise ReportError(f"no metrics.json in {p} or its subfolders: pass run dirs written by `ferkit train`")
        for d in subdirs:
            if d not in runs:  # a run writes config.json first and metrics.json last
                why = "unfinished run?" if (d / "config.json").is_file() else "not a run dir"
                log(f"note: skipping {d}: no metrics.json ({why})")
        found += runs
    unique: dict[Path, Path] = {}
    for d in found:  # a dir named twice (itself and via its parent) counts once
        unique.setdefault(d.resolve(), d)
    return list(unique.values())


def add_summary_args(p: argparse.ArgumentParser) -> None:
    """Arguments of `ferkit summary`."""
    p.add_argument("run_dirs", nargs="+", metavar="RUN_DIR",
                   help="run dirs (holding metrics.json and predictions.csv), or folders of run dirs")
    p.add_argument("--out", required=True, type=Path, help="folder for summary.csv/.md/.tex and per_class_f1.png")
    p.add_argument("--group", action="append", default=[], metavar="NAME=GLOB",
                   help="put runs whose dir name or path matches GLOB in group NAME (repeatable); "
                        "default: dir name without a _seedN/-seedN/_sN/-sN suffix")
    p.add_argument("--baseline", metavar="NAME", help="group to compare every other group with (paired.csv)")
    p.add_argument("--n-boot", type=int, default=1000,
                   help="bootstrap resamples of the test set (default 1000)")
    p.add_argument("--seed", type=int, default=0, help="seed of the bootstrap resampling (default 0)")
    p.add_argument("--force", action="store_true", help="replace the files of an earlier summary in --out")


SUMMARY_FILES = ["summary.csv", "summary.md", "summary.tex", "per_class_f1.png", "paired.csv", "convergence.csv",
                 "val_curves.png"]
RUN_FILES = ("metrics.json", "best.pt", "last.pt")  # a folder holding one of these is a run: never written into


def check_report_out(out: Path, run_dirs: list[Path], files: list[str], force: bool) -> None:
    """Before any work: --out is a folder, not a run folder, not inside one of the runs read, and
    holds no earlier output unless --force. A folder of run dirs (results/fast) may hold it."""
    check_output(out, inputs=run_dirs, kind="dir", files=files, not_into=RUN_FILES, force=force)


def run_summary(args: argparse.Namespace) -> int:
    """Summarise runs, write the tables and figure, print the Markdown table."""
    if args.n_boot < 1:
        raise ReportError(f"--n-boot must be at least 1, got {args.n_boot}")
    run_dirs = find_run_dirs(args.run_dirs)
    check_report_out(Path(args.out), run_dirs, SUMMARY_FILES, getattr(args, "force", False))
    summarize(run_dirs, args.out, groups=args.group, baseline=args.baseline, n_boot=args.n_boot, seed=args.seed)
    print((Path(args.out) / "summary.md").read_text(encoding="utf-8"), end="")
    print(f"wrote {', '.join(w for w in SUMMARY_FILES if (Path(args.out) / w).is_file())} to {args.out}")
    return 0


def add_figures_args(p: argparse.ArgumentParser) -> None:
    """Arguments of `ferkit figures`."""
    p.add_argument("run_dirs", nargs="+", metavar="RUN_DIR", help="two or more run dirs, or folders of run dirs")
    p.add_argument("--out", required=True, type=Path, help="folder for confusions.png and per_class_f1.png")
    p.add_argument("--force", action="store_true", help="replace the figures of an earlier run of figures in --out")


def run_figures(args: argparse.Namespace) -> int:
    """Confusion matrices side by side, and per-class F1 bars per group (std over seeds)."""
    run_dirs = find_run_dirs(args.run_dirs)
    if len(run_dirs) < 2:
        raise ReportError(f"figures compares runs: pass at least two run dirs, got {len(run_dirs)}")
    out = Path(args.out)
    check_report_out(out, run_dirs, ["confusions.png", "per_class_f1.png"], getattr(args, "force", False))
    metrics = {d: read_metrics(d) for d in run_dirs}
    figures.compare_confusions(dict(zip(_run_labels(run_dirs), metrics.values())), out / "confusions.png")
    class_names = metrics[run_dirs[0]]["class_names"]  # compare_confusions checked all runs agree
    bars = {}
    for name, dirs in group_runs(run_dirs).items():
        mean, std = mean_std([metrics[d]["per_class_f1"] for d in dirs])
        bars[f"{name} (n={len(dirs)})"] = {"mean": mean, "std": std}
    figures.per_class_f1_chart(bars, class_names, out / "per_class_f1.png",
                               title="test per-class F1 (mean ± std over seeds)")
    print(f"wrote confusions.png and per_class_f1.png to {out}")
    return 0


def _run_labels(run_dirs: list[Path]) -> list[str]:
    """Dir names, or parent/name where names repeat (runs/a/seed1 vs runs/b/seed1)."""
    names = [d.name for d in run_dirs]
    if len(set(names)) == len(names):
        return names
    return [f"{d.resolve().parent.name}/{d.name}" for d in run_dirs]


def add_report_args(p: argparse.ArgumentParser) -> None:
    """Arguments of `ferkit report`."""
    p.add_argument("--check", action="store_true",
                   help="change nothing; exit 1 if a table differs from its result files")
    p.add_argument("--root", type=Path, default=Path("."), help="the repository root (default: the current folder)")


def run_report(args: argparse.Namespace) -> int:
    """Re-render the `<!-- report:NAME -->` tables of README.md and docs/*.md (ferkit.report.docs)."""
    from ferkit.report import docs

    if not (args.root / "README.md").is_file():
        raise ReportError(f"no README.md in {args.root}: run from the repository root or pass --root")
    return docs.run_report(args.root, check=args.check)
