"""sspnet: strong-stability-preserving Runge-Kutta networks for adversarial-robustness research.

    import sspnet
    model = sspnet.create_model("ssp2", dataset="cifar10")      # takes [0, 1] pixels
    model = sspnet.load_model("runs/ssp2")                      # run folder or checkpoint, eval mode
    sspnet.describe_checkpoint("runs/ssp2")                     # which file, selected how (final by default)

Subpackages (imported on first use): nn, data, attacks, train, eval, experiments, io, cli.
"""

from __future__ import annotations

import importlib
from typing import Any

from sspnet._version import __version__
from sspnet.data.specs import dataset_names, get_dataset_spec
from sspnet.nn import (
    Scheme,
    create_model,
    describe_checkpoint,
    get_scheme,
    list_models,
    list_schemes,
    load_model,
    model_cost,
    register_scheme,
    save_checkpoint,
)

SUBPACKAGES = ("attacks", "cli", "data", "distributed", "eval", "experiments", "io", "nn", "train")


def __getattr__(name: str) -> Any:
    """`sspnet.attacks`, `sspnet.eval`, ...: subpackages are imported when first used."""
    if name in SUBPACKAGES:
        return importlib.import_module(f"sspnet.{name}")
    raise AttributeError(f"module 'sspnet' has no attribute {name!r}")


__all__ = [
    "Scheme",
    "create_model",
    "dataset_names",
    "describe_checkpoint",
    "get_dataset_spec",
    "get_scheme",
    "list_models",
    "list_schemes",
    "load_model",
    "model_cost",
    "register_scheme",
    "save_checkpoint",
    "__version__",
]
