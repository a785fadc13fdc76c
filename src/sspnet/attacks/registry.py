"""The attack registry: one name per attack, each entry building its class (like `sspnet.nn.schemes`'s scheme
registry). `make_attack` is the one place attacks are built by name (`sspnet attack`, evaluate, the audit,
growth and training's adversary).

    make_attack("pgd", model, 8 / 255, steps=10)          # alpha: the one default step rule
    register_attack(AttackEntry("mine", build_mine, "my attack"))
    attack_names()                                        # every name; attack_names(evaluates=True): evaluate's

eps / alpha in pixel units.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from torch import nn

from sspnet.attacks.autoattack import AutoAttack, Square
from sspnet.attacks.base import Attack, default_step
from sspnet.attacks.gradient import FGSM, PGD, FastFGSM
from sspnet.attacks.noise import NoiseBall


@dataclass(frozen=True)
class AttackOptions:
    """make_attack's keywords, handed to an entry's builder (each takes what its attack uses)."""

    norm: str = "linf"
    alpha: float | None = None
    steps: int = 20
    restarts: int = 1
    copies: int = 10
    random_start: bool = False
    quantize: bool = False
    generator: Any = None
    mode: str = "eval"
    seed: int | None = 0
    early_stop: bool = False
    queries: int = 5000


@dataclass(frozen=True)
class AttackEntry:
    """One attack: build(model, eps, options) -> Attack (its `name` is the entry's); evaluates: whether
    `sspnet.eval.evaluate` runs it (fastfgsm is a training adversary: no early stop, its own step)."""

    name: str
    build: Callable[[nn.Module, float, AttackOptions], Attack]
    description: str = ""
    evaluates: bool = True


REGISTRY: dict[str, AttackEntry] = {}
ALIASES = {"fast": "fastfgsm"}  # the original's name of FastFGSM (training's --adv fast)


def register_attack(entry: AttackEntry, overwrite: bool = False) -> AttackEntry:
    """Make `entry` available by name to make_attack, evaluate and the CLI."""
    if not isinstance(entry, AttackEntry):
        raise ValueError("register_attack takes an AttackEntry")
    if (entry.name in REGISTRY and not overwrite) or entry.name in ALIASES:
        raise ValueError(f"an attack named {entry.name!r} is already registered (pass overwrite=True)")
    REGISTRY[entry.name] = entry
    return entry


def attack_names(evaluates: bool | None = None) -> tuple[str, ...]:
    """The registered names, in registration order (evaluates=True: those evaluate runs)."""
    return tuple(n for n, e in REGISTRY.items() if evaluates is None or e.evaluates == evaluates)


def get_attack(name: str) -> AttackEntry:
    """The entry of a name or alias (any case); ValueError listing the valid names otherwise."""
    key = str(name).lower()
    key = ALIASES.get(key, key)
    if key not in REGISTRY:
        raise ValueError(f"unknown attack {name!r}; valid attacks: {', '.join(REGISTRY)}")
    return REGISTRY[key]


def _pgd_step(eps: float, o: AttackOptions) -> float:
    return o.alpha if o.alpha is not None else default_step(eps, quantize=o.quantize, norm=o.norm)


for _entry in (
    AttackEntry(
        "fgsm",
        lambda m, e, o: FGSM(m, e, norm=o.norm, quantize=o.quantize, mode=o.mode, early_stop=o.early_stop),
        "one signed-gradient step of eps",
    ),
    AttackEntry(
        "pgd",
        lambda m, e, o: PGD(
            m,
            e,
            _pgd_step(e, o),
            o.steps,
            norm=o.norm,
            random_start=o.random_start,
            restarts=o.restarts,
            quantize=o.quantize,
            generator=o.generator,
            mode=o.mode,
            early_stop=o.early_stop,
        ),
        "projected gradient descent, restarts, the default step rule",
    ),
    AttackEntry(
        "ball",
        lambda m, e, o: NoiseBall(m, e, o.copies, norm=o.norm, quantize=o.quantize, generator=o.generator, mode=o.mode),
        "worst of `copies` uniform noisy copies (no gradient)",
    ),
    AttackEntry(
        "autoattack",
        lambda m, e, o: AutoAttack(m, e, norm=o.norm, seed=o.seed, mode=o.mode),
        "AutoAttack standard (pyautoattack)",
    ),
    AttackEntry(
        "square",
        lambda m, e, o: Square(m, e, norm=o.norm, queries=o.queries, seed=o.seed, mode=o.mode),
        "Square, score-based black box (pyautoattack)",
    ),
    AttackEntry(
        "fastfgsm",
        lambda m, e, o: FastFGSM(m, e, o.alpha, norm=o.norm, quantize=o.quantize, generator=o.generator, mode=o.mode),
        "FGSM from a random start, step 1.25 eps by default (training)",
        evaluates=False,
    ),
):
    register_attack(_entry)


def make_attack(
    name: str,
    model: nn.Module,
    eps: float,
    *,
    norm: str = "linf",
    alpha: float | None = None,
    steps: int = 20,
    restarts: int = 1,
    copies: int = 10,
    random_start: bool = False,
    quantize: bool = False,
    generator=None,
    mode: str = "eval",
    seed: int | None = 0,
    early_stop: bool = False,
    queries: int = 5000,
) -> Attack:
    """The attack `name` (a registered name or alias, `attack_names()`) built by its registry entry.

    Args:
        name: fgsm | pgd | ball | autoattack | square | fastfgsm (alias fast).
        model: takes float images B x C x H x W in [0, 1].
        eps, alpha: pixel units; alpha defaults to the one step rule `default_step(eps, quantize, norm)` for
            pgd (eps / 4, at least 1/255 when quantised linf), to 1.25 eps for fastfgsm; unused by fgsm/ball.
        steps, restarts, random_start: pgd; copies: ball; seed: autoattack and square; queries: square's model
            calls per image; generator: random starts and noise.
        quantize: round to 8-bit levels after each step; mode: "eval" or "keep" (craft in the current mode).
        early_stop: fgsm/pgd stop per sample at the first misclassified iterate (accuracy evaluation).
    Returns:
        An `Attack`: `attack(x, y) -> x_adv` (same shape as x, inside the eps-ball n [0, 1]).
    """
    entry = get_attack(name)
    options = AttackOptions(
        norm=norm,
        alpha=alpha,
        steps=steps,
        restarts=restarts,
        copies=copies,
        random_start=random_start,
        quantize=quantize,
        generator=generator,
        mode=mode,
        seed=seed,
        early_stop=early_stop,
        queries=queries,
    )
    return entry.build(model, eps, options)


__all__ = [
    "ALIASES",
    "REGISTRY",
    "AttackEntry",
    "AttackOptions",
    "attack_names",
    "get_attack",
    "make_attack",
    "register_attack",
]
