"""Adapters to the published AutoAttack (Croce & Hein 2020), standard version, and to its Square attack
(Andriushchenko et al. 2020, score-based black box), linf and l2.

PyPI's `pyautoattack` (module `pyautoattack`) is a dependency of sspnet; the GitHub package (module
`autoattack`) is accepted too. Both adapters leave the caller's global random state untouched (the package
reseeds torch's generators) and record AutoAttack's own warnings about the model (`notes()`).
"""

from __future__ import annotations

import contextlib
import importlib
import inspect
import logging
from collections.abc import Callable, Iterator
from typing import Any

import torch
from torch import Tensor, nn

from sspnet.attacks.base import Attack, Ball, check_count

INSTALL_HINT = "pyautoattack is a dependency of sspnet: reinstall sspnet (pip install -e .) or pip install pyautoattack"
_AA_NORMS = {"linf": "Linf", "l2": "L2"}
_AA_LOGGER = "auto-attack"


def _aa_module(name: str) -> Any:
    """`pyautoattack.<name>` (or `autoattack.<name>`); ValueError with the install hint if absent."""
    for package in ("pyautoattack", "autoattack"):
        try:
            module = importlib.import_module(package)
            return importlib.import_module(f"{package}.{name}") if name else module
        except ImportError:
            continue
    raise ValueError(f"AutoAttack needs the AutoAttack package, which is not installed: {INSTALL_HINT}")


def load_autoattack_class() -> Any:
    """The AutoAttack class from `pyautoattack` (or `autoattack`); ValueError with the install hint if absent."""
    module = _aa_module("")
    if not hasattr(module, "AutoAttack"):
        raise ValueError(f"the installed AutoAttack package has no AutoAttack class: {INSTALL_HINT}")
    return module.AutoAttack


def autoattack_available() -> bool:
    try:
        load_autoattack_class()
    except ValueError:
        return False
    return True


class _Collect(logging.Handler):
    def __init__(self, sink: list[str]):
        super().__init__(logging.WARNING)
        self.sink = sink

    def emit(self, record: logging.LogRecord) -> None:
        message = record.getMessage()
        if message not in self.sink:
            self.sink.append(message)


@contextlib.contextmanager
def _aa_context(device: torch.device, sink: list[str]) -> Iterator[None]:
    """AutoAttack's warnings go to `sink` (not to stderr); torch's global random state is restored after."""
    logger = logging.getLogger(_AA_LOGGER)
    handler, propagate = _Collect(sink), logger.propagate
    logger.addHandler(handler)
    logger.propagate = False
    devices = [device] if device.type == "cuda" else []
    try:
        with torch.random.fork_rng(devices=devices):
            yield
    finally:
        logger.removeHandler(handler)
        logger.propagate = propagate


class _Published(Attack):
    """Shared part of the adapters: no 8-bit rounding (it would undo the package's search), results re-clipped
    to the eps-ball n [0, 1] (the package may overshoot by float rounding), warnings kept for `notes()`."""

    def __init__(self, model: nn.Module, eps: float, norm: str, seed: int | None, mode: str):
        super().__init__(model, eps, norm=norm, quantize=False, mode=mode)
        self.seed = seed
        self._notes: list[str] = []

    def notes(self) -> list[str]:
        return list(self._notes)

    def perturb(self, x: Tensor, y: Tensor) -> Tensor:
        with _aa_context(x.device, self._notes):
            x_adv = self._search(x, y)
        with torch.no_grad():
            return Ball(x, self.eps, self.norm, False).project_(x_adv.detach().to(x.device, x.dtype).clone())

    def _search(self, x: Tensor, y: Tensor) -> Tensor:  # pragma: no cover - abstract
        raise NotImplementedError


class AutoAttack(_Published):
    """AutoAttack, standard version (APGD-CE, APGD-T, FAB-T, Square) at radius eps (pixel units).

    Returns per-sample the first successful adversarial example, else x. seed: AutoAttack's seed
    (deterministic runs). `notes()`: AutoAttack's own warnings (zero gradients, randomised or probability
    outputs, Square beating the gradient attacks).
    """

    name = "autoattack"

    def __init__(
        self,
        model: nn.Module,
        eps: float,
        norm: str = "linf",
        version: str = "standard",
        seed: int | None = 0,
        batch_size: int | None = None,
        *,
        mode: str = "eval",
        quantize: bool = False,
    ):
        super().__init__(model, eps, norm, seed, mode)
        self._cls = load_autoattack_class()
        self.version = version
        self.batch_size = batch_size
        self.on_stage: Callable[[str], None] | None = None  # progress: on_stage("running apgd-ce (1/4)"), ...

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

    def _search(self, x: Tensor, y: Tensor) -> Tensor:
        adversary = self._make(x.device)
        run = adversary.run_standard_evaluation
        bs = self.batch_size or x.shape[0]
        key = "batch_size" if "batch_size" in inspect.signature(run).parameters else "bs"
        stages = list(getattr(adversary, "attacks_to_run", []) or [])
        with _stages(self.on_stage, stages, x.shape[0]):
            out = run(x, y, **{key: bs})
        return out[0] if isinstance(out, (tuple, list)) else out


class _Stages(logging.Handler):
    """AutoAttack logs 'running <attack>' (debug level, verbose or not) before each of its attacks: each becomes
    on_stage('running apgd-ce (1/4) on N images')."""

    def __init__(self, on_stage: Callable[[str], None], stages: list[str], n: int):
        super().__init__(logging.DEBUG)
        self.on_stage, self.stages, self.n = on_stage, stages, n

    def emit(self, record: logging.LogRecord) -> None:
        message = record.getMessage()
        if message.startswith("running "):
            stage = message[len("running ") :].strip()
            k = f" ({self.stages.index(stage) + 1}/{len(self.stages)})" if stage in self.stages else ""
            self.on_stage(f"AutoAttack {stage}{k}")
        elif message.startswith("no robust datapoints left"):
            self.on_stage("AutoAttack: every image broken, remaining stages skipped")


@contextlib.contextmanager
def _stages(on_stage: Callable[[str], None] | None, stages: list[str], n: int) -> Iterator[None]:
    """Report AutoAttack's stages to on_stage while the block runs (nothing when on_stage is None); without
    stage messages from the package, one report before and one after the whole run."""
    if on_stage is None:
        yield
        return
    logger = logging.getLogger(_AA_LOGGER)
    handler, level = _Stages(on_stage, stages, n), logger.level
    logger.addHandler(handler)
    if not logger.isEnabledFor(logging.DEBUG):
        logger.setLevel(logging.DEBUG)
    on_stage(f"AutoAttack {'standard' if not stages else ', '.join(stages)} on {n} images")
    try:
        yield
    finally:
        logger.removeHandler(handler)
        logger.setLevel(level)
    on_stage(f"AutoAttack done on {n} images")


class Square(_Published):
    """Square Attack: random square-shaped updates accepted when they lower the margin (logit of the true
    class minus the best other); no gradients, so gradient masking does not hinder it. queries: model calls
    per image at most (AutoAttack standard: 5000); an image stops at its first misclassification."""

    name = "square"

    def __init__(
        self,
        model: nn.Module,
        eps: float,
        norm: str = "linf",
        queries: int = 5000,
        seed: int | None = 0,
        *,
        mode: str = "eval",
        p_init: float = 0.8,
    ):
        super().__init__(model, eps, norm, seed, mode)
        self.queries = check_count(queries, "queries", 1)
        self.p_init = float(p_init)
        _aa_module("square")

    def _search(self, x: Tensor, y: Tensor) -> Tensor:
        square = _aa_module("square").SquareAttack(
            self.model,
            norm=_AA_NORMS[self.norm],
            n_queries=self.queries,
            eps=self.eps,
            p_init=self.p_init,
            n_restarts=1,
            seed=self.seed if self.seed is not None else 0,
            verbose=False,
            loss="margin",
            resc_schedule=True,
            device=x.device,
        )
        with torch.no_grad():
            return square.perturb(x, y)
