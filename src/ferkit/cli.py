"""`ferkit`: the command line. It lists the subcommands (ferkit.commands, one module each, one shape:
NAME, HELP, add_arguments(parser), run(args)) and turns a user's error into one line, exit status 2."""

from __future__ import annotations

import argparse
import sys

from ferkit.commands import (
    evaluate,
    export,
    figures,
    models,
    pack,
    posthoc,
    predict,
    prepare,
    quickstart,
    serve,
    summary,
    sweep,
    teacher_logits,
    train,
    tune,
)
from ferkit.commands.errors import known_errors, missing_extra
from ferkit.runtime.paths import NO_SPACE, no_space

COMMANDS = [
    prepare,
    quickstart,
    train,
    evaluate,
    posthoc,
    pack,
    export,
    predict,
    serve,
    summary,
    figures,
    sweep,
    tune,
    teacher_logits,
    models,
]


class Parser(argparse.ArgumentParser):
    """argparse with one-line errors, exit status 2, as every other error of ferkit's (`--help` shows the usage)."""

    def error(self, message: str) -> None:  # type: ignore[override]
        self.exit(2, f"{self.prog}: error: {message} (see {self.prog} --help)\n")


class Help(argparse.RawDescriptionHelpFormatter):
    """Each option's help ends with its default, taken from its one definition (unless the help states it)."""

    def _get_help_string(self, action: argparse.Action) -> str:
        help = action.help or ""
        if isinstance(action, argparse._StoreFalseAction):  # a --no-X switch: "default: True" reads as on
            return help + " (default: off)"
        if (
            action.default not in (None, False, argparse.SUPPRESS)
            and "default:" not in help
            and "(default" not in help
            and action.option_strings
        ):
            help += " (default: %(default)s)"
        return help


def version() -> str:
    from importlib.metadata import PackageNotFoundError
    from importlib.metadata import version as installed

    try:
        return installed("ferkit")
    except PackageNotFoundError:  # a checkout on PYTHONPATH, not installed
        return "unknown (not installed)"


def build_parser() -> argparse.ArgumentParser:
    parser = Parser(
        prog="ferkit",
        formatter_class=Help,
        description="Imbalance-aware facial expression recognition on FER-2013",
        epilog="`ferkit COMMAND --help` shows a command's options; docs/ has the details.",
    )
    parser.add_argument("--version", action="version", version=f"ferkit {version()}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    for command in COMMANDS:
        p = sub.add_parser(command.NAME, help=command.HELP, description=command.__doc__, formatter_class=Help)
        command.add_arguments(p)
        p.set_defaults(func=command.run)
    return parser


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else list(argv)
    try:
        parser = build_parser()
        args, extra = parser.parse_known_args(argv)
        if args.command is None:  # `ferkit` alone: what it can do
            parser.print_help()
            return 0
        if extra:  # named by its subcommand, as the subcommand's other errors are
            parser.exit(2, f"ferkit {args.command}: error: unrecognized arguments: {' '.join(extra)}\n")
    except SystemExit as e:  # a bad flag or value (one line, `Parser.error`), or --help
        return e.code if isinstance(e.code, int) else 2
    args.argv = argv  # `train --nproc` runs the same command under torchrun
    from ferkit.runtime.memory import keep_freed_memory

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
