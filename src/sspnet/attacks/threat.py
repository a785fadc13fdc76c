"""The threat model: one dataclass for the attack settings that training's adversary, evaluation, growth,
the gradient-masking audit and compare share; its `step` applies the one default PGD step rule
(`default_step`, in `sspnet.attacks.base`, which `make_attack` uses too).

    tm = ThreatModel(eps=0.2, steps=10, restarts=2)      # pixel units
    tm.step()                                           # alpha: 0.05 (alpha_rel * eps)
    tm.at(0.3).step()                                   # the same rule at another eps
    attack = tm.attack("pgd", model)                    # via `sspnet.attacks.make_attack`

A config that holds a `threat: ThreatModel` field is decorated with `threat_config`: it then also takes and
shows the threat model's fields flat (`EvalConfig(eps=[0.1], steps=10)`, `cfg.steps`), and its `from_dict` /
`to_dict` read and write the flat option dicts of earlier versions.

Every eps / alpha is in pixel units [0, 1]; a CLI converts its own units at its edge.
"""

from __future__ import annotations

import dataclasses
import functools
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from sspnet.attacks.base import (
    DEFAULT_ALPHA_REL,
    LEVELS,
    check_count,
    check_eps,
    check_norm,
    check_positive,
    default_step,
    sub_quantum,
)
from sspnet.attacks.registry import make_attack

_NO_EPS = "the threat model has no eps yet: give eps (pixel units) or a dataset to take it from"


@dataclass(frozen=True)
class ThreatModel:
    """The attack settings: norm, radius eps, PGD step (alpha, or alpha_rel * eps), steps, restarts, random
    start, 8-bit rounding. eps / alpha in pixel units.

    norm: linf | l2. eps: None means "not chosen yet": the config holding it fills it in from the dataset.
    alpha: None means `default_step(eps, alpha_rel=alpha_rel, ...)`. steps: PGD iterations. restarts: PGD
    runs per image, the worst case kept. quantize: round to 8-bit levels after every step.
    """

    norm: str = "linf"
    eps: float | None = 0.3
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
        e = self.eps if eps is None else eps
        if e is None:
            raise ValueError(_NO_EPS)
        return default_step(e, alpha_rel=self.alpha_rel, quantize=self.quantize, norm=self.norm)

    def at(self, eps: float) -> ThreatModel:
        """The same threat model at another radius (a set alpha stays as it is; `validated` checks it)."""
        return dataclasses.replace(self, eps=eps)

    def replaced(self, **changes: Any) -> ThreatModel:
        """`dataclasses.replace` that names the valid fields when a change is not one of them."""
        check_threat_names(changes)
        return dataclasses.replace(self, **changes)

    def validated(self, *, min_steps: int = 0) -> ThreatModel:
        """A normalised copy; ValueError naming the bad field (and the allowed values) otherwise."""
        norm = check_norm(self.norm)
        if self.eps is None:
            raise ValueError("eps is not set: give the attack radius in pixel units")
        eps = check_eps(self.eps, norm)
        if sub_quantum(eps, self.quantize):
            raise ValueError(
                f"eps={eps:.4g} (pixel units) is below one 8-bit level and quantize is on, so every "
                f"perturbation rounds to 0: the smallest eps that moves a pixel is 1/255 = "
                f"{1 / LEVELS:.6f}; or set quantize=False"
            )
        alpha = None if self.alpha is None else check_positive(self.alpha, "alpha")
        if alpha is not None and alpha * LEVELS < 0.5 and self.quantize and norm == "linf":
            raise ValueError(
                f"alpha={alpha:.4g} (pixel units) is below half an 8-bit level and quantize is on, so "
                "every PGD step rounds back: use alpha >= 1/255 or quantize=False"
            )
        check_positive(self.alpha_rel, "alpha_rel")
        check_count(self.steps, "steps", min_steps)
        check_count(self.restarts, "restarts", 1)
        return dataclasses.replace(
            self,
            norm=norm,
            eps=eps,
            alpha=alpha,
            alpha_rel=float(self.alpha_rel),
            random_start=bool(self.random_start),
            quantize=bool(self.quantize),
        )

    def attack(self, name: str, model: Any, *, eps: float | None = None, **options: Any) -> Any:
        """`sspnet.attacks.make_attack(name, model, ...)` with this threat model's settings at eps (default
        self.eps); `options` are the attack's other keywords (mode, generator, early_stop, seed, ...)."""
        e = self.eps if eps is None else float(eps)
        if e is None:
            raise ValueError(_NO_EPS)
        return make_attack(
            name,
            model,
            e,
            norm=self.norm,
            alpha=self.step(e),
            steps=self.steps,
            restarts=self.restarts,
            random_start=self.random_start,
            quantize=self.quantize,
            **options,
        )

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> ThreatModel:
        """From a mapping of its fields (other keys are refused with the valid names)."""
        check_threat_names(d)
        return cls(**dict(d))

    @classmethod
    def field_names(cls) -> tuple[str, ...]:
        return tuple(f.name for f in dataclasses.fields(cls))


THREAT_FIELDS = ThreatModel.field_names()


def check_threat_names(d: Mapping[str, Any]) -> None:
    """ValueError naming the keys of d that are no ThreatModel field, and the valid ones."""
    unknown = sorted(set(d) - set(THREAT_FIELDS))
    if unknown:
        raise ValueError(f"unknown threat-model option(s) {', '.join(unknown)}; valid: {', '.join(THREAT_FIELDS)}")


def dataset_threat(dataset: str) -> ThreatModel:
    """The training threat model of a dataset (the original's adversarial training, `DatasetSpec`): linf PGD
    with a random start at spec.train_eps, step spec.train_alpha, spec.train_iters steps, 8-bit rounding."""
    from sspnet.data.specs import get_dataset_spec

    spec = get_dataset_spec(dataset)
    return ThreatModel(eps=spec.train_eps, alpha=spec.train_alpha, steps=spec.train_iters, random_start=True)


class _ThreatField:
    """A config attribute that is a field of its `threat`: reading gives `cfg.threat.<name>`, assigning
    replaces the threat model with that field changed."""

    def __set_name__(self, owner: type, name: str) -> None:
        self.name = name

    def __get__(self, obj: Any, owner: type | None = None) -> Any:
        return self if obj is None else getattr(obj.threat, self.name)

    def __set__(self, obj: Any, value: Any) -> None:
        obj.threat = dataclasses.replace(obj.threat, **{self.name: value})


def threat_config(cls: type[Any]) -> type[Any]:
    """Class decorator (above @dataclass) for a config with a `threat: ThreatModel` field.

    The threat model's fields that are not fields of the config itself become the config's too: the
    constructor takes them flat, `Config(eps=0.1, steps=10)` (applied over `threat=` when both are given),
    `cfg.steps` reads `cfg.threat.steps` and `cfg.steps = 5` replaces it. Adds, unless the class defines
    them, `from_dict(d)` (the flat keys, "threat" as a dict or ThreatModel; ValueError naming an unknown
    key and the valid ones) and `to_dict()` (the flat JSON-able dict: the threat's fields in its place).
    """
    own = [f.name for f in dataclasses.fields(cls)]
    if "threat" not in own:
        raise TypeError(f"{cls.__name__} has no threat field")
    flat = tuple(n for n in THREAT_FIELDS if n not in own)
    init = cls.__init__

    @functools.wraps(init)
    def __init__(self: Any, *args: Any, **kwargs: Any) -> None:
        given = {k: kwargs.pop(k) for k in flat if k in kwargs}
        threat = kwargs.get("threat")
        if isinstance(threat, Mapping):
            kwargs["threat"] = ThreatModel.from_dict(threat)
        init(self, *args, **kwargs)
        if given:
            self.threat = dataclasses.replace(self.threat, **given)

    cls.__init__ = __init__
    for name in flat:
        descriptor = _ThreatField()
        descriptor.__set_name__(cls, name)
        setattr(cls, name, descriptor)
    cls.THREAT_FLAT = flat
    if "from_dict" not in cls.__dict__:
        cls.from_dict = classmethod(lambda c, d: c(**check_config_names(c, d)))
    if "to_dict" not in cls.__dict__:
        cls.to_dict = flat_dict
    return cls


def config_names(cls: type) -> list[str]:
    """The option names a `threat_config` class takes: its fields, with "threat" followed by the flat ones."""
    names: list[str] = []
    for f in dataclasses.fields(cls):
        names += [f.name, *cls.THREAT_FLAT] if f.name == "threat" else [f.name]  # type: ignore[attr-defined]
    return names


def check_config_names(cls: type, d: Mapping[str, Any], what: str | None = None) -> dict[str, Any]:
    """dict(d) when every key is an option of the `threat_config` class cls; ValueError naming the first
    unknown key and the valid ones otherwise (what: the options' name in it, default "<class> option")."""
    names, what = config_names(cls), what or f"{cls.__name__} option"
    for key in d:
        if key not in names:
            raise ValueError(f"unknown {what} {key!r}; valid {what}s: {', '.join(names)}")
    return dict(d)


def flat_dict(cfg: Any) -> dict[str, Any]:
    """The flat JSON-able dict of a `threat_config` instance: its fields in order, the threat model's fields
    where `threat` stands (those the config has itself, such as EvalConfig's eps list, stay its own)."""
    from sspnet.io.jsonio import to_jsonable

    out: dict[str, Any] = {}
    for f in dataclasses.fields(cfg):
        if f.name == "threat":
            out.update({n: getattr(cfg.threat, n) for n in type(cfg).THREAT_FLAT})
        else:
            out[f.name] = getattr(cfg, f.name)
    return to_jsonable(out)
