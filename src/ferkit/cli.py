"""`ferkit` command line: each subcommand parses its arguments and calls library functions."""
from __future__ import annotations

import argparse
import sys
from dataclasses import fields
from pathlib import Path

from ferkit.config import PRESETS, Bound, ConfigError, RunConfig, check_resume, choices, make_config, read_config_file
from ferkit.paths import NO_SPACE, OutputError, check_output, no_space
from ferkit.tta import TTA_MODES

AT_LEAST_0, AT_LEAST_1 = Bound(0).arg(int), Bound(1).arg(int)  # ranges declared with their flags below


class Parser(argparse.ArgumentParser):
    """argparse with one-line errors, exit status 2, as every other error of ferkit's (`--help` shows the usage)."""

    def error(self, message: str) -> None:  # type: ignore[override]
        self.exit(2, f"{self.prog}: error: {message} (see {self.prog} --help)\n")


def add_train_args(p: argparse.ArgumentParser) -> None:
    """One flag per RunConfig field, built from the field: its name (the reference project's flags,
    verbatim), type, help and default, and the allowed values of a registry field. Every flag
    defaults to None (not given), so that defaults < preset < config file < flags resolve in
    `make_config`. Without torch (the inference install) the registries cannot load: the flags are
    the same, their help lists no values, and `ferkit train` says which extra to install."""
    import importlib.util

    registries = importlib.util.find_spec("torch") is not None
    for f in fields(RunConfig):
        kinds = f.type.replace(" ", "").split("|")
        allowed = choices(f.name) if registries else None
        help = f.metadata["help"]
        if allowed and f.name not in ("tta", "preset"):
            help += f": {' | '.join(allowed)}"
        if f.default is not None and f.default is not False:
            help += f" (default: {f.default})"
        extra = dict(f.metadata["flag"])
        if f.name in ("tta", "preset"):
            extra["choices"] = allowed  # argparse checks these: the short, fixed lists
        if kinds == ["bool"]:
            p.add_argument(f"--{f.name}", action="store_true", default=None, help=help)
        else:
            kind = int if "int" in kinds else float if "float" in kinds else str
            p.add_argument(f"--{f.name}", type=kind, help=help, **extra)
    p.add_argument("--config", help="a TOML, YAML or JSON file of the same fields (explicit flags win over it)")
    p.add_argument("--overwrite", "--force", dest="overwrite", action="store_true",
                   help="replace an existing run of the same --exp (otherwise it is refused: nothing is lost)")
    p.add_argument("--nproc", type=AT_LEAST_1, default=None,
                   help="train with N processes (DistributedDataParallel: gloo on CPU, nccl on CUDA) by starting "
                        "torchrun --standalone --nproc_per_node N; --batch_size stays the global batch")


def cmd_train(args: argparse.Namespace) -> int:
    from ferkit.train import fit

    if args.nproc is not None:
        return launch_torchrun(args.nproc, args.argv)
    explicit = {k: v for k, v in vars(args).items() if k not in ("func", "config", "command", "overwrite", "nproc", "argv")}
    file_values = read_config_file(args.config) if args.config else {}
    cfg = make_config(explicit, file_values)
    if cfg.epochs == 0:
        if not cfg.resume:
            raise ConfigError("--epochs 0 evaluates a checkpoint: give it with --resume CKPT")
        # The reference project's eval command names its output folder with --exp (runs/E5_eval/).
        from ferkit.evaluate import evaluate_checkpoint

        out = str(Path(cfg.runs_dir) / args.exp) if args.exp else None
        evaluate_checkpoint(cfg.resume, cfg.data_root, out, cfg.runs_dir, args.amp, args.tta, cfg.device, force=args.overwrite)
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
    run, teachers = Path(cfg.runs_dir) / cfg.exp, (getattr(cfg, "teacher", None) or "").split(",")
    unfinished = (run / "last.pt").is_file() and not (run / "metrics.json").is_file()
    hint = f" (or continue it with --resume {run / 'last.pt'})" if unfinished else ""
    check_output(run, inputs=[cfg.data_root, config_file, *teachers], kind="dir", files=["metrics.json", "last.pt",
                 "best.pt"], force=overwrite, what="the run folder", force_flag="--overwrite" + hint)


def launch_torchrun(nproc: int, argv: list[str]) -> int:
    """`ferkit train ... --nproc N`: the same command under `torchrun --standalone --nproc_per_node N`."""
    import os

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
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", f"--nproc_per_node={nproc}", "-m", "ferkit", *rest]
    sys.stdout.flush()
    sys.stderr.flush()
    os.execv(sys.executable, cmd)  # this process becomes torchrun: a signal to it reaches the workers
    return 0  # not reached


def cmd_eval(args: argparse.Namespace) -> int:
    from ferkit.evaluate import evaluate_checkpoint

    splits = ("val", "test") if args.split == "both" else (args.split,)
    evaluate_checkpoint(args.ckpt, args.data_root, args.out, args.runs_dir, args.amp, args.tta, args.device, splits,
                        args.force)
    return 0


def cmd_prepare(args: argparse.Namespace) -> int:
    from ferkit.data import format_counts, prepare

    data = prepare(args.source, args.out, skip_bad=args.skip_bad, force=args.force)
    print(format_counts(data))
    print(f"store written to {args.out}/ (use it as --data_root)")
    return 0


def cmd_quickstart(args: argparse.Namespace) -> int:
    """The main job: ingest the dataset and evaluate the shipped models on it; with --train, also train."""
    from ferkit.data import format_counts, load_data
    from ferkit.pretrained import evaluate_shipped, shipped_models
    from ferkit.train import fit

    out = Path(args.runs_dir) / "shipped"
    # Before any work: it rewrites its own evaluations in runs/shipped/ (a check job), never inside the data.
    check_output(out, inputs=[args.data], kind="dir", not_into=("best.pt", "last.pt"), force=True, what="--runs_dir")
    cfg = make_config({"data_root": args.data, "preset": args.preset, "amp": True, "epochs": args.epochs,
                       "batch_size": args.batch_size, "seed": args.seed, "runs_dir": args.runs_dir})
    if args.train:
        check_run(cfg, {}, overwrite=False)
    data = load_data(args.data)
    print(format_counts(data))
    if not shipped_models():
        raise ConfigError("no shipped model under pretrained/: this is not a full ferkit checkout")
    print(f"\nThe shipped models on test (PrivateTest) only, in float32 with their cards' TTA, as the cards were "
          f"measured (outputs in {out}/; a progress bar shows the time left):")
    rows = evaluate_shipped(data, out)
    if args.train:
        m = fit(cfg, data)
        run = Path(cfg.runs_dir) / cfg.exp
        print(f"\n{args.preset} on test: accuracy {m['accuracy']:.4f}, macro-F1 {m['macro_f1']:.4f}")
        print(f"outputs: {run}/metrics.json, predictions.csv, confusion_matrix.png, epochs.csv, best.pt "
              f"(TensorBoard: tensorboard --logdir {cfg.runs_dir})")
    return 0 if all(r["matches_card"] for r in rows) else 1


def cmd_posthoc(args: argparse.Namespace) -> int:
    """Tune a post-hoc adjustment on val and save the adjusted checkpoint."""
    from ferkit.posthoc import adjust_file, describe

    print(describe(adjust_file(args.ckpt, args.method, args.out, args.data_root, args.crt_epochs, args.force)))
    print(f"saved {args.out}; evaluate it on test with: ferkit eval {args.out}")
    return 0


def cmd_sweep(args: argparse.Namespace) -> int:
    if args.backend == "ray":
        from ferkit.sweep_ray import run_sweep_ray

        failed = run_sweep_ray(args.config, args.address, args.cpus_per_run, args.gpus_per_run, args.retries, args.dry_run)
    else:
        if args.address:
            raise ConfigError("--address is for --backend ray")
        from ferkit.sweep import run_sweep

        failed = run_sweep(args.config, args.jobs, args.dry_run)
    return 1 if failed else 0


def cmd_tune(args: argparse.Namespace) -> int:
    from ferkit.tune import run_tune

    run_tune(args.config)
    return 0


def cmd_pack(args: argparse.Namespace) -> int:
    from ferkit.pretrained import pack

    pack(args.ckpt, args.out, args.data_root, args.title, tta=args.tta, force=args.force)
    return 0


def cmd_teacher_logits(args: argparse.Namespace) -> int:
    """Run a teacher once over every split and store its logits for `train --teacher FILE.npz`."""
    from ferkit.data import load_data
    from ferkit.device import pick_device
    from ferkit.strategies.distill import save_teacher_logits

    if Path(args.out).suffix != ".npz":
        raise ConfigError(f"--out {args.out} must be a new .npz file (it is never overwritten)")
    check_output(args.out, inputs=[args.data_root, *args.teacher.split(",")])
    save_teacher_logits(args.teacher, load_data(args.data_root), Path(args.out), args.teacher_space, pick_device(args.device))
    print(f"teacher logits of every split written to {args.out} (use it as --teacher {args.out})")
    return 0


def cmd_models(args: argparse.Namespace) -> int:
    from ferkit.models import describe_models

    print(describe_models())
    return 0


def _lazy(module: str, add: str, run: str):
    """Subcommands whose code lives elsewhere: wire their own argument functions."""
    import importlib
    mod = importlib.import_module(module)
    return getattr(mod, add), getattr(mod, run)


def build_parser() -> argparse.ArgumentParser:
    parser = Parser(prog="ferkit", description="Imbalance-aware facial expression recognition on FER-2013")
    sub = parser.add_subparsers(dest="command", required=True)

    p = sub.add_parser("prepare", help="decode a FER-2013 download into a cached uint8 store and print its counts")
    p.add_argument("source", help="image-folder tree, its parent, a .zip, or fer2013.csv")
    p.add_argument("--out", required=True, help="folder to write the store to (never the source or inside it)")
    p.add_argument("--skip-bad", dest="skip_bad", action="store_true",
                   help="skip unreadable images and FIFOs, sockets and devices (they are listed) instead of stopping")
    p.add_argument("--force", action="store_true", help="replace a store already in --out")
    p.set_defaults(func=cmd_prepare)

    p = sub.add_parser("train", help="train a strategy, keep the best checkpoint on val, evaluate it on test")
    add_train_args(p)
    p.set_defaults(func=cmd_train)

    p = sub.add_parser("eval", help="evaluate a checkpoint (ferkit or reference project) on test")
    p.add_argument("ckpt", help="best.pt, last.pt, pretrained/*.pt or a reference checkpoint")
    p.add_argument("--data_root", help="the dataset (default: the one recorded in the checkpoint)")
    p.add_argument("--split", default="test", choices=["test", "val", "both"])
    p.add_argument("--out", help="output folder (default runs/eval-<run>-<ckpt>)")
    p.add_argument("--runs_dir", default="runs")
    p.add_argument("--amp", action=argparse.BooleanOptionalAction, default=None,
                   help="default: a shipped model as its card (float32), a run as it trained")
    p.add_argument("--tta", nargs="?", const="flip", choices=TTA_MODES,
                   help="flip (the bare flag) or crops (5 crops x flip); default: as the run was")
    p.add_argument("--no-tta", dest="tta", action="store_const", const="none", help="no test-time augmentation")
    p.add_argument("--device", default="auto")
    p.add_argument("--force", action="store_true", help="replace an earlier evaluation in --out")
    p.set_defaults(func=cmd_eval)

    p = sub.add_parser("quickstart", help="the main job: prepare the data, evaluate the shipped models on test")
    p.add_argument("data", help="FER-2013 zip, folder or fer2013.csv")
    p.add_argument("--train", action="store_true", help="also train --preset and evaluate it on test")
    p.add_argument("--preset", default="E5", choices=sorted(PRESETS))
    p.add_argument("--epochs", type=AT_LEAST_1, default=30)
    p.add_argument("--batch_size", type=AT_LEAST_1, default=64)
    p.add_argument("--seed", type=int, default=42)
    p.add_argument("--runs_dir", default="runs")
    p.add_argument("--device", default="auto", help="auto (CUDA when present), cpu or cuda (default auto)")
    p.set_defaults(func=cmd_quickstart)

    p = sub.add_parser("posthoc", help="tune a post-hoc adjustment (la, taunorm, crt) or the temperature on val, save it with the model")
    p.add_argument("ckpt")
    p.add_argument("--method", required=True, help="a key of ferkit.posthoc.METHODS: la (logit adjustment), taunorm "
                   "(tau-normalisation), crt (classifier re-training, class-balanced), temperature (calibration); each fitted on val")
    p.add_argument("--data_root", help="the dataset (default: the one recorded in the checkpoint)")
    p.add_argument("--out", required=True, help="path of the adjusted checkpoint (never the checkpoint given)")
    p.add_argument("--force", action="store_true", help="replace an existing --out")
    p.add_argument("--crt_epochs", type=AT_LEAST_1, default=10, help="crt: epochs of classifier re-training (10)")
    p.set_defaults(func=cmd_posthoc)

    p = sub.add_parser("sweep", help="run a grid of strategies x seeds from a TOML/YAML file (restartable)")
    p.add_argument("config", help="sweep file (see ferkit/sweep.py)")
    p.add_argument("--jobs", type=AT_LEAST_1, default=1, help="runs at a time (threads are split between them)")
    p.add_argument("--dry-run", dest="dry_run", action="store_true", help="only list what would run")
    p.add_argument("--backend", choices=["local", "ray"], default="local",
                   help="local: --jobs processes on this machine; ray: one Ray task per run (pip install 'ferkit[ray]')")
    p.add_argument("--address", help="ray: a running cluster's address (HEAD:6379); default: a local Ray for the sweep")
    p.add_argument("--cpus-per-run", type=AT_LEAST_1, default=1, help="ray: CPUs each run declares (and trains with) (1)")
    p.add_argument("--gpus-per-run", type=Bound(0).arg(float), default=0, help="ray: GPUs each run declares (0)")
    p.add_argument("--retries", type=AT_LEAST_0, default=2, help="ray: times a run whose worker died is retried, resuming (2)")
    p.set_defaults(func=cmd_sweep)

    p = sub.add_parser("tune", help="search hyper-parameters with Optuna on val macro-F1 (pip install 'ferkit[tune]')")
    p.add_argument("config", help="tune file (see ferkit/tune.py): trials, out, [base], [search]")
    p.set_defaults(func=cmd_tune)

    p = sub.add_parser("pack", help="ship a checkpoint: float16 weights, model card, metrics evaluated from the file")
    p.add_argument("ckpt")
    p.add_argument("--out", required=True, help="e.g. pretrained/ferkit-recommended.pt (never the checkpoint given)")
    p.add_argument("--force", action="store_true", help="replace an earlier packed model, its card and evaluation")
    p.add_argument("--data_root", help="the dataset (default: the one recorded in the checkpoint)")
    p.add_argument("--title", help="model card title")
    p.add_argument("--tta", choices=["auto", *TTA_MODES],
                   help="test-time augmentation of the shipped model; auto = the best on val (default: as the run was)")
    p.set_defaults(func=cmd_pack)

    p = sub.add_parser("teacher-logits", help="run a teacher once over every split and store its logits (train --teacher FILE.npz)")
    p.add_argument("teacher", help="a checkpoint, or several separated by commas (an ensemble)")
    p.add_argument("--data_root", required=True, help="the dataset the student will train on")
    p.add_argument("--out", required=True, help="a new .npz file")
    p.add_argument("--teacher_space", choices=["prob", "logit"], default="prob", help="how an ensemble is averaged (prob)")
    p.add_argument("--device", default="auto", help="auto (CUDA when present), cpu or cuda (default auto)")
    p.set_defaults(func=cmd_teacher_logits)

    p = sub.add_parser("models", help="list the architectures with parameters and multiply-adds")
    p.set_defaults(func=cmd_models)

    for name, module, stem, help in [
        ("summary", "ferkit.report.commands", "summary", "mean/std over seeds, intervals and paired tests of runs"),
        ("figures", "ferkit.report.commands", "figures", "confusion matrices and per-class F1 of several runs"),
        ("report", "ferkit.report.commands", "report", "rewrite (or --check) the tables README.md and docs/ quote from result files"),
        ("predict", "ferkit.infer.commands", "predict", "detect faces in photos/videos and predict their expression"),
        ("export", "ferkit.infer.commands", "export", "export a checkpoint to ONNX"),
        ("serve", "ferkit.infer.commands", "serve", "web service and page for predictions"),
    ]:
        add, run = _lazy(module, f"add_{stem}_args", f"run_{stem}")  # these modules import nothing heavy
        p = sub.add_parser(name, help=help)
        add(p)
        p.set_defaults(func=run)
    return parser


# Where each optional dependency comes from: a command that needs one this install lacks says which
# extra to install (the inference install, `pip install 'ferkit[infer]'`, has no torch).
EXTRA_OF = {"torch": "train", "sklearn": "train", "matplotlib": "train", "tensorboard": "train", "onnx": "train",
            "fastapi": "infer", "uvicorn": "infer", "multipart": "infer", "starlette": "infer",
            "ray": "ray", "optuna": "tune"}


def known_errors() -> tuple[type[Exception], ...]:
    """User-facing error types: printed as one line, exit status 2, no traceback. Those of the
    modules that need torch or matplotlib count only where they are installed (elsewhere nothing
    raises them)."""
    import importlib

    from ferkit.data import DataError
    from ferkit.data.images import ImageError

    errors = [ConfigError, DataError, ImageError, OutputError, FileNotFoundError]
    for module, name in (("ferkit.device", "DeviceError"), ("ferkit.models", "CheckpointError"), ("ferkit.infer.onnx", "ModelError"),
                         ("ferkit.report.commands", "ReportError"), ("ferkit.strategies.distill", "TeacherError")):
        try:
            errors.append(getattr(importlib.import_module(module), name))
        except ModuleNotFoundError as e:
            if (e.name or "").split(".")[0] not in EXTRA_OF:
                raise
    return tuple(errors)


def missing_extra(e: ModuleNotFoundError) -> str | None:
    """The one-line hint for an optional dependency that is not installed; None for anything else."""
    import importlib.util

    package = (e.name or "").split(".")[0]
    if package not in EXTRA_OF or importlib.util.find_spec(package) is not None:  # installed: another problem
        return None
    return f"this needs {package}, which this install lacks: pip install 'ferkit[{EXTRA_OF[package]}]'"


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else list(argv)
    try:
        parser = build_parser()
        args, extra = parser.parse_known_args(argv)
        if extra:  # named by its subcommand, as the subcommand's other errors are
            parser.exit(2, f"ferkit {args.command}: error: unrecognized arguments: {' '.join(extra)}\n")
    except SystemExit as e:  # a bad flag or value (one line, `Parser.error`), or --help
        return e.code if isinstance(e.code, int) else 2
    args.argv = argv  # `train --nproc` runs the same command under torchrun
    from ferkit.memory import keep_freed_memory

    keep_freed_memory()  # every subcommand moves activation-sized tensors: see its docstring
    try:
        return int(args.func(args) or 0)
    except known_errors() as e:
        print(f"ferkit {args.command}: error: {e}", file=sys.stderr)
        return 2
    except ModuleNotFoundError as e:
        hint = missing_extra(e)
        if hint is None:
            raise
        print(f"ferkit {args.command}: error: {hint}", file=sys.stderr)
        return 2
    except OSError as e:  # a full disk met by a write that is not ferkit's own (a log, TensorBoard's events)
        if e.errno not in NO_SPACE:
            raise
        where = e.filename or getattr(args, "out", None) or getattr(args, "runs_dir", None) or "."
        print(f"ferkit {args.command}: error: {no_space(where)}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("interrupted: resume with --resume runs/<exp>/last.pt", file=sys.stderr)
        return 130
