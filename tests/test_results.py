"""The README's fast-recipe table quotes the committed run folders under results/ (no data needed)."""
import json
import re
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def _row(readme: str, first_cell: str) -> list[str]:
    for line in readme.splitlines():
        cells = [c.strip() for c in line.strip().strip("|").split("|")]
        if cells and cells[0] == first_cell:
            return cells
    raise AssertionError(f"no README table row starting with {first_cell!r}")


def test_readme_fast_recipe_table_matches_results():
    readme = (ROOT / "README.md").read_text()
    runs = {"42": "results/fast/fast_seed42", "1": "results/fast/fast_seed1", "2": "results/fast/fast_seed2",
            "42, an identical earlier run (`results/fast_probe_seed42/`)": "results/fast_probe_seed42"}
    for first_cell, folder in runs.items():
        test = json.loads((ROOT / folder / "metrics.json").read_text())
        val = json.loads((ROOT / folder / "metrics_val.json").read_text())
        cells = _row(readme, first_cell)
        quoted = [float(c) for c in cells[1:6]]
        measured = [val["macro_f1"], test["accuracy"], test["macro_f1"], test["f1_disgust"], test["f1_fear"]]
        assert quoted == [round(m, 3) for m in measured], folder
        epochs = (ROOT / folder / "epochs.csv").read_text().splitlines()
        seconds = sum(float(line.split(",")[-1]) for line in epochs[1:])
        assert cells[6].startswith(f"{seconds:.0f} s"), folder
        wall = re.search(r"(\d+) s", (ROOT / folder / "wall_clock.txt").read_text()).group(1)
        assert cells[7] == f"{wall} s", folder
