"""Rewrite (or --check) the tables that README.md, docs/*.md and the model cards quote from result files.

    python tools/report.py            # rewrite every `<!-- report:NAME -->` block in place
    python tools/report.py --check    # change nothing; exit 1 naming each block that differs

A block is `doc_tables.BLOCKS[NAME]` rendered from the files it names (model cards, run folders,
summaries, benchmark JSON). The tests run --check, so a quoted table cannot drift from its results
and no test parses prose. A bad --root or a missing result file is one line, exit 2.
"""
from __future__ import annotations

import argparse
import re
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))  # doc_tables, bench_tables: this folder's modules

from doc_tables import BLOCKS  # noqa: E402

from ferkit.report.stats import ReportError  # noqa: E402
from ferkit.runtime.paths import OutputError, atomic_text  # noqa: E402

_BLOCK = re.compile(r"(<!-- report:(?P<name>[\w-]+) -->\n)(?P<body>.*?)(<!-- /report:(?P=name) -->)", re.DOTALL)


def render_block(name: str, root: Path) -> str:
    if name not in BLOCKS:
        raise ReportError(f"unknown report block {name!r}: choose one of {', '.join(BLOCKS)} (tools/doc_tables.py)")
    return BLOCKS[name](root)


def update_text(text: str, root: Path) -> tuple[str, list[str]]:
    """The text with every block re-rendered, and the names of the blocks that changed."""
    changed = []

    def replace(m: re.Match) -> str:
        body = render_block(m["name"], root)
        if body != m["body"]:
            changed.append(m["name"])
        return m.group(1) + body + m.group(4)

    return _BLOCK.sub(replace, text), changed


def doc_files(root: Path) -> list[Path]:
    """README.md, docs/*.md and the model cards (pretrained/*.md): the files whose blocks tools/report.py keeps."""
    return [p for p in [root / "README.md", *sorted((root / "docs").glob("*.md")), *sorted((root / "pretrained").glob("*.md"))]
            if p.is_file()]


def run_report(root: Path, check: bool = False, log=print) -> int:
    """Re-render every block of every doc file (or, with `check`, only compare); returns the exit code."""
    stale = []
    for path in doc_files(root):
        text = path.read_text(encoding="utf-8")
        new, changed = update_text(text, root)
        n = len(_BLOCK.findall(text))
        for name in changed:
            stale.append(f"{path.relative_to(root)}: {name}")
        if changed and not check:
            atomic_text(path, new)  # a doc is replaced whole (ferkit.runtime.paths), never left half-written
        if n:
            log(f"{path.relative_to(root)}: {n} block(s), {len(changed)} {'differ' if check else 'rewritten'}")
    if check and stale:
        log("out of date with their result files: " + "; ".join(stale) + " (run `python tools/report.py` to rewrite them)")
        return 1
    return 0


def main(argv: list[str] | None = None) -> int:
    """`python tools/report.py [--check] [--root DIR]`; returns the exit code (2: a one-line error)."""
    p = argparse.ArgumentParser(prog="tools/report.py", description=__doc__.split("\n")[0])
    p.add_argument("--check", action="store_true", help="change nothing; exit 1 if a table differs from its result files")
    p.add_argument("--root", type=Path, default=Path(__file__).resolve().parents[1],
                   help="the repository root (default: this script's repository)")
    args = p.parse_args(argv)
    try:
        if not (args.root / "README.md").is_file():
            raise ReportError(f"no README.md in {args.root}: pass the repository root as --root")
        return run_report(args.root, check=args.check)
    except (ReportError, OutputError) as e:
        print(f"tools/report.py: error: {e}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
