"""`ferkit train`: one flag per RunConfig field; train, keep the best checkpoint on val, test once."""

from __future__ import annotations

import argparse
import os
import sys
from dataclasses import fields
from pathlib import Path
from typing import NoReturn

from ferkit.commands.options import AT_LEAST_1, add_tta
from ferkit.config import ConfigError, RunConfig, check_resume, choices, make_config, read_config_file
from ferkit.runtime.paths import check_output

NAME = "train"
HELP = "train a strategy, keep the best checkpoint on val, evaluate it on test"
NOT_CONFIG = ("func", "config", "command", "overwrite", "nproc", "argv")  # parsed flags that are no RunConfig field


def add_arguments(p: argparse.ArgumentParser) -> None:
    """One flag per RunConfig field, built from the field: its name (the reference project's flags,
    verbatim), type, help and default, and the allowed values of a registry field. Every flag
    defaults to None (not given), so that defaults < preset < config file < flags resolve in
    `make_config`. Without torch (the inference install) the registries cannot load: the flags are
    the same, their help lists no values, and `ferkit train` says which extra to install."""
    import importlib.util

    registries = importlib.util.find_spec("torch") is not None
    for f in fields(RunConfig):
        if f.name == "tta":
            add_tta(p, left_out=str(f.default))  # as every field's flag: a preset may set it
            continue
        kinds = f.type.replace(" ", "").split("|")
        allowed = choices(f.name) if registries else None
        help = f.metadata["help"]
        if allowed and f.name != "preset":
            help += f": {' | '.join(allowed)}"
        if f.default is not None and f.default is not False:
            help += f" (default: {f.default})"
        extra = dict(f.metadata["flag"])
        if f.name == "preset":
            extra["choices"] = allowed  # argparse checks it: a short, fixed list
        if kinds == ["bool"]:
            p.add_argument(f"--{f.name}", action="store_true", default=None, help=help)
        else:
            kind = int if "int" in kinds else float if "float" in kinds else str
            p.add_argument(f"--{f.name}", type=kind, help=help, **extra)
    p.add_argument("--config", help="a TOML, YAML or JSON file of the same fields (explicit flags win over it)")
    p.add_argument(
        "--overwrite",
        "--force",
        dest="overwrite",
        action="store_true",
        help="replace an existing run of the same --exp (otherwise it is refused: nothing is lost)",
    )
    p.add_argument(
        "--nproc",
        type=AT_LEAST_1,
        default=None,
        help="train with N processes (DistributedDataParallel: gloo on CPU, nccl on CUDA) by starting "
        "torchrun --standalone --nproc_per_node N; --batch_size stays the global batch",
    )


def run(args: argparse.Namespace) -> int:
    """Train the configuration the flags, the config file and the preset give (or, with --epochs 0, evaluate --resume)."""
    from ferkit.train import fit

    if args.nproc is not None:
        return launch_torchrun(args.nproc, args.argv)
    explicit = {k: v for k, v in vars(args).items() if k not in NOT_CONFIG}
    file_values = read_config_file(args.config) if args.config else {}
    cfg = make_config(explicit, file_values)
    if cfg.epochs == 0:
        if not cfg.resume:
            raise ConfigError("--epochs 0 evaluates a checkpoint: give it with --resume CKPT")
        # The reference project's eval command names its output folder with --exp (runs/E5_eval/).
        from ferkit.evaluate import evaluate_checkpoint

        out = str(Path(cfg.runs_dir) / args.exp) if args.exp else None
        evaluate_checkpoint(
            cfg.resume, cfg.data_root, out, cfg.runs_dir, args.amp, args.tta, cfg.device, force=args.overwrite
        )
        return 0
    check_run(cfg, file_values | {k: v for k, v in explicit.items() if v is not None}, args.overwrite, args.config)
    fit(cfg, overwrite=args.overwrite)
    return 0


def check_run(cfg: RunConfig, given: dict, overwrite: bool, config_file: str | None = None) -> None:
    """Before any work: a resumed run takes no setting that conflicts with its checkpoint; a new run's folder
    is not inside an input nor replaces a run without --overwrite (`check_output`; fit checks it again)."""
    if cfg.resume:
        from ferkit.models import read_checkpoint

        return check_resume(given, read_checkpoint(cfg.resume).get("config", {}), cfg.resume)
    run, teachers = (
        Path(cfg.runs_dir) / (cfg.exp or cfg.default_exp()),
        (getattr(cfg, "teacher", None) or "").split(","),
    )
    unfinished = (run / "last.pt").is_file() and not (run / "metrics.json").is_file()
    hint = f" (or continue it with --resume {run / 'last.pt'})" if unfinished else ""
    check_output(
        run,
        inputs=[cfg.data_root, config_file, *teachers],
        kind="dir",
        files=["metrics.json", "last.pt", "best.pt"],
        force=overwrite,
        what="the run folder",
        force_flag="--overwrite" + hint,
    )


def launch_torchrun(nproc: int, argv: list[str]) -> NoReturn:
    """`ferkit train ... --nproc N`: the same command under `torchrun --standalone --nproc_per_node N`."""
    if "WORLD_SIZE" in os.environ:
        raise ConfigError("--nproc inside torchrun: give one or the other")
    rest, skip = [], False
    for a in argv:  # the command without --nproc N (or --nproc=N)
        if skip:
            skip = False
        elif a == "--nproc":
            skip = True
        elif not a.startswith("--nproc="):
            rest.append(a)
    cmd = [
        sys.executable,
        "-m",
        "torch.distributed.run",
        "--standalone",
        f"--nproc_per_node={nproc}",
        "-m",
        "ferkit",
        *rest,
    ]
    sys.stdout.flush()
    sys.stderr.flush()
    os.execv(sys.executable, cmd)  # this process becomes torchrun: a signal to it reaches the workers
