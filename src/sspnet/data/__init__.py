"""Datasets as uint8 tensors on the device, batches with on-device augmentation, and downloads.

    images, labels = load("cifar10", root="data", split="train", device="cuda")  # uint8 N x C x H x W, int64 N
    for x, y in Batches(images, labels, 128, seed=0, crop_pad=4, flip=True): ...   # x float32 in [0, 1]

Names as in `sspnet.data.specs` (mnist5k, mnist, fmnist, cifar10, tiny / tinyimagenet). `mnist5k` (the default
everywhere) is embedded and ignores `root`. Readers (`readers.get_reader(name)`, one per dataset name): `idx`
(MNIST, Fashion-MNIST), `cifar` (python and binary batches), `tiny` (TinyImageNet folder + .npy cache),
`mnist5k`. Downloads: `download.download` / `sspnet download NAME --data-root DIR`.
"""

from __future__ import annotations

import os

import numpy as np
import torch

from sspnet.data._common import check_arrays, default_root, resolve_root
from sspnet.data.batches import Batches, augment, epoch_seed
from sspnet.data.readers import get_reader, reader_names, register_reader
from sspnet.data.specs import get_dataset_spec

SPLITS = ("train", "test")

__all__ = [
    "load",
    "load_numpy",
    "Batches",
    "augment",
    "epoch_seed",
    "default_root",
    "get_reader",
    "reader_names",
    "register_reader",
    "SPLITS",
]


def load_numpy(name: str, root: str | os.PathLike | None = None, split: str = "train") -> tuple[np.ndarray, np.ndarray]:
    """(uint8 N x C x H x W, int64 N) numpy arrays of a dataset split (its reader: `readers.get_reader`), checked
    against its spec."""
    reader = get_reader(name)
    spec = get_dataset_spec(reader.name)
    if split not in SPLITS:
        raise ValueError(f"unknown split {split!r}; valid splits: {', '.join(SPLITS)}")
    base = resolve_root(root) if reader.uses_root else None
    images, labels = reader.read(base, split)
    check_arrays(
        images,
        labels,
        source=reader.source.format(split=split, root=base),
        channels=spec.channels,
        size=spec.size,
        num_classes=spec.num_classes,
    )
    return images, labels


def load(
    name: str = "mnist5k",
    root: str | os.PathLike | None = None,
    split: str = "train",
    device: str | torch.device = "cpu",
) -> tuple[torch.Tensor, torch.Tensor]:
    """A dataset split as (images uint8 N x C x H x W, labels int64 N) on `device`.

    root: the data folder (default `$SSPNET_DATA` or `./data`; ignored for mnist5k). FileNotFoundError naming the
    expected paths and the `sspnet download` command when the files are missing; ValueError naming the file on
    corrupt input (wrong magic, truncated, wrong image size, labels out of range).
    """
    images, labels = load_numpy(name, root, split)
    if not images.flags.writeable or not images.flags.c_contiguous:
        images = np.ascontiguousarray(images).copy()
    if not labels.flags.writeable:
        labels = labels.copy()
    x = torch.from_numpy(images).to(device)
    y = torch.from_numpy(labels.astype(np.int64, copy=False)).to(device)
    return x, y
