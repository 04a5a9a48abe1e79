"""The `ferkit` subcommands, one module each, all of one shape:

    NAME = "prepare"                          # the subcommand
    HELP = "one line for `ferkit --help`"
    def add_arguments(p: argparse.ArgumentParser) -> None   # its options, each defined once
    def run(args: argparse.Namespace) -> int                # calls the library; returns the exit status

`ferkit.cli` only lists them. A module imports nothing heavy at its top (the parser is built for
every command, and the inference install has no torch): the library loads inside `run`. Defaults
that are decisions (a checkpoint's TTA, a preset's batch size) live in the library; an option
left out is None and the library resolves it. Options several commands share are in `options`.
"""
