"""Experiments built from train and eval; today one: `sspnet.experiments.compare`.

May import train, eval and everything below them; never cli.
"""
import importlib
from typing import Any


def __getattr__(name: str) -> Any:
    if name == "compare":
        return importlib.import_module("sspnet.experiments.compare")
    raise AttributeError(f"module 'sspnet.experiments' has no attribute {name!r}")
