"""Helpers shared by the dataset readers: default root, error messages, md5, final checks."""

from __future__ import annotations

import hashlib
import os
from collections.abc import Iterable
from pathlib import Path

import numpy as np

DEFAULT_ROOT_ENV = "SSPNET_DATA"


def default_root() -> Path:
    """The data root used when none is given: `$SSPNET_DATA`, else `./data`."""
    return Path(os.environ.get(DEFAULT_ROOT_ENV) or "data")


def resolve_root(root: str | os.PathLike | None) -> Path:
    return Path(root).expanduser() if root is not None else default_root()


def missing(
    name: str, root: Path, expected: Iterable[str | Path], what: str = "dataset files", near: Iterable[str | Path] = ()
) -> FileNotFoundError:
    """A FileNotFoundError naming the paths searched, the near-miss files found there (other separators, case,
    compression: `near`, if any) and the command that fetches the data."""
    paths = "; ".join(str(p) for p in expected)
    near = [str(p) for p in near]
    found = (
        f" Found files with similar names that are not read as they are: {', '.join(near)} (rename them to "
        f"one of the names looked for)."
        if near
        else ""
    )
    return FileNotFoundError(
        f"{name}: {what} not found; looked for {paths}.{found} "
        f"Fetch them with: sspnet download {name} --data-root {root}"
    )


def md5sum(path: str | os.PathLike, chunk: int = 1 << 20) -> str:
    """Hex md5 of a file (integrity check against the published checksums, not a security hash)."""
    digest = hashlib.md5(usedforsecurity=False)
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(chunk), b""):
            digest.update(block)
    return digest.hexdigest()


def check_arrays(
    images: np.ndarray, labels: np.ndarray, *, source: str, channels: int, size: int, num_classes: int
) -> None:
    """Raise ValueError naming `source` unless images are uint8 N x channels x size x size and labels in range."""
    if images.dtype != np.uint8:
        raise ValueError(f"{source}: images have dtype {images.dtype}, expected uint8")
    if images.ndim != 4 or images.shape[1:] != (channels, size, size):
        raise ValueError(
            f"{source}: wrong image size {tuple(images.shape[1:])} (C x H x W), expected {(channels, size, size)}"
        )
    if labels.ndim != 1 or labels.shape[0] != images.shape[0]:
        raise ValueError(f"{source}: {labels.shape[0] if labels.ndim else 0} labels for {images.shape[0]} images")
    if labels.size and (labels.min() < 0 or labels.max() >= num_classes):
        bad = labels[(labels < 0) | (labels >= num_classes)]
        raise ValueError(
            f"{source}: labels out of range: found {int(bad[0])} ({bad.size} bad), expected 0..{num_classes - 1}"
        )
