"""The README's fast-recipe table quotes the committed run folders under results/ (no data needed)."""
import json
import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent


def _row(readme: str, first_cell: str, after: str) -> list[str]:
    """The cells of the first table row starting with `first_cell` below the first line holding `after`."""
    lines = readme.splitlines()
    start = next((i for i, line in enumerate(lines) if after in line), None)
    assert start is not None, f"no README line holds {after!r}"
    for line in lines[start:]:
        cells = [c.strip() for c in line.strip().strip("|").split("|")]
        if cells and cells[0] == first_cell:
            return cells
    raise AssertionError(f"no README table row starting with {first_cell!r}")


def _quoted_metrics(folder: str) -> list[float]:
    """A run folder's five quoted figures: val macro-F1, test accuracy, macro-F1, disgust F1, fear F1."""
    test = json.loads((ROOT / folder / "metrics.json").read_text())
    val = json.loads((ROOT / folder / "metrics_val.json").read_text())
    return [val["macro_f1"], test["accuracy"], test["macro_f1"], test["f1_disgust"], test["f1_fear"]]


TABLES = {  # the line above each table -> {first cell of a row: the run folder it quotes}
    "The first fast recipe (`results/fast.sh`)": {
        "42": "results/fast/fast_seed42", "1": "results/fast/fast_seed1", "2": "results/fast/fast_seed2",
        "42, an identical earlier run (`results/fast_probe_seed42/`)": "results/fast_probe_seed42"},
    "The fast recipe (`results/fast_progressive.sh`)": {
        "42": "results/fast_slim/fast_seed42", "1": "results/fast_slim/fast_seed1", "2": "results/fast_slim/fast_seed2",
        "42, again (`results/fast_slim_rerun/`)": "results/fast_slim_rerun/fast_seed42",
        "1, again": "results/fast_slim_rerun/fast_seed1", "2, again": "results/fast_slim_rerun/fast_seed2"},
    "The second fast recipe (": {
        "42": "results/fast_progressive/fast_seed42", "1": "results/fast_progressive/fast_seed1",
        "2": "results/fast_progressive/fast_seed2",
        "42, again (`results/fast_progressive_rerun/`)": "results/fast_progressive_rerun/fast_seed42",
        "1, again": "results/fast_progressive_rerun/fast_seed1", "2, again": "results/fast_progressive_rerun/fast_seed2"},
}


@pytest.mark.parametrize("table", list(TABLES))
def test_readme_fast_recipe_table_matches_results(table):
    readme = (ROOT / "README.md").read_text()
    for first_cell, folder in TABLES[table].items():
        cells = _row(readme, first_cell, table)
        quoted = [float(c) for c in cells[1:6]]
        assert quoted == [round(m, 3) for m in _quoted_metrics(folder)], folder
        epochs = (ROOT / folder / "epochs.csv").read_text().splitlines()
        seconds = sum(float(line.split(",")[-1]) for line in epochs[1:])
        assert cells[6].startswith(f"{seconds:.0f} s"), folder
        wall = re.search(r"(\d+) s", (ROOT / folder / "wall_clock.txt").read_text()).group(1)
        assert cells[7] == f"{wall} s", folder


@pytest.mark.parametrize("table", list(TABLES))
def test_readme_fast_recipe_means_match_results(table):
    """The mean ± std row: over the seeds' folders (sample std, as `ferkit summary`)."""
    import numpy as np

    readme = (ROOT / "README.md").read_text()
    values = np.array([_quoted_metrics(f) for cell, f in TABLES[table].items() if cell in ("42", "1", "2")])
    expected = [f"{m:.3f} ± {s:.3f}" for m, s in zip(values.mean(0), values.std(0, ddof=1))]
    assert _row(readme, "mean ± std over seeds 42, 1, 2", table)[1:6] == expected


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
