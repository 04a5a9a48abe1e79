"""The run folders a report reads, and the folder it writes: found, checked and labelled before any work.

Bad input raises `ReportError` with one line that says what to fix; the CLI prints it and exits 2.
"""

from __future__ import annotations

from pathlib import Path

from ferkit.report.stats import ReportError
from ferkit.runtime.paths import check_output


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


SUMMARY_FILES = [
    "summary.csv",
    "summary.md",
    "summary.tex",
    "per_class_f1.png",
    "paired.csv",
    "convergence.csv",
    "val_curves.png",
]
RUN_FILES = ("metrics.json", "best.pt", "last.pt")  # a folder holding one of these is a run: never written into


def check_report_out(out: Path, run_dirs: list[Path], files: list[str], force: bool) -> None:
    """Before any work: --out is a folder, not a run folder, not inside one of the runs read, and
    holds no earlier output unless --force. A folder of run dirs (results/fast) may hold it."""
    check_output(out, inputs=run_dirs, kind="dir", files=files, not_into=RUN_FILES, force=force)


def run_labels(run_dirs: list[Path]) -> list[str]:
    """Dir names, or parent/name where names repeat (runs/a/seed1 vs runs/b/seed1)."""
    names = [d.name for d in run_dirs]
    if len(set(names)) == len(names):
        return names
    return [f"{d.resolve().parent.name}/{d.name}" for d in run_dirs]
