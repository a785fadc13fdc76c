"""The three SSP architectures as one table: every fact about an architecture is stated here once.

    mnist         (MNIST, Fashion-MNIST, mnist5k; 1 x 28 x 28): one group of 64 channels, 5 blocks, GroupNorm.
                  stem "downsample": conv 3x3 (no padding, 28 -> 26), norm, ReLU, conv 4x4 / 2 (-> 13), norm,
                  ReLU, conv 4x4 / 2 (-> 6); head "norm_pool": norm, ReLU, global average pool, linear.
    cifar10       (CIFAR-10; 3 x 32 x 32): groups of 16, 32, 64 channels, 6 blocks, BatchNorm.
    tinyimagenet  (TinyImageNet; 3 x 64 x 64): groups of 16, 32, 64, 128 channels, 6 blocks, BatchNorm.
                  stem "conv": one conv 3x3 (padding 1, bias); head "pool": global average pool, linear.
    A `TransitionBlock` (stride 2, widths[j] -> widths[j + 1]) sits between two groups.

Which architecture a dataset uses is the dataset's `DatasetSpec.arch` (`sspnet.data.specs`); `datasets` lists
them, `dataset` is the one that stands for the architecture (an original checkpoint without a dataset is loaded as
it), `archi` maps the original code's --archi names to a dataset.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field

from torch import nn

from sspnet.data.specs import DATASETS, get_dataset_spec
from sspnet.nn.blocks import TransitionBlock, make_norm


@dataclass(frozen=True)
class Architecture:
    """One architecture. widths: channels of each block group (its length is the number of groups); blocks /
    norm / init: the defaults of `create_model`; ark: the ARK block's default (a21, b10); stem / head: which
    stem and head (module docstring); dataset: the dataset that stands for it; archi: the original's --archi
    names that select it -> the dataset each means."""

    name: str
    widths: tuple[int, ...]
    blocks: int
    norm: str
    init: str
    ark: tuple[float, float]
    stem: str
    head: str
    dataset: str
    archi: Mapping[str, str] = field(default_factory=dict)

    @property
    def n_groups(self) -> int:
        return len(self.widths)

    @property
    def datasets(self) -> tuple[str, ...]:
        """The dataset names (`sspnet.data.specs`, aliases excluded) that use this architecture."""
        return tuple(name for name, spec in DATASETS.items() if spec.arch == self.name)

    def build_stem(self, in_channels: int, norm: str) -> nn.Module:
        """in_channels x H x W -> widths[0] channels (H 28 -> 6 for "downsample", unchanged for "conv")."""
        c = self.widths[0]
        if self.stem == "downsample":
            return nn.Sequential(
                nn.Conv2d(in_channels, c, 3, 1, 0),
                make_norm(norm, c),
                nn.ReLU(inplace=True),
                nn.Conv2d(c, c, 4, 2, 1),
                make_norm(norm, c),
                nn.ReLU(inplace=True),
                nn.Conv2d(c, c, 4, 2, 1),
            )
        return nn.Sequential(nn.Conv2d(in_channels, c, 3, 1, 1, bias=True))

    def build_head(self, num_classes: int, norm: str) -> nn.Module:
        """B x widths[-1] x H x W features -> B x num_classes logits."""
        c = self.widths[-1]
        if self.head == "norm_pool":
            return nn.Sequential(
                make_norm(norm, c),
                nn.ReLU(inplace=True),
                nn.AdaptiveAvgPool2d(1),
                nn.Flatten(),
                nn.Linear(c, num_classes),
            )
        return nn.Sequential(nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(c, num_classes))

    def build_transitions(self, norm: str) -> list[nn.Module]:
        """The n_groups - 1 transition blocks; transitions[j - 1] sits before group j."""
        return [TransitionBlock(self.widths[j], self.widths[j + 1], norm) for j in range(self.n_groups - 1)]


ARCHITECTURES: dict[str, Architecture] = {
    "mnist": Architecture(
        "mnist",
        (64,),
        5,
        "g",
        "torch",
        (-1.0, 0.5),
        "downsample",
        "norm_pool",
        "mnist",
        {"mnist": "mnist", "fmnist": "fmnist"},
    ),
    "cifar10": Architecture(
        "cifar10",
        (16, 32, 64),
        6,
        "b",
        "original",
        (0.25, 1.0),
        "conv",
        "pool",
        "cifar10",
        {"cifar10": "cifar10", "cifar": "cifar10"},
    ),
    "tinyimagenet": Architecture(
        "tinyimagenet",
        (16, 32, 64, 128),
        6,
        "b",
        "original",
        (0.25, 1.0),
        "conv",
        "pool",
        "tiny",
        {"imagenet": "tiny", "tinyimagenet": "tiny", "tiny": "tiny"},
    ),
}


def architecture_names() -> list[str]:
    return list(ARCHITECTURES)


def get_architecture(name: str) -> Architecture:
    """The architecture of an architecture name (mnist | cifar10 | tinyimagenet) or of a dataset name or alias;
    ValueError listing both otherwise."""
    if name in ARCHITECTURES:
        return ARCHITECTURES[name]
    try:
        return ARCHITECTURES[get_dataset_spec(name).arch]
    except ValueError:
        raise ValueError(
            f"unknown architecture {name!r}; valid: {', '.join(ARCHITECTURES)}, or a dataset name "
            f"({', '.join(DATASETS)})"
        ) from None


def archi_dataset(archi: str) -> str:
    """The dataset an original --archi name means (mnist, fmnist, cifar10, cifar, imagenet, tinyimagenet, tiny,
    any case); ValueError listing them otherwise."""
    names = {k: v for arch in ARCHITECTURES.values() for k, v in arch.archi.items()}
    key = str(archi).lower()
    if key not in names:
        raise ValueError(f"unknown --archi {archi!r}; valid: {', '.join(names)}")
    return names[key]


__all__ = ["ARCHITECTURES", "Architecture", "archi_dataset", "architecture_names", "get_architecture"]
