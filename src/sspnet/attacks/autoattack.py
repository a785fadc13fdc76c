"""Adapter to the published AutoAttack (Croce & Hein 2020), standard version, linf and l2.

Optional: `pip install sspnet[autoattack]` installs PyPI's `pyautoattack` (module `pyautoattack`); the
GitHub package (module `autoattack`) is accepted too.
"""
from __future__ import annotations

import importlib
import inspect
from typing import Any

import torch
from torch import Tensor, nn

from sspnet.attacks.base import Attack, Ball

INSTALL_HINT = "install with pip install sspnet[autoattack] (it installs the pyautoattack package)"
_AA_NORMS = {"linf": "Linf", "l2": "L2"}


def load_autoattack_class() -> Any:
    """The AutoAttack class from `pyautoattack` (or `autoattack`); ValueError with the install hint if absent."""
    for module in ("pyautoattack", "autoattack"):
        try:
            return importlib.import_module(module).AutoAttack
        except (ImportError, AttributeError):
            continue
    raise ValueError(f"AutoAttack needs the optional AutoAttack package, which is not installed: {INSTALL_HINT}")


def autoattack_available() -> bool:
    try:
        load_autoattack_class()
    except ValueError:
        return False
    return True


class AutoAttack(Attack):
    """AutoAttack, standard version (APGD-CE, APGD-T, FAB-T, Square) at radius eps (pixel units).

    Returns per-sample the first successful adversarial example, else x. The result is re-clipped to the
    eps-ball n [0, 1] (AutoAttack may overshoot by float rounding); `quantize` is not applied (it would undo
    AutoAttack's own search). seed: AutoAttack's seed (deterministic runs).
    """

    name = "autoattack"

    def __init__(self, model: nn.Module, eps: float, norm: str = "linf", version: str = "standard",
                 seed: int | None = 0, batch_size: int | None = None, *, mode: str = "eval",
                 quantize: bool = False):
        super().__init__(model, eps, norm=norm, quantize=False, mode=mode)
        self._cls = load_autoattack_class()
        self.version = version
        self.seed = seed
        self.batch_size = batch_size

    def _make(self, device: torch.device) -> Any:
        params = inspect.signature(self._cls).parameters
        kw = {"norm": _AA_NORMS[self.norm], "eps": self.eps, "version": self.version, "device": device}
        if "seed" in params:
            kw["seed"] = self.seed
        if "verbose" in params:
            kw["verbose"] = False
        adversary = self._cls(self.model, **kw)
        adversary.verbose = False
        return adversary

    def perturb(self, x: Tensor, y: Tensor) -> Tensor:
        adversary = self._make(x.device)
        run = adversary.run_standard_evaluation
        bs = self.batch_size or x.shape[0]
        key = "batch_size" if "batch_size" in inspect.signature(run).parameters else "bs"
        out = run(x, y, **{key: bs})
        x_adv = out[0] if isinstance(out, (tuple, list)) else out
        with torch.no_grad():
            return Ball(x, self.eps, self.norm, False).project_(x_adv.detach().to(x.device, x.dtype).clone())
