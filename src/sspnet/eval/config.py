"""What `sspnet.eval.evaluate` runs: `EvalConfig` (attacks, eps in pixel units, PGD settings, image subset,
early stop) and its validation."""
from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass
from typing import Any, Sequence

from sspnet.attacks import ATTACKS
from sspnet.attacks.base import LEVELS, check_count, check_eps, check_norm, check_positive, sub_quantum
from sspnet.eval.results import WORST
from sspnet.io.jsonio import to_jsonable

ALL_ATTACKS = ("fgsm", "pgd", "ball")  # what attack="all" runs (add autoattack explicitly: "all,autoattack")
_NORM_P = {"linf": math.inf, "l2": 2.0, "l1": 1.0}


@dataclass
class EvalConfig:
    """What `evaluate` runs. eps/alpha in pixel units; eps_unit only labels results in the CLI's units."""

    attack: str = "pgd"  # fgsm | pgd | ball | autoattack | all, or a comma list ("fgsm,pgd")
    norm: str = "linf"  # linf | l2
    eps: Sequence[float] = (0.3,)
    alpha: float | None = None  # PGD step; None: alpha_rel * eps (at least 1/255 when quantised linf)
    alpha_rel: float = 0.25
    steps: int = 20  # PGD iterations
    restarts: int = 1
    copies: int = 10  # noise-ball copies
    random_start: bool = False
    batch_size: int = 100
    n_images: int | None = None  # class-stratified subset of the split (`sspnet.data.subsets`); None: all
    subset_seed: int = 0  # seed of that subset rule
    device: str | None = None  # None: the model's device
    quantize: bool = True  # round to 8-bit levels after each step (the original's behaviour)
    seed: int = 0  # random starts and noise
    keep_adv: int | None = None  # adversarial images kept per eps and rank (CPU); None: all, 0: none
    keep_attack: str = WORST  # whose images are kept: "worst" (per-sample worst case) or an attack name
    eps_unit: float = 1.0
    early_stop: bool | None = None  # True: clean-misclassified images not attacked, fgsm/pgd stop per image at
    # the first misclassified iterate; False: every attack in full; None: True when no images are kept (keep_adv=0)
    queries: int = 5000  # square: model calls per image

    def attack_names(self) -> list[str]:
        """The attacks to run, in order ("all" expanded); ValueError for an unknown name."""
        names: list[str] = []
        for part in str(self.attack).lower().replace(" ", "").split(","):
            for name in (ALL_ATTACKS if part == "all" else (part,)):
                if name not in ATTACKS:
                    raise ValueError(f"unknown attack {part!r}; valid attacks: {', '.join(ATTACKS)}, all")
                if name not in names:
                    names.append(name)
        return names

    def validated(self) -> "EvalConfig":
        """A normalised copy; ValueError naming the bad field otherwise."""
        norm = check_norm(self.norm)
        eps = [self.eps] if isinstance(self.eps, (int, float)) else list(self.eps)
        if not eps:
            raise ValueError("eps: give at least one value")
        eps = [check_eps(e, norm) for e in eps]
        for e in eps:
            if sub_quantum(e, self.quantize):
                raise ValueError(f"eps={e:.4g} (pixel units) is below one 8-bit level and quantize is on, so every "
                                 f"perturbation rounds to 0: the smallest eps that moves a pixel is 1/255 = "
                                 f"{1 / LEVELS:.6f}; or set quantize=False")
        if self.alpha is not None and check_positive(self.alpha, "alpha") * LEVELS < 0.5 and self.quantize \
                and norm == "linf":
            raise ValueError(f"alpha={self.alpha:.4g} (pixel units) is below half an 8-bit level and quantize is on, "
                             "so every PGD step rounds back: use alpha >= 1/255 or quantize=False")
        check_positive(self.alpha_rel, "alpha_rel")
        for name, low in (("steps", 0), ("restarts", 1), ("copies", 1), ("batch_size", 1), ("queries", 1)):
            check_count(getattr(self, name), name, low)
        for name, low in (("n_images", 1), ("keep_adv", 0)):
            if getattr(self, name) is not None:
                check_count(getattr(self, name), name, low)
        names = self.attack_names()
        if self.keep_attack != WORST and self.keep_attack not in names:
            raise ValueError(f"keep_attack must be 'worst' or one of the attacks run ({', '.join(names)}), got "
                             f"{self.keep_attack!r}")
        return dataclasses.replace(self, norm=norm, eps=tuple(eps))

    def uses_early_stop(self) -> bool:
        """Whether `evaluate` stops early (see `early_stop`)."""
        return self.keep_adv == 0 if self.early_stop is None else bool(self.early_stop)

    def alpha_for(self, eps: float) -> float:
        """The PGD step at eps (pixel units)."""
        if self.alpha is not None:
            return float(self.alpha)
        alpha = eps * self.alpha_rel
        if self.quantize and self.norm == "linf":
            alpha = max(alpha, 1 / 255)  # a smaller step would be rounded away
        return max(alpha, 1e-12)

    def to_dict(self) -> dict[str, Any]:
        return to_jsonable(self)
