"""`sspnet download DATASET --data-root DIR`: fetch a dataset from its official source (md5-checked, resumable)."""

from __future__ import annotations

import argparse
import sys
import urllib.error
from dataclasses import dataclass
from pathlib import Path

from sspnet.cli._options import add_flag
from sspnet.data.specs import dataset_names


@dataclass
class DownloadConfig:
    dataset: str
    root: Path
    mirror: str | None = None
    quiet: bool = False
    timeout: float = 60.0


def register(subparsers) -> None:
    p = subparsers.add_parser(
        "download",
        help="download a dataset (mnist, fmnist, cifar10, tiny) into --data-root",
        description="Download a dataset from its official source into DIR (--data-root) in the layout `sspnet` (and "
        "torchvision) read: md5-verified, resumable (a .part file is continued), extracted safely. "
        "mnist5k is embedded: nothing to download.",
    )
    p.add_argument("dataset", help=f"one of {', '.join(dataset_names())} (alias tinyimagenet)")
    add_flag(p, "download", "data_root", shown="$SSPNET_DATA or ./data")
    p.add_argument(
        "--mirror",
        default=None,
        metavar="URL",
        help="base URL replacing the official mirrors (file URL = URL/FILENAME; default: the official "
        "mirrors, in turn)",
    )
    p.add_argument("--timeout", type=float, default=60.0, help="network timeout in seconds (default 60)")
    p.add_argument("--quiet", action="store_true", help="no progress bar or messages")
    p.set_defaults(handler=run)


def run(args: argparse.Namespace) -> int:
    from sspnet.data._common import resolve_root
    from sspnet.data.download import download

    if args.timeout <= 0:
        raise ValueError(f"--timeout must be > 0, got {args.timeout}")
    if args.mirror is not None and not args.mirror.strip():
        raise ValueError(
            "--mirror needs a base URL (e.g. http://host/mnist), got an empty string; leave it out "
            "for the official mirrors"
        )
    cfg = DownloadConfig(args.dataset, resolve_root(args.data_root), args.mirror, args.quiet, args.timeout)
    try:
        files = download(cfg.dataset, cfg.root, base_url=cfg.mirror, quiet=cfg.quiet, timeout=cfg.timeout)
    except (urllib.error.URLError, ConnectionError, TimeoutError) as exc:
        print(
            f"sspnet download: error: {getattr(exc, 'reason', exc)} (check the network or use --mirror URL)",
            file=sys.stderr,
        )
        return 2
    if not cfg.quiet and files:
        print(f"{cfg.dataset}: {len(files)} file(s) verified under {cfg.root}")
    return 0
