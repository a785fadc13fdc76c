"""What `sspnet.eval.evaluate` runs: `EvalConfig` (attacks, the threat model, the radii in pixel units, image
subset, early stop) and its validation."""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from sspnet.attacks import DEFAULTS, ThreatModel, attack_names, get_attack, threat_config
from sspnet.attacks.base import check_count
from sspnet.eval.results import WORST

ALL_ATTACKS = ("fgsm", "pgd", "ball")  # what attack="all" runs (add autoattack explicitly: "all,autoattack")
_NORM_P = {"linf": math.inf, "l2": 2.0, "l1": 1.0}
_USE = DEFAULTS["evaluate"]


@threat_config
@dataclass
class EvalConfig:
    """What `evaluate` runs. eps / alpha in pixel units; eps_unit only labels results in the CLI's units.

    threat: norm, PGD step (alpha, or alpha_rel * eps: `ThreatModel.step`), steps, restarts, random start,
    8-bit rounding; its fields are also taken and shown flat (`EvalConfig(eps=[0.1], steps=10)`, `cfg.steps`).
    eps: the radii evaluated (a number or a sequence; None: (threat.eps,)); `validated()` sets threat.eps to
    the first. Defaults: `sspnet.attacks.DEFAULTS["evaluate"]`.
    """

    attack: str = "pgd"  # fgsm | pgd | ball | autoattack | square | all, or a comma list ("fgsm,pgd")
    threat: ThreatModel = _USE.threat
    eps: Sequence[float] | None = None
    copies: int = 10  # noise-ball copies
    batch_size: int = _USE.batch_size
    n_images: int | None = _USE.n_images  # class-stratified subset of the split (`sspnet.data.subsets`); None: all
    subset_seed: int = 0  # seed of that subset rule
    device: str | None = None  # None: the model's device
    seed: int = _USE.seed  # random starts and noise
    keep_adv: int | None = None  # adversarial images kept per eps and rank (CPU); None: all, 0: none
    keep_attack: str = WORST  # whose images are kept: "worst" (per-sample worst case) or an attack name
    eps_unit: float = 1.0
    early_stop: bool | None = None  # True: clean-misclassified images not attacked, fgsm/pgd stop per image at
    # the first misclassified iterate; False: every attack in full; None: True when no images are kept (keep_adv=0)
    queries: int = 5000  # square: model calls per image

    def attack_names(self) -> list[str]:
        """The attacks to run, in order ("all" expanded); ValueError for a name evaluate does not run."""
        names: list[str] = []
        for part in str(self.attack).lower().replace(" ", "").split(","):
            for name in ALL_ATTACKS if part == "all" else (part,):
                if not _evaluates(name):
                    valid = ", ".join(attack_names(evaluates=True))
                    raise ValueError(f"unknown attack {part!r}; valid attacks: {valid}, all")
                if name not in names:
                    names.append(name)
        return names

    def radii(self) -> list[Any]:
        """The radii as given (eps, or [threat.eps] when eps is None)."""
        if self.eps is None:
            return [self.threat.eps]
        return [self.eps] if isinstance(self.eps, (int, float)) else list(self.eps)

    def validated(self) -> EvalConfig:
        """A normalised copy (eps a tuple, threat at its first radius); ValueError naming the bad field."""
        eps = self.radii()
        if not eps:
            raise ValueError("eps: give at least one value")
        threat = self.threat.at(eps[0]) if eps[0] is not None else self.threat
        threat = threat.validated()
        eps = [threat.at(e).validated().eps for e in eps]
        for name, low in (("copies", 1), ("batch_size", 1), ("queries", 1)):
            check_count(getattr(self, name), name, low)
        for name, low in (("n_images", 1), ("keep_adv", 0)):
            if getattr(self, name) is not None:
                check_count(getattr(self, name), name, low)
        names = self.attack_names()
        if self.keep_attack != WORST and self.keep_attack not in names:
            raise ValueError(
                f"keep_attack must be 'worst' or one of the attacks run ({', '.join(names)}), got {self.keep_attack!r}"
            )
        return dataclasses.replace(self, threat=threat, eps=tuple(eps))

    def uses_early_stop(self) -> bool:
        """Whether `evaluate` stops early (see `early_stop`)."""
        return self.keep_adv == 0 if self.early_stop is None else bool(self.early_stop)

    def alpha_for(self, eps: float) -> float:
        """The PGD step at eps (pixel units): `threat.step(eps)`, the one default step rule."""
        return self.threat.step(eps)


def _evaluates(name: str) -> bool:
    """Whether `name` is the registered name (not an alias) of an attack evaluate runs."""
    try:
        entry = get_attack(name)
    except ValueError:
        return False
    return entry.evaluates and entry.name == name
