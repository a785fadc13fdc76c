"""The threat model: one dataclass for the attack settings that training's adversary, evaluation, growth,
the gradient-masking audit and compare share, and the one default PGD step rule.

    tm = ThreatModel(eps=0.2, steps=10, restarts=2)      # pixel units
    tm.step()                                           # alpha: 0.05 (alpha_rel * eps)
    tm.at(0.3).step()                                   # the same rule at another eps
    attack = tm.attack("pgd", model)                    # via `sspnet.attacks.make_attack`

Every eps / alpha is in pixel units [0, 1]; a CLI converts its own units at its edge.
"""
from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Any, Mapping

from sspnet.attacks.base import LEVELS, check_count, check_eps, check_norm, check_positive, sub_quantum

DEFAULT_ALPHA_REL = 0.25  # the default PGD step: alpha = eps / 4
MIN_ALPHA = 1e-12


def default_step(eps: float, *, alpha_rel: float = DEFAULT_ALPHA_REL, quantize: bool = False,
                 norm: str = "linf") -> float:
    """The one default PGD step rule (pixel units): alpha_rel * eps, raised to one 8-bit level (1/255) when
    linf steps are rounded to the 8-bit grid (a smaller step would round back to the start)."""
    alpha = float(eps) * float(alpha_rel)
    if quantize and norm == "linf":
        alpha = max(alpha, 1 / LEVELS)
    return max(alpha, MIN_ALPHA)


@dataclass(frozen=True)
class ThreatModel:
    """The attack settings: norm, radius eps, PGD step (alpha, or alpha_rel * eps), steps, restarts, random
    start, 8-bit rounding. eps / alpha in pixel units.

    norm: linf | l2. alpha: None means `default_step(eps, alpha_rel=alpha_rel, ...)`. steps: PGD iterations.
    restarts: PGD runs per image, the worst case kept. quantize: round to 8-bit levels after every step.
    """

    norm: str = "linf"
    eps: float = 0.3
    alpha: float | None = None
    alpha_rel: float = DEFAULT_ALPHA_REL
    steps: int = 20
    restarts: int = 1
    random_start: bool = False
    quantize: bool = True

    def step(self, eps: float | None = None) -> float:
        """The PGD step (pixel units) at eps (default: self.eps)."""
        if self.alpha is not None:
            return float(self.alpha)
        return default_step(self.eps if eps is None else eps, alpha_rel=self.alpha_rel, quantize=self.quantize,
                            norm=self.norm)

    def at(self, eps: float) -> "ThreatModel":
        """The same threat model at another radius (a set alpha stays as it is)."""
        return dataclasses.replace(self, eps=float(eps))

    def validated(self, *, min_steps: int = 0) -> "ThreatModel":
        """A normalised copy; ValueError naming the bad field (and the allowed values) otherwise."""
        norm = check_norm(self.norm)
        eps = check_eps(self.eps, norm)
        if sub_quantum(eps, self.quantize):
            raise ValueError(f"eps={eps:.4g} (pixel units) is below one 8-bit level and quantize is on, so every "
                             f"perturbation rounds to 0: the smallest eps that moves a pixel is 1/255 = "
                             f"{1 / LEVELS:.6f}; or set quantize=False")
        alpha = None if self.alpha is None else check_positive(self.alpha, "alpha")
        if alpha is not None and alpha * LEVELS < 0.5 and self.quantize and norm == "linf":
            raise ValueError(f"alpha={alpha:.4g} (pixel units) is below half an 8-bit level and quantize is on, so "
                             "every PGD step rounds back: use alpha >= 1/255 or quantize=False")
        check_positive(self.alpha_rel, "alpha_rel")
        check_count(self.steps, "steps", min_steps)
        check_count(self.restarts, "restarts", 1)
        return dataclasses.replace(self, norm=norm, eps=eps, alpha=alpha, alpha_rel=float(self.alpha_rel),
                                   random_start=bool(self.random_start), quantize=bool(self.quantize))

    def attack(self, name: str, model: Any, *, eps: float | None = None, **options: Any) -> Any:
        """`sspnet.attacks.make_attack(name, model, ...)` with this threat model's settings at eps (default
        self.eps); `options` are the attack's other keywords (mode, generator, early_stop, seed, ...)."""
        from sspnet.attacks import make_attack

        e = self.eps if eps is None else float(eps)
        return make_attack(name, model, e, norm=self.norm, alpha=self.step(e), steps=self.steps,
                           restarts=self.restarts, random_start=self.random_start, quantize=self.quantize,
                           **options)

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> "ThreatModel":
        """From a mapping of its fields (other keys are refused with the valid names)."""
        names = [f.name for f in dataclasses.fields(cls)]
        unknown = sorted(set(d) - set(names))
        if unknown:
            raise ValueError(f"unknown threat-model option(s) {', '.join(unknown)}; valid: {', '.join(names)}")
        return cls(**dict(d))

    @classmethod
    def field_names(cls) -> tuple[str, ...]:
        return tuple(f.name for f in dataclasses.fields(cls))
