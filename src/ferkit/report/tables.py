"""Summary tables: CSV, Markdown and LaTeX writers of the rows `ferkit summary` computes."""

from __future__ import annotations

import csv
import re
from collections.abc import Sequence
from pathlib import Path

from ferkit.report.convergence import RULE
from ferkit.runtime.paths import atomic_file


def write_csv(path: Path, rows: list[dict]) -> None:
    """Rows to CSV, columns in first-seen order; a field a row lacks is left empty."""
    columns = list(dict.fromkeys(k for r in rows for k in r))
    with atomic_file(path, "w", newline="") as f:
        w = csv.DictWriter(f, fieldnames=columns, restval="")
        w.writeheader()
        w.writerows({k: f"{v:.6g}" if isinstance(v, float) else v for k, v in r.items()} for r in rows)


def _p(value: float) -> str:
    return "<0.001" if value < 0.001 else f"{value:.3f}"


def summary_table(
    rows: list[dict], class_names: list[str], baseline: str | None, n_boot: int, majority: Sequence[str] = ()
) -> tuple[list[str], list[list[str]], str]:
    """(headers, cells, caption) shared by the Markdown and LaTeX writers. `majority`: classes whose
    recall gets a column (the cost of a re-balancing strategy to the largest classes)."""
    with_val = all("val_macro_f1_mean" in r for r in rows)
    with_recall = [c for c in majority if all(f"recall_{c}_mean" in r for r in rows)]
    with_conv = any("n_checked" in r for r in rows)
    headers = (
        ["group", "seeds"]
        + (["val macro-F1"] if with_val else [])
        + ["macro-F1", "macro-F1 95% CI (per-seed avg)", "accuracy", "accuracy 95% CI (per-seed avg)"]
    )
    if baseline is not None:
        headers += [f"Δ macro-F1 vs {baseline} [95% CI]", "Δ seed std", "McNemar p (max)"]
    headers += [f"recall {c}" for c in with_recall] + (["converged"] if with_conv else [])
    headers += [f"F1 {c}" for c in class_names]
    cells = []
    for r in rows:
        line = (
            [r["group"], str(r["n_seeds"])]
            + ([_pm(r, "val_macro_f1")] if with_val else [])
            + [
                _pm(r, "macro_f1"),
                f"[{r['macro_f1_ci95_low']:.3f}, {r['macro_f1_ci95_high']:.3f}]",
                _pm(r, "accuracy"),
                f"[{r['accuracy_ci95_low']:.3f}, {r['accuracy_ci95_high']:.3f}]",
            ]
        )
        if baseline is not None:
            if "n_pairs" in r:
                line += [
                    f"{r['macro_f1_diff_mean']:+.3f} [{r['diff_ci95_low']:+.3f}, {r['diff_ci95_high']:+.3f}]",
                    f"{r['diff_seed_std']:.3f}",
                    _p(r["mcnemar_p_max"]),
                ]
            else:
                line += ["baseline", "-", "-"]
        line += [_pm(r, f"recall_{c}") for c in with_recall]
        if with_conv:
            line += [f"{r['n_converged']}/{r['n_checked']}" if "n_checked" in r else "-"]
        line += [_pm(r, f"f1_{c}") for c in class_names]
        cells.append(line)
    caption = (
        ("val macro-F1: PublicTest, the split a strategy is chosen on; every other column: " if with_val else "")
        + f"Test set. Mean ± std over seeds (sample std; 0 for one seed). 95% CI: percentile bootstrap "
        f"over test images ({n_boot} resamples), computed per seed, then averaged over seeds."
    )
    if baseline is not None:
        caption += (
            f" Δ: macro-F1 minus {baseline}'s, averaged over seed pairs; its CI is a two-level paired bootstrap "
            "(test images and seed pairs drawn with replacement, both groups scored on the same images); Δ seed std: the std of "
            "the per-seed differences (seed noise); McNemar p: largest exact p-value over the pairs (paired.csv)."
        )
    if with_conv:
        caption += f" converged: runs that pass the convergence test ({RULE}; convergence.csv)."
    return headers, cells, caption


def _pm(row: dict, name: str) -> str:
    """`mean ± std` of a column pair."""
    return f"{row[f'{name}_mean']:.3f} ± {row[f'{name}_std']:.3f}"


def markdown_table(headers: list[str], cells: list[list[str]]) -> str:
    """A Markdown table: pipes inside cells escaped, an empty cell written "| |"."""
    lines = ["| " + " | ".join(headers) + " |", "|" + "|".join("---" for _ in headers) + "|"]
    rows = ["| " + " | ".join(c.replace("|", "\\|") for c in line) + " |" for line in cells]
    return "\n".join(lines + [re.sub(r"\|  (?=\|)", "| ", row) for row in rows]) + "\n"


def to_markdown(headers: list[str], cells: list[list[str]], caption: str) -> str:
    """A Markdown table followed by its caption."""
    return markdown_table(headers, cells) + f"\n{caption}\n"


_TEX_ESCAPES = {
    "\\": r"\textbackslash{}",
    "&": r"\&",
    "%": r"\%",
    "$": r"\$",
    "#": r"\#",
    "_": r"\_",
    "{": r"\{",
    "}": r"\}",
    "~": r"\textasciitilde{}",
    "^": r"\textasciicircum{}",
    "<": r"$<$",
    ">": r"$>$",
    "±": r"$\pm$",
    "Δ": r"$\Delta$",
}


def tex_escape(text: str) -> str:
    """Text safe inside a LaTeX table cell (one pass, so replacements are never escaped twice)."""
    return "".join(_TEX_ESCAPES.get(ch, ch) for ch in text)


def to_latex(headers: list[str], cells: list[list[str]], caption: str) -> str:
    """A booktabs tabular (needs \\usepackage{booktabs}); the caption goes in a comment above it."""
    lines = [
        f"% {tex_escape(caption)}",
        r"\begin{tabular}{l" + "r" * (len(headers) - 1) + "}",
        r"\toprule",
        " & ".join(tex_escape(h) for h in headers) + r" \\",
        r"\midrule",
    ]
    lines += [" & ".join(tex_escape(c) for c in line) + r" \\" for line in cells]
    lines += [r"\bottomrule", r"\end{tabular}"]
    return "\n".join(lines) + "\n"
