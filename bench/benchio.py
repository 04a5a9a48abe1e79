"""What every benchmark does last: write its report as JSON under bench/results/ and say where."""
from __future__ import annotations

import json
from pathlib import Path


def save_report(report: dict, out: str | Path, indent: int = 2) -> Path:
    """Write `report` to `out` (folders made as needed) and print the path; returns it."""
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(report, indent=indent) + "\n")
    print(f"\nwrote {out}")
    return out
