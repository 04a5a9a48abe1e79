"""The docs' tables quote the committed result folders under results/ (no data needed)."""
import json
import os
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "tools"))  # tools/report.py and its doc_tables: repository-only, not in the package
import doc_tables  # noqa: E402
from report import main as report  # noqa: E402


def _quoted_metrics(folder: str) -> list[float]:
    """A run folder's five quoted figures: val macro-F1, test accuracy, macro-F1, disgust F1, fear F1."""
    test = json.loads((ROOT / folder / "metrics.json").read_text())
    val = json.loads((ROOT / folder / "metrics_val.json").read_text())
    return [val["macro_f1"], test["accuracy"], test["macro_f1"], test["f1_disgust"], test["f1_fear"]]


def test_every_quoted_table_matches_its_result_files(capsys):
    """`python tools/report.py --check`: each `<!-- report:NAME -->` table of README.md and docs/*.md is exactly
    what its committed result files render to (tools/doc_tables.py)."""
    assert report(["--check", "--root", str(ROOT)]) == 0, capsys.readouterr().out
    out = capsys.readouterr().out
    assert "README.md: 2 block(s), 0 differ" in out  # the shipped-models and detection tables
    for name in ("shipped-models", "shipped-targets", "fast-slim", "study-4epochs", "throughput", "predict"):
        assert any(f"<!-- report:{name} -->" in p.read_text() for p in [ROOT / "README.md", *(ROOT / "docs").glob("*.md")]), name


def _without_timings(epochs_csv: Path) -> list[list[str]]:
    """epochs.csv without its two timing columns (train_img_per_s, seconds)."""
    rows = [line.split(",") for line in epochs_csv.read_text().splitlines()]
    timing = [rows[0].index("train_img_per_s"), rows[0].index("seconds")]
    return [[c for i, c in enumerate(row) if i not in timing] for row in rows]


@pytest.mark.parametrize("seed", ["42", "1", "2"])
@pytest.mark.parametrize("first", ["results/fast_progressive", "results/fast_slim"])
def test_fast_recipe_rerun_repeats_the_first_run_but_for_its_times(first, seed):
    """Each fast recipe's `<folder>_rerun/` ran the same script again later (fast_progressive's on a
    commit that made glibc keep freed memory): every metric, per-epoch figure and prediction is the
    same; only times differ."""
    import gzip

    first, again = f"{first}/fast_seed{seed}", f"{first}_rerun/fast_seed{seed}"
    assert _quoted_metrics(first) == _quoted_metrics(again)
    assert _without_timings(ROOT / first / "epochs.csv") == _without_timings(ROOT / again / "epochs.csv")
    assert gzip.decompress((ROOT / first / "predictions.csv.gz").read_bytes()) == \
        gzip.decompress((ROOT / again / "predictions.csv.gz").read_bytes())


def test_report_rewrites_stale_blocks_and_check_names_them(tmp_path, monkeypatch, capsys):
    monkeypatch.setitem(doc_tables.BLOCKS, "demo", lambda root: f"| n |\n|---|\n| {len(list(root.glob('*.md')))} |\n")
    (tmp_path / "docs").mkdir()
    stale = "intro\n<!-- report:demo -->\n| n |\n|---|\n| 7 |\n<!-- /report:demo -->\nprose stays\n"
    (tmp_path / "README.md").write_text(stale)
    (tmp_path / "docs" / "X.md").write_text("no blocks here\n")
    assert report(["--check", "--root", str(tmp_path)]) == 1
    assert "README.md: demo" in capsys.readouterr().out
    assert (tmp_path / "README.md").read_text() == stale  # --check changes nothing
    assert report(["--root", str(tmp_path)]) == 0
    assert (tmp_path / "README.md").read_text() == stale.replace("| 7 |", "| 1 |")
    assert report(["--check", "--root", str(tmp_path)]) == 0
    (tmp_path / "README.md").write_text("<!-- report:nope -->\n| x |\n<!-- /report:nope -->\n")
    assert report(["--check", "--root", str(tmp_path)]) == 2
    assert "unknown report block 'nope'" in capsys.readouterr().err
    assert report(["--root", str(tmp_path / "nowhere")]) == 2  # one line, exit 2, as ferkit's own errors
    assert capsys.readouterr().err.count("\n") == 1


def test_every_committed_run_config_runs_as_written():
    """Each results/**/config.json is a valid `ferkit train --config` file (types, fields, values)."""
    from ferkit.config import make_config, read_config_file

    configs = sorted((ROOT / "results").rglob("config.json"))
    assert len(configs) > 20
    for path in configs:
        cfg = make_config({}, read_config_file(path))
        assert not str(cfg.runs_dir).startswith("/tmp"), path  # run folders stay under the repository's runs/


def _csv_cells(path: Path) -> list[list[object]]:
    """A CSV's cells, numbers as floats (the last bits of a float may differ between CPUs' numpy)."""
    import csv

    def cell(v: str):
        try:
            return float(v)
        except ValueError:
            return v
    with open(path, newline="") as f:
        return [[cell(v) for v in row] for row in csv.reader(f)]


@pytest.mark.slow
def test_the_study_tables_recompute_from_committed_predictions(tmp_path):
    """Issue 17's "recomputable": `results/converged.sh report` on a copy of the committed runs gives
    the committed summaries, every cell (to 1e-9), from predictions, metrics and epochs.csv alone."""
    import shutil
    import subprocess

    copy = tmp_path / "converged"
    shutil.copytree(ROOT / "results" / "converged", copy, ignore=shutil.ignore_patterns("summary*"))
    # converged.sh calls `ferkit`: put one on PATH that is this interpreter's, whatever else PATH holds
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    (bin_dir / "ferkit").write_text(f'#!/bin/sh\nexec "{sys.executable}" -m ferkit "$@"\n')
    (bin_dir / "ferkit").chmod(0o755)
    env = os.environ | {"OUT": str(copy), "PATH": f"{bin_dir}{os.pathsep}{os.environ.get('PATH', '')}"}
    subprocess.run(["bash", str(ROOT / "results" / "converged.sh"), "report"], cwd=ROOT, check=True,
                   env=env, capture_output=True)
    for summary in ("summary", "summary_budget", "summary_40ep"):
        for name in ("summary.csv", "paired.csv", "convergence.csv"):
            mine = _csv_cells(copy / summary / name)
            committed = _csv_cells(ROOT / "results" / "converged" / summary / name)
            assert [len(r) for r in mine] == [len(r) for r in committed], (summary, name)
            for a, b in zip(mine, committed):
                # numbers to 1e-9, text exactly (pytest 9's approx refuses a sequence holding text)
                assert [type(x) for x in a] == [type(y) for y in b], (summary, name, a, b)
                for x, y in zip(a, b):
                    if isinstance(x, float):
                        assert x == pytest.approx(y, rel=1e-9, abs=1e-12, nan_ok=True), (summary, name, a[0], x, y)
                    else:
                        assert x == y, (summary, name, a[0])
