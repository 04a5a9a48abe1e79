"""`ferkit eval`: evaluate a checkpoint (ferkit's or the reference project's) on test, val or both."""

from __future__ import annotations

import argparse

from ferkit.commands.options import add_data_root, add_device, add_force, add_tta

NAME = "eval"
HELP = "evaluate a checkpoint (ferkit or reference project) on test"


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("ckpt", help="best.pt, last.pt, pretrained/*.pt or a reference checkpoint")
    add_data_root(p)
    p.add_argument("--split", default="test", choices=["test", "val", "both"], help="the split(s) to evaluate")
    p.add_argument("--out", help="output folder (default: <runs_dir>/eval-<run>-<ckpt>)")
    p.add_argument("--runs_dir", default="runs", help="where the default --out folder goes")
    p.add_argument(
        "--amp",
        action=argparse.BooleanOptionalAction,
        default=None,
        help="bfloat16 autocast; default: a shipped model as its card (float32), a run as it trained",
    )
    add_tta(p)
    p.add_argument("--no-tta", dest="tta", action="store_const", const="none", help="one view: the same as --tta none")
    add_device(p)
    add_force(p, "an earlier evaluation in --out")
    p.add_argument("--quiet", action="store_true", help="no progress bar")


def run(args: argparse.Namespace) -> int:
    from ferkit.evaluate import evaluate_checkpoint

    splits = ("val", "test") if args.split == "both" else (args.split,)
    evaluate_checkpoint(
        args.ckpt,
        args.data_root,
        args.out,
        args.runs_dir,
        args.amp,
        args.tta,
        args.device,
        splits,
        args.force,
        progress=not args.quiet,
    )
    return 0
