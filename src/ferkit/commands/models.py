"""`ferkit models`: the registered architectures with their parameters and multiply-adds."""

from __future__ import annotations

import argparse

NAME = "models"
HELP = "list the architectures with parameters and multiply-adds"


def add_arguments(p: argparse.ArgumentParser) -> None:
    """No options."""


def run(args: argparse.Namespace) -> int:
    from ferkit.models import describe_models

    print(describe_models())
    return 0
