"""`ferkit teacher-logits`: run a teacher once over every split and store its logits for `train --teacher FILE.npz`."""

from __future__ import annotations

import argparse
from pathlib import Path

from ferkit.commands.options import add_data_root, add_device
from ferkit.config import ConfigError
from ferkit.runtime.paths import check_output

NAME = "teacher-logits"
HELP = "run a teacher once over every split and store its logits (train --teacher FILE.npz)"


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("teacher", help="a checkpoint, or several separated by commas (an ensemble)")
    add_data_root(p, required=True)
    p.add_argument("--out", required=True, help="a new .npz file")
    p.add_argument("--teacher_space", choices=["prob", "logit"], default="prob", help="how an ensemble is averaged")
    add_device(p)


def run(args: argparse.Namespace) -> int:
    from ferkit.data import load_data
    from ferkit.runtime.device import pick_device
    from ferkit.strategies.distill import save_teacher_logits

    if Path(args.out).suffix != ".npz":
        raise ConfigError(f"--out {args.out} must be a new .npz file (it is never overwritten)")
    check_output(args.out, inputs=[args.data_root, *args.teacher.split(",")])
    save_teacher_logits(
        args.teacher, load_data(args.data_root), Path(args.out), args.teacher_space, pick_device(args.device)
    )
    print(f"teacher logits of every split written to {args.out} (use it as --teacher {args.out})")
    return 0
