"""Datasets as uint8 tensors on the device, batches with on-device augmentation, and downloads.

    images, labels = load("cifar10", root="data", split="train", device="cuda")  # uint8 N x C x H x W, int64 N
    for x, y in Batches(images, labels, 128, seed=0, crop_pad=4, flip=True): ...   # x float32 in [0, 1]

Names as in `sspnet.specs` (mnist5k, mnist, fmnist, cifar10, tiny / tinyimagenet). `mnist5k` (the default
everywhere) is embedded and ignores `root`. Readers: `idx` (MNIST, Fashion-MNIST), `cifar` (python and binary
batches), `tiny` (TinyImageNet folder + .npy cache), `mnist5k`. Downloads: `download.download` /
`sspnet download NAME --root DIR`.
"""
from __future__ import annotations

import os

import numpy as np
import torch

from sspnet.data.specs import get_dataset_spec
from sspnet.data._common import check_arrays, default_root, resolve_root
from sspnet.data.batches import Batches, augment, epoch_seed

SPLITS = ("train", "test")

__all__ = ["load", "load_numpy", "Batches", "augment", "epoch_seed", "default_root", "SPLITS"]


def load_numpy(name: str, root: str | os.PathLike | None = None, split: str = "train") -> tuple[np.ndarray, np.ndarray]:
    """(uint8 N x C x H x W, int64 N) numpy arrays of a dataset split, checked against its spec."""
    spec = get_dataset_spec(name)
    if split not in SPLITS:
        raise ValueError(f"unknown split {split!r}; valid splits: {', '.join(SPLITS)}")
    if spec.name == "mnist5k":
        from sspnet.data.mnist5k import load_mnist5k

        return load_mnist5k(split)
    base = resolve_root(root)
    if spec.name in ("mnist", "fmnist"):
        from sspnet.data.idx import load_idx_dataset

        images, labels = load_idx_dataset(spec.name, base, split, spec.num_classes)
        source = f"{spec.name} {split} split under {base}"
    elif spec.name == "cifar10":
        from sspnet.data.cifar import load_cifar10

        images, labels = load_cifar10(base, split)
        source = f"cifar10 {split} batches under {base}"
    elif spec.name == "tiny":
        from sspnet.data.tiny import load_tiny

        images, labels = load_tiny(base, split)
        source = f"TinyImageNet {split} split under {base}"
    else:  # pragma: no cover - a spec without a reader
        raise ValueError(f"no reader for dataset {spec.name!r}")
    check_arrays(images, labels, source=source, channels=spec.channels, size=spec.size, num_classes=spec.num_classes)
    return images, labels


def load(name: str = "mnist5k", root: str | os.PathLike | None = None, split: str = "train",
         device: str | torch.device = "cpu") -> tuple[torch.Tensor, torch.Tensor]:
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
