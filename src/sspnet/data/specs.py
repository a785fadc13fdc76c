"""Dataset specifications: one table shared by models, data, attacks and training.

Every name a user can type (`mnist5k`, `mnist`, `fmnist`, `cifar10`, `tiny`/`tinyimagenet`) maps to one
`DatasetSpec`. Pixel values are in [0, 1]; `eps_unit` is the unit the original code used on its command line
for eps/alpha (1/255 for colour datasets, 1 for grey ones), so `eps_cli * eps_unit` is eps in pixel units.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class DatasetSpec:
    name: str
    arch: str  # "mnist" | "cifar10" | "tinyimagenet" (widths, default blocks / norm: sspnet.nn.architectures)
    channels: int
    size: int  # height == width, pixels
    num_classes: int
    mean: tuple[float, ...] | None  # per-channel input normalisation inside the model (None: identity)
    std: tuple[float, ...] | None
    train_eps: float  # pixel units, [0, 1]
    train_alpha: float  # pixel units
    eps_unit: float  # CLI unit of eps/alpha: 1/255 or 1.0
    crop_pad: int  # random-crop zero padding for training augmentation (0: no crop)
    flip: bool  # random horizontal flip for training augmentation
    train_iters: int  # default PGD iterations for adversarial training
    n_train: int  # images in the train split
    n_test: int  # images in the test split


# The original code's CIFAR-10 constants, including its blue-channel mean typo (0.2265 for 0.4465):
# checkpoints trained by it expect exactly these values.
CIFAR10_MEAN = (0.4914, 0.4822, 0.2265)
CIFAR10_STD = (0.2023, 0.1994, 0.2010)

DATASETS: dict[str, DatasetSpec] = {
    "mnist5k": DatasetSpec("mnist5k", "mnist", 1, 28, 10, None, None, 0.3, 0.05, 1.0, 0, False, 10, 4000, 1000),
    "mnist": DatasetSpec("mnist", "mnist", 1, 28, 10, None, None, 0.3, 0.05, 1.0, 0, False, 10, 60000, 10000),
    "fmnist": DatasetSpec("fmnist", "mnist", 1, 28, 10, None, None, 0.1, 0.02, 1.0, 4, True, 10, 60000, 10000),
    "cifar10": DatasetSpec(
        "cifar10", "cifar10", 3, 32, 10, CIFAR10_MEAN, CIFAR10_STD, 8 / 255, 2 / 255, 1 / 255, 4, True, 7, 50000, 10000
    ),
    "tiny": DatasetSpec(
        "tiny",
        "tinyimagenet",
        3,
        64,
        200,
        (0.5, 0.5, 0.5),
        (0.5, 0.5, 0.5),
        4 / 255,
        1 / 255,
        1 / 255,
        4,
        True,
        7,
        100000,
        10000,
    ),
}
ALIASES = {"tinyimagenet": "tiny", "tiny-imagenet": "tiny", "fashion-mnist": "fmnist", "fashionmnist": "fmnist"}


def dataset_names() -> list[str]:
    """The dataset names accepted everywhere (aliases excluded)."""
    return list(DATASETS)


def get_dataset_spec(name: str) -> DatasetSpec:
    """The spec for a dataset name or alias; ValueError listing the valid names otherwise."""
    key = str(name).lower()
    key = ALIASES.get(key, key)
    if key not in DATASETS:
        valid = ", ".join(list(DATASETS) + list(ALIASES))
        raise ValueError(f"unknown dataset {name!r}; valid datasets: {valid}")
    return DATASETS[key]
