"""The defaults of every use of the threat model, stated once.

`DEFAULTS` holds, per use, the attack settings (`ThreatModel`), the evaluation batch size, the images and the
seed: the dataclass defaults of `sspnet.eval.EvalConfig` ("evaluate"), `AuditConfig` ("audit"),
`GrowthConfig` ("growth") and compare's `EvalSettings` ("compare", the default preset's; the other presets
list what they change) are read from it. The training threat model of each dataset is its `DatasetSpec`
(train_eps, train_alpha, train_iters; `dataset_threat`). `help_default(source, name)` renders any of these
defaults for a --help text, so no default is written by hand a second time.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from sspnet.attacks.threat import THREAT_FIELDS, ThreatModel


@dataclass(frozen=True)
class UseDefaults:
    """The defaults of one use: threat (eps None: from the dataset), batch_size (images per batch), n_images
    (class-stratified test images; None: all), seed (random starts and noise)."""

    threat: ThreatModel
    batch_size: int
    n_images: int | None
    seed: int = 0


DEFAULTS: dict[str, UseDefaults] = {
    # sspnet.eval.evaluate / `sspnet attack`: PGD-20 from the image itself, rounded to 8 bits, step eps / 4
    "evaluate": UseDefaults(ThreatModel(eps=0.3, steps=20), batch_size=100, n_images=None),
    # sspnet.eval.audit: the same white-box PGD (its long run: AuditConfig.long_steps)
    "audit": UseDefaults(ThreatModel(eps=0.3, steps=20), batch_size=100, n_images=None),
    # sspnet.eval.measure_growth / `sspnet growth`: the paper's PGD-20 at the dataset's training eps and step
    "growth": UseDefaults(ThreatModel(eps=None, steps=20), batch_size=100, n_images=500),
    # sspnet compare (the default preset): PGD-10 with 2 restarts (random starts), eps from the preset / dataset
    "compare": UseDefaults(ThreatModel(eps=None, steps=10, restarts=2), batch_size=250, n_images=None),
}


def default_of(source: Any, name: str) -> Any:
    """The default of option `name` of `source`: a use of `DEFAULTS` ("evaluate", ...), a `UseDefaults`, a
    config dataclass (class: its field default, or its threat field's; instance: its value) or a mapping of
    options (a preset's). ValueError naming the valid options when `name` is not one."""
    if isinstance(source, str):
        if source not in DEFAULTS:
            raise ValueError(f"unknown use {source!r}; valid uses: {', '.join(DEFAULTS)}")
        source = DEFAULTS[source]
    if isinstance(source, Mapping):
        if name not in source:
            raise ValueError(f"no option {name!r} here; options: {', '.join(map(str, source))}")
        return source[name]
    if not dataclasses.is_dataclass(source):
        raise ValueError(f"help_default takes a use name, a config dataclass or a mapping, got {source!r}")
    if not isinstance(source, type):
        if name in THREAT_FIELDS and hasattr(source, "threat") and not _own_field(source, name):
            return getattr(source.threat, name)
        return getattr(source, name)
    fields = {f.name: f for f in dataclasses.fields(source)}
    if name not in fields and name in THREAT_FIELDS and "threat" in fields:
        return getattr(_field_default(fields["threat"]), name)
    if name not in fields:
        valid = list(fields) + ([n for n in THREAT_FIELDS if n not in fields] if "threat" in fields else [])
        raise ValueError(f"{source.__name__} has no option {name!r}; options: {', '.join(valid)}")
    return _field_default(fields[name])


def help_default(source: Any, name: str, *, unit: float = 1.0, none: str = "none", prefix: str = "default ") -> str:
    """'default 20': the default of option `name` of `source` (see `default_of`) for a --help text.

    unit: the CLI unit of a pixel-unit value (eps / alpha: the dataset's eps_unit, 1/255 on cifar10), the
    value shown is value / unit; none: the words for a None default ("all", "the dataset's"); booleans show
    as on / off, sequences comma-separated."""
    return prefix + format_default(default_of(source, name), unit=unit, none=none)


def format_default(value: Any, *, unit: float = 1.0, none: str = "none") -> str:
    """A default value as a --help text shows it (numbers / unit, 6 significant digits)."""
    if value is None:
        return none
    if isinstance(value, bool):
        return "on" if value else "off"
    if isinstance(value, (int, float)):
        v = value / unit if unit != 1 else value
        return f"{v:.6g}" if isinstance(v, float) else str(v)
    if isinstance(value, (list, tuple)):
        return ", ".join(format_default(v, unit=unit, none=none) for v in value)
    return str(value)


def _field_default(f: dataclasses.Field) -> Any:
    if f.default is not dataclasses.MISSING:
        return f.default
    if f.default_factory is not dataclasses.MISSING:
        return f.default_factory()
    raise ValueError(f"option {f.name!r} has no default")


def _own_field(obj: Any, name: str) -> bool:
    return name in {f.name for f in dataclasses.fields(obj)}


__all__ = ["DEFAULTS", "UseDefaults", "default_of", "format_default", "help_default"]
