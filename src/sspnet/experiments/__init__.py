"""Experiments built from train and eval, each imported on first use:

    attack       the attack experiment of one trained model (`sspnet attack`): `AttackRunConfig`, `run_attack`;
                 its result files in `attack_files`
    compare      the comparison of SSP networks with ResNets (`sspnet compare`): `CompareConfig`, `run_compare`

    from sspnet.experiments import AttackRunConfig, run_attack
    run = run_attack(AttackRunConfig(path="runs/mnist5k-res-none-seed0", eps_cli=(0.3,)))

May import train, eval and everything below them; never cli.
"""

import importlib
from typing import Any

MODULES = ("attack", "attack_files", "compare")
# names exported here -> the module that defines them
EXPORTS = {"AttackRunConfig": "attack", "run_attack": "attack"}


def __getattr__(name: str) -> Any:
    """`sspnet.experiments.compare`, `sspnet.experiments.run_attack`, ...: imported when first used."""
    if name in MODULES:
        return importlib.import_module(f"sspnet.experiments.{name}")
    if name in EXPORTS:
        return getattr(importlib.import_module(f"sspnet.experiments.{EXPORTS[name]}"), name)
    raise AttributeError(f"module 'sspnet.experiments' has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted([*globals(), *MODULES, *EXPORTS])


__all__ = ["AttackRunConfig", "run_attack"]
