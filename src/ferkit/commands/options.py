"""Options shared by several subcommands, each defined once here (a command adds the ones it takes)."""

from __future__ import annotations

import argparse

from ferkit.config import Bound
from ferkit.tta import TTA_MODES

# Each option's range, declared with the option: argparse refuses a value outside it in one line.
AT_LEAST_0, AT_LEAST_1, FRACTION = Bound(0).arg(int), Bound(1).arg(int), Bound(0, 1).arg(float)


def add_tta(
    p: argparse.ArgumentParser, auto: bool = False, left_out: str = "the model's own: the TTA its checkpoint records"
) -> None:
    """--tta, the one definition (train, eval, pack, predict, serve). Left out it is None and the library
    resolves it: `left_out` says to what (a shipped model records its card's headline TTA)."""
    modes = [*TTA_MODES, "auto"] if auto else list(TTA_MODES)
    p.add_argument(
        "--tta",
        nargs="?",
        const="flip",
        choices=modes,
        default=None,
        help="test-time augmentation: none (one view), flip (the bare flag: the face and its mirror), "
        "crops (5 crops x flip, 10x the compute)"
        + ("; auto: the best of them on val" if auto else "")
        + f" (default: {left_out})",
    )


def add_device(p: argparse.ArgumentParser, default: str = "auto") -> None:
    """--device: where the model runs."""
    p.add_argument("--device", default=default, help="auto (CUDA when present), cpu or cuda")


def add_data_root(p: argparse.ArgumentParser, required: bool = False) -> None:
    """--data_root of a command that reads a checkpoint: by default the dataset the checkpoint records."""
    p.add_argument(
        "--data_root",
        required=required,
        help="the dataset" + ("" if required else " (default: the one recorded in the checkpoint)"),
    )


def add_force(p: argparse.ArgumentParser, what: str) -> None:
    """--force: the one way to let a command replace an earlier output (nothing is replaced without it)."""
    p.add_argument("--force", action="store_true", help=f"replace {what}")
