"""`ferkit prepare`: decode a FER-2013 download into a cached uint8 store and print its counts."""

from __future__ import annotations

import argparse

from ferkit.commands.options import add_force

NAME = "prepare"
HELP = "decode a FER-2013 download into a cached uint8 store and print its counts"


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("source", help="image-folder tree, its parent, a .zip, or fer2013.csv")
    p.add_argument("--out", required=True, help="folder to write the store to (never the source or inside it)")
    p.add_argument(
        "--skip-bad",
        dest="skip_bad",
        action="store_true",
        help="skip unreadable images and FIFOs, sockets and devices (they are listed) instead of stopping",
    )
    add_force(p, "a store already in --out")


def run(args: argparse.Namespace) -> int:
    from ferkit.data import format_counts, prepare

    data = prepare(args.source, args.out, skip_bad=args.skip_bad, force=args.force)
    print(format_counts(data))
    print(f"store written to {args.out}/ (use it as --data_root)")
    return 0
