"""The `sspnet` command line: argparse -> a config dataclass -> a library call -> a report file.

Owns the command line only: each subcommand is one module in this package that exposes
`register(subparsers)`, which adds its parser and sets `handler=` to a function `handler(args) -> int`.
Errors a user can cause (ValueError, FileNotFoundError, ...) become one line on stderr and exit code 2.
The modules here parse flags, convert the original's units at the edge, call one library function and write
its report; they may import every other subpackage and nothing imports them.
"""
from __future__ import annotations

import argparse
import importlib
import pkgutil
import sys

from sspnet import __version__

USER_ERRORS = (ValueError, FileNotFoundError, FileExistsError, NotADirectoryError, IsADirectoryError,
               PermissionError)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="sspnet", description="SSP networks: train, attack, measure growth, compare.")
    parser.add_argument("--version", action="version", version=f"sspnet {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    from sspnet import cli as commands  # the subcommand modules live beside this file

    for info in sorted(pkgutil.iter_modules(commands.__path__), key=lambda m: m.name):
        if info.name.startswith("_"):
            continue
        importlib.import_module(f"{commands.__name__}.{info.name}").register(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if getattr(args, "handler", None) is None:
        parser.print_help()
        return 2
    try:
        return int(args.handler(args) or 0)
    except USER_ERRORS as exc:
        print(f"sspnet {args.command}: error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print(f"sspnet {args.command}: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
