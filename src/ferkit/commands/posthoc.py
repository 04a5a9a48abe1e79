"""`ferkit posthoc`: fit a post-hoc adjustment or the temperature on val, and save it with the model."""

from __future__ import annotations

import argparse

from ferkit.commands.options import AT_LEAST_1, add_data_root, add_force

NAME = "posthoc"
HELP = "tune a post-hoc adjustment (la, taunorm, crt) or the temperature on val, save it with the model"


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("ckpt", help="the checkpoint to adjust (it is never written)")
    p.add_argument(
        "--method",
        required=True,
        help="a key of ferkit.posthoc.METHODS: la (logit adjustment), taunorm "
        "(tau-normalisation), crt (classifier re-training, class-balanced), temperature (calibration); each fitted on val",
    )
    add_data_root(p)
    p.add_argument("--out", required=True, help="path of the adjusted checkpoint (never the checkpoint given)")
    add_force(p, "an existing --out")
    p.add_argument("--crt_epochs", type=AT_LEAST_1, default=10, help="crt: epochs of classifier re-training")


def run(args: argparse.Namespace) -> int:
    from ferkit.posthoc import adjust_file, describe

    print(describe(adjust_file(args.ckpt, args.method, args.out, args.data_root, args.crt_epochs, args.force)))
    print(f"saved {args.out}; evaluate it on test with: ferkit eval {args.out}")
    return 0
