"""The dataset readers, a registry keyed by one name per dataset (mnist5k, mnist, fmnist, cifar10, tiny).

    reader = get_reader("tinyimagenet")          # aliases as in `sspnet.data.specs`: the "tiny" reader
    images, labels = reader.read(root, "test")   # uint8 N x C x H x W, int64 N (numpy)

`sspnet.data.load` / `load_numpy` look the reader up here and check its arrays against the dataset's spec.
A reader imports its module on first use (the TinyImageNet decoder, gzip, ... stay unloaded until needed).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from sspnet.data.specs import DATASETS, get_dataset_spec

Arrays = tuple[np.ndarray, np.ndarray]


@dataclass(frozen=True)
class Reader:
    """read(root, split) -> (uint8 images N x C x H x W, int64 labels N); root is None when uses_root is False
    (embedded data). source: what the arrays are, for error messages, with {split} and {root} filled in."""

    name: str
    read: Callable[[Path | None, str], Arrays]
    source: str
    uses_root: bool = True


_READERS: dict[str, Reader] = {}


def register_reader(reader: Reader, overwrite: bool = False) -> Reader:
    """Add a reader for a dataset of `sspnet.data.specs` (its arrays are checked against that spec)."""
    if reader.name not in DATASETS:
        raise ValueError(f"a reader needs a dataset spec: {reader.name!r} is none of {', '.join(DATASETS)}")
    if reader.name in _READERS and not overwrite:
        raise ValueError(f"a reader for {reader.name!r} is already registered (pass overwrite=True)")
    _READERS[reader.name] = reader
    return reader


def reader_names() -> list[str]:
    return list(_READERS)


def get_reader(name: str) -> Reader:
    """The reader of a dataset name or alias; ValueError listing the valid names otherwise."""
    spec = get_dataset_spec(name)  # ValueError listing the datasets for an unknown name
    if spec.name not in _READERS:
        raise ValueError(f"no reader for dataset {spec.name!r}; datasets with a reader: {', '.join(_READERS)}")
    return _READERS[spec.name]


def _mnist5k(root: Path | None, split: str) -> Arrays:
    from sspnet.data.mnist5k import load_mnist5k

    return load_mnist5k(split)


def _idx(name: str) -> Callable[[Path | None, str], Arrays]:
    def read(root: Path | None, split: str) -> Arrays:
        from sspnet.data.idx import load_idx_dataset

        return load_idx_dataset(name, Path(root or "."), split, get_dataset_spec(name).num_classes)

    return read


def _cifar10(root: Path | None, split: str) -> Arrays:
    from sspnet.data.cifar import load_cifar10

    return load_cifar10(Path(root or "."), split)


def _tiny(root: Path | None, split: str) -> Arrays:
    from sspnet.data.tiny import load_tiny

    return load_tiny(Path(root or "."), split)


register_reader(Reader("mnist5k", _mnist5k, "mnist5k {split} split (embedded)", uses_root=False))
register_reader(Reader("mnist", _idx("mnist"), "mnist {split} split under {root}"))
register_reader(Reader("fmnist", _idx("fmnist"), "fmnist {split} split under {root}"))
register_reader(Reader("cifar10", _cifar10, "cifar10 {split} batches under {root}"))
register_reader(Reader("tiny", _tiny, "TinyImageNet {split} split under {root}"))

__all__ = ["Reader", "get_reader", "reader_names", "register_reader"]
