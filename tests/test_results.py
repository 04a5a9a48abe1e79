"""The docs' tables quote the committed result folders under results/ (no data needed)."""
import json
from pathlib import Path

import pytest

from ferkit.cli import main

ROOT = Path(__file__).resolve().parent.parent


def _quoted_metrics(folder: str) -> list[float]:
    """A run folder's five quoted figures: val macro-F1, test accuracy, macro-F1, disgust F1, fear F1."""
    test = json.loads((ROOT / folder / "metrics.json").read_text())
    val = json.loads((ROOT / folder / "metrics_val.json").read_text())
    return [val["macro_f1"], test["accuracy"], test["macro_f1"], test["f1_disgust"], test["f1_fear"]]


def test_every_quoted_table_matches_its_result_files(capsys):
    """`ferkit report --check`: each `<!-- report:NAME -->` table of README.md and docs/*.md is exactly
    what its committed result files render to (ferkit/report/docs.py)."""
    assert main(["report", "--check", "--root", str(ROOT)]) == 0, capsys.readouterr().out
    out = capsys.readouterr().out
    assert "README.md: 2 block(s), 0 differ" in out  # the shipped-models and detection tables
    for name in ("shipped-models", "fast-slim", "study-4epochs", "throughput", "predict"):
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
    from ferkit.report import docs

    monkeypatch.setitem(docs.BLOCKS, "demo", lambda root: f"| n |\n|---|\n| {len(list(root.glob('*.md')))} |\n")
    (tmp_path / "docs").mkdir()
    stale = "intro\n<!-- report:demo -->\n| n |\n|---|\n| 7 |\n<!-- /report:demo -->\nprose stays\n"
    (tmp_path / "README.md").write_text(stale)
    (tmp_path / "docs" / "X.md").write_text("no blocks here\n")
    assert main(["report", "--check", "--root", str(tmp_path)]) == 1
    assert "README.md: demo" in capsys.readouterr().out
    assert (tmp_path / "README.md").read_text() == stale  # --check changes nothing
    assert main(["report", "--root", str(tmp_path)]) == 0
    assert (tmp_path / "README.md").read_text() == stale.replace("| 7 |", "| 1 |")
    assert main(["report", "--check", "--root", str(tmp_path)]) == 0
    (tmp_path / "README.md").write_text("<!-- report:nope -->\n| x |\n<!-- /report:nope -->\n")
    assert main(["report", "--check", "--root", str(tmp_path)]) == 2
    assert "unknown report block 'nope'" in capsys.readouterr().err


def test_every_committed_run_config_runs_as_written():
    """Each results/**/config.json is a valid `ferkit train --config` file (types, fields, values)."""
    from ferkit.config import make_config, read_config_file

    configs = sorted((ROOT / "results").rglob("config.json"))
    assert len(configs) > 20
    for path in configs:
        cfg = make_config({}, read_config_file(path))
        assert not str(cfg.runs_dir).startswith("/tmp"), path  # run folders stay under the repository's runs/
