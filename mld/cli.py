"""`mld` command line: a thin dispatcher over the library.

Each command group lives in `mld/commands/<group>.py` and exposes `register(subparsers)`,
which adds its sub-commands and sets `func` on them; this keeps every command next to the
code it drives and this file free of logic.
"""
from __future__ import annotations

import argparse
import importlib
import sys
from typing import Sequence

COMMAND_MODULES = (
    "mld.commands.data",
    "mld.commands.train",
    "mld.commands.measure",
    "mld.commands.report",
    "mld.commands.compare",
    "mld.commands.merge",
    "mld.commands.runs",
    "mld.commands.plan",
    "mld.commands.weights",
)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="mld", description=__doc__.splitlines()[0])
    subparsers = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for module_name in COMMAND_MODULES:
        importlib.import_module(module_name).register(subparsers)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        result = args.func(args)
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130
    except (ValueError, FileNotFoundError, KeyError) as error:
        # Library errors are written to be read by people: show them without a traceback.
        print(f"mld {args.command}: error: {error}", file=sys.stderr)
        return 2
    return int(result or 0)


if __name__ == "__main__":
    sys.exit(main())
