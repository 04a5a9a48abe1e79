"""`ferkit pack`: ship a checkpoint: float16 weights, its model card, and metrics evaluated from the packed file
(headlined at the TTA it records, by default one view: what predict, serve and Predictor run)."""

from __future__ import annotations

import argparse

from ferkit.commands.options import add_data_root, add_force, add_tta

NAME = "pack"
HELP = "ship a checkpoint: float16 weights, model card, metrics evaluated from the file"


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("ckpt", help="the checkpoint to ship (it is never written)")
    p.add_argument("--out", required=True, help="e.g. pretrained/ferkit-recommended.pt (never the checkpoint given)")
    add_force(p, "an earlier packed model, its card and evaluation")
    add_data_root(p)
    p.add_argument("--title", help="model card title (default: made from the recipe)")
    add_tta(
        p,
        auto=True,
        left_out="none: the one view that predict, serve and Predictor then run by default; "
        "the card headlines the TTA recorded and gives the others as a second table",
    )
    p.set_defaults(tta="none")


def run(args: argparse.Namespace) -> int:
    from ferkit.pretrained import pack

    pack(args.ckpt, args.out, args.data_root, args.title, tta=args.tta, force=args.force)
    return 0
