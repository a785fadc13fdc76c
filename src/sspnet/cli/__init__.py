"""The `sspnet` command line: argparse -> a config dataclass -> a library call -> a report file.

Owns the command line only: each subcommand is one module in this package that exposes
`register(subparsers)`, which adds its parser and sets `handler=` to a function `handler(args) -> int`.
Errors a user can cause (ValueError, FileNotFoundError, ...) become one line on stderr and exit code 2.
The modules here parse flags, convert the original's units at the edge, call one library function and write
its report; they may import every other subpackage and nothing imports them.
"""

from __future__ import annotations

import argparse
import errno
import importlib
import pkgutil
import sys

from sspnet import __version__

USER_ERRORS = (ValueError, FileNotFoundError, FileExistsError, NotADirectoryError, IsADirectoryError, PermissionError)
# OS errors of a full disk, a read-only or forbidden folder: one line naming the path (files are written
# atomically, so nothing half-written stays behind)
DISK_ERRNOS = {
    errno.ENOSPC: "the disk is full; free some space or write elsewhere",
    getattr(errno, "EDQUOT", -1): "the disk quota is exceeded; free some space or write elsewhere",
    errno.EROFS: "the file system is read-only; write elsewhere",
    errno.EACCES: "permission denied; use files and folders you can read and write",
    errno.EPERM: "operation not permitted; use files and folders you can read and write",
}
# the flag naming where each command writes (named when the OS error carries no path)
OUTPUT_FLAGS = (("resume", "--resume"), ("out", "--out"), ("data_root", "--data-root"))


def _disk_error(command: str, args: argparse.Namespace, exc: OSError) -> str:
    """One line for an OSError of DISK_ERRNOS: the path (or the output flag) and what to do."""
    where = exc.filename
    if where is None:
        where = next(
            (f"{flag} {getattr(args, k)}" for k, flag in OUTPUT_FLAGS if getattr(args, k, None)), "the output folder"
        )
    verb = "access" if exc.errno in (errno.EACCES, errno.EPERM) else "write"
    return f"sspnet {command}: error: cannot {verb} {where}: {DISK_ERRNOS[exc.errno]}"


def build_parser() -> argparse.ArgumentParser:
    from sspnet.cli._options import Parser

    parser = Parser(prog="sspnet", description="SSP networks: train, attack, measure growth, compare.")
    parser.add_argument("--version", action="version", version=f"sspnet {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    from sspnet import cli as commands  # the subcommand modules live beside this file

    for info in sorted(pkgutil.iter_modules(commands.__path__), key=lambda m: m.name):
        if info.name.startswith("_"):
            continue
        importlib.import_module(f"{commands.__name__}.{info.name}").register(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    from sspnet.cli._options import UsageError

    parser = build_parser()
    try:
        args, extra = parser.parse_known_args(argv)
        if extra:  # named with the subcommand whose flags they are not
            where = f"sspnet {args.command}" if getattr(args, "command", None) else "sspnet"
            raise UsageError(f"{where}: error: unrecognized arguments: {' '.join(extra)} (see {where} --help)")
    except UsageError as exc:  # an unknown flag or a bad value: one line, exit code 2
        print(exc, file=sys.stderr)
        return 2
    if getattr(args, "handler", None) is None:
        parser.print_help()
        return 2
    from sspnet.io.allocator import tune_allocator
    from sspnet.io.lock import FolderLockedError

    tune_allocator()  # keep freed tensor memory for the next step (sspnet.io.allocator)
    try:
        from sspnet.cli._options import apply_threads

        apply_threads(args)  # --threads N: torch.set_num_threads(N) for the whole command
        return int(args.handler(args) or 0)
    except OSError as exc:
        if exc.errno in DISK_ERRNOS:
            print(_disk_error(args.command, args, exc), file=sys.stderr)
            return 2
        if not isinstance(exc, USER_ERRORS):
            raise
        print(f"sspnet {args.command}: error: {exc}", file=sys.stderr)
        return 2
    except (*USER_ERRORS, FolderLockedError) as exc:
        print(f"sspnet {args.command}: error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print(f"sspnet {args.command}: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
