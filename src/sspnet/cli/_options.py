"""Options shared by several subcommands: `--threads` (torch's intra-op threads) and the data folder a run
recorded (config.json's data_root), used by `attack` and `growth` when `--data-root` is not given.

A module whose name starts with "_" is no subcommand (`sspnet.cli.build_parser` skips it).
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path


def add_threads(parser: argparse.ArgumentParser, help: str | None = None) -> None:
    """Add `--threads N` (validated by `apply_threads`, so a bad value is one error line with exit code 2)."""
    parser.add_argument("--threads", default=None, metavar="N",
                        help=help or "torch intra-op threads of this command, an integer >= 1 (default: torch's "
                                     "default, usually the number of cores; on a busy machine 1 can be faster)")


def parse_threads(value) -> int | None:
    """The --threads value as an int >= 1 (None: not given); ValueError in one line otherwise."""
    if value is None:
        return None
    try:
        n = int(str(value).strip())
    except ValueError:
        n = 0
    if n < 1 or str(value).strip() != str(n):
        raise ValueError(f"--threads must be an integer >= 1, got {value!r}")
    return n


def apply_threads(args: argparse.Namespace) -> int | None:
    """torch.set_num_threads(--threads) when the command has the flag and it is given; returns the value."""
    n = parse_threads(getattr(args, "threads", None))
    if n is not None:
        import torch

        torch.set_num_threads(n)
    return n


def recorded_data_root(path: str | Path) -> str | None:
    """The data folder a training run recorded (config.json's data_root) for a run folder or a checkpoint inside
    one; None when there is none (no config.json, mnist5k, or no --data-root at training). A recorded folder
    that does not exist here is not used (the default data root is, with a note on stderr)."""
    from sspnet.train.config import read_run_config

    path = Path(path)
    run_dir = path if path.is_dir() else path.parent
    if not (run_dir / "config.json").is_file():
        return None
    try:
        root = read_run_config(run_dir).get("data_root")
    except (ValueError, OSError):
        return None
    if not root:
        return None
    if not Path(root).expanduser().is_dir():
        print(f"note: the data folder {root} recorded in {run_dir / 'config.json'} does not exist here; using the "
              f"default data folder (pass --data-root)", file=sys.stderr)
        return None
    return str(root)


def print_checkpoint(desc: dict | None) -> None:
    """The checkpoint a command used and how it was selected (`describe_checkpoint`), with its note and warning."""
    from sspnet.nn.checkpoints import checkpoint_summary

    if desc:
        print(f"  checkpoint: {checkpoint_summary(desc)}")
        for line in (desc.get("note"), desc.get("warning")):
            if line:
                print(f"  ! {line}")
