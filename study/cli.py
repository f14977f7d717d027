"""The `python -m study` command line: one subcommand per job (trial, sweep, report, ui).

Each subcommand lives in its own module and is imported only when it is the one asked for,
so `ui` and `report` start without loading torch or Ray. A user's mistake (a `UserError`, which
every check of a user's input raises) is one line on stderr and exit status 2; every other error,
a ValueError raised inside a library included, keeps its traceback.
"""

from __future__ import annotations

import argparse
import importlib
import logging
import sys

from trainables.errors import UserError

COMMANDS = ("trial", "sweep", "plan", "report", "ui", "spaces")
USER_ERROR_EXIT = 2


def build_parser(only: str | None = None) -> argparse.ArgumentParser:
    """The parser with every subcommand, or with just `only` (faster start-up)."""
    parser = argparse.ArgumentParser(
        prog="python -m study", description="l2l-study: trial, sweep, plan, report, ui"
    )
    parser.add_argument("-v", "--verbose", action="store_true", help="debug logging")
    subparsers = parser.add_subparsers(dest="command", required=True)
    for name in COMMANDS:
        if only is None or name == only:
            importlib.import_module(f"study.{name}").add_parser(subparsers)
    return parser


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    chosen = next((arg for arg in argv if not arg.startswith("-")), None)
    parser = build_parser(chosen if chosen in COMMANDS else None)
    args = parser.parse_args(argv)
    logging.basicConfig(
        level=logging.DEBUG if args.verbose else logging.WARNING,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
    )
    try:
        return args.func(args)
    except UserError as err:
        print(f"error: {err}", file=sys.stderr)
        return USER_ERROR_EXIT
