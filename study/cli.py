"""The `python -m study` command line: one subcommand per job (trial, sweep, report, ui).

Each subcommand lives in its own module and is imported only when it is the one asked for,
so `ui` and `report` start without loading torch or Ray. A user's mistake (`UserError`, or a
ValueError raised by this project's own checks) is one line on stderr and exit status 2; every
other error, including those raised inside libraries, keeps its traceback.
"""

from __future__ import annotations

import argparse
import importlib
import logging
import sys
import traceback
from pathlib import Path

from trainables.errors import UserError

COMMANDS = ("trial", "sweep", "report", "ui", "spaces")
USER_ERROR_EXIT = 2
PROJECT_PACKAGES = tuple(
    str(Path(__file__).resolve().parents[1] / name)
    for name in ("study", "trainables", "search_spaces")
)


def build_parser(only: str | None = None) -> argparse.ArgumentParser:
    """The parser with every subcommand, or with just `only` (faster start-up)."""
    parser = argparse.ArgumentParser(
        prog="python -m study", description="l2l-study: trial, sweep, report, ui"
    )
    parser.add_argument("-v", "--verbose", action="store_true", help="debug logging")
    subparsers = parser.add_subparsers(dest="command", required=True)
    for name in COMMANDS:
        if only is None or name == only:
            importlib.import_module(f"study.{name}").add_parser(subparsers)
    return parser


def is_user_error(err: BaseException) -> bool:
    """A UserError, or a plain ValueError raised by one of this project's own checks (not inside a library)."""
    if isinstance(err, UserError):
        return True
    if type(err) is not ValueError or err.__traceback__ is None:
        return False
    innermost = traceback.extract_tb(err.__traceback__)[-1].filename
    return str(Path(innermost).resolve()).startswith(PROJECT_PACKAGES)


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
    except ValueError as err:
        if not is_user_error(err):
            raise
        print(f"error: {err}", file=sys.stderr)
        return USER_ERROR_EXIT
