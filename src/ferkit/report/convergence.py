"""Has a run converged? The test on its per-epoch val macro-F1 (`epochs.csv`), and the curves figure.

A run has converged when its best val epoch is not among its last `window` epochs (it peaked and
more epochs did not help), or when its last `window + 1` epochs are all within `tol` val macro-F1
of its best (it sits on a plateau). A run whose last epochs still gain more than `tol` fails both.
"""

from __future__ import annotations

import csv
from pathlib import Path

from ferkit.report.stats import ReportError

WINDOW = 2  # the best epoch must not be among the last 2 epochs ...
TOLERANCE = 0.005  # ... or the last 3 epochs must be within 0.005 val macro-F1 of the best
LATE = 5  # late_gain: how much the last 5 epochs beat every epoch before them (a diagnostic)
RULE = (
    f"best val epoch not among the last {WINDOW}, or the last {WINDOW + 1} within {TOLERANCE} val macro-F1 "
    f"of the best"
)  # the test in words, for logs and table captions


def read_val_curve(run_dir: Path | str) -> list[float] | None:
    """Val macro-F1 per epoch from a run's epochs.csv, or None when the run has none (post-hoc runs)."""
    path = Path(run_dir) / "epochs.csv"
    if not path.is_file():
        return None
    with open(path, newline="", encoding="utf-8") as f:
        rows = list(csv.DictReader(f))
    try:
        return [float(r["val_macro_f1"]) for r in rows]
    except (KeyError, TypeError, ValueError):
        raise ReportError(f"{path} has no numeric val_macro_f1 column: re-run the run with `ferkit train`") from None


def convergence(curve: list[float], window: int = WINDOW, tol: float = TOLERANCE) -> dict:
    """The convergence test of one val curve.

    Returns best_epoch (1-based), best (its val macro-F1), epochs, last_gap (best minus the lowest of
    the last window + 1 epochs), late_gain (the best of the last 5 epochs minus the best before them:
    near 0 or below on a plateau, clearly positive while still climbing; a diagnostic beside the
    test, since epoch-to-epoch noise alone can fail it), converged (bool) and why (a few words).
    """
    if not curve:
        raise ReportError("an empty val curve: the run has no finished epoch")
    best_epoch = max(range(len(curve)), key=lambda i: (curve[i], -i)) + 1  # first epoch at the maximum
    best = curve[best_epoch - 1]
    tail = curve[-(window + 1) :]
    last_gap = best - min(tail)
    late_gain = max(curve[-LATE:]) - max(curve[:-LATE]) if len(curve) > LATE else float("nan")
    if len(curve) <= window:
        converged, why = False, f"only {len(curve)} epochs"
    elif best_epoch <= len(curve) - window:
        converged, why = True, f"peaked at epoch {best_epoch} of {len(curve)}"
    elif last_gap <= tol:
        converged, why = True, f"last {len(tail)} epochs within {last_gap:.4f} of the best"
    else:
        converged, why = (
            False,
            f"best at epoch {best_epoch} of {len(curve)}, last {len(tail)} epochs span {last_gap:.4f}",
        )
    return {
        "best_epoch": best_epoch,
        "best": best,
        "epochs": len(curve),
        "last_gap": last_gap,
        "late_gain": late_gain,
        "converged": converged,
        "why": why,
    }
