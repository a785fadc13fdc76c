"""Where each training option's value came from: config.json's "sources" ({option: source} for every
TrainConfig field), written by `sspnet.train.train` beside "defaulted" (the options left at None).

Sources:
- "flag": given on the `sspnet train` command line; "config file": from its --config file; "preset": set by a
  `sspnet compare` preset; "caller": set by a library caller (see below).
- "dataset recipe": `DATASET_RECIPES` (mnist5k's opt, lr, batch size, schedule).
- "original recipe": the original's rules (`ORIGINAL_RECIPE`, `default_lr`, `default_decay`,
  `default_milestones`).
- "dataset spec": the dataset's training threat model (eps, alpha, PGD steps) and its architecture (blocks,
  norm, init, left at None in config.json and filled when the model is built).
- "default": the dataclass default (a value, or a rule its docstring states: the run folder, select_on, ...).
- "resumed run": kept from a resumed run whose config.json recorded no sources.

A library caller may pass `given` ({option: source}, or the names it set: "caller"). Without it a set value
cannot be told from a default equal to it: an option whose value differs from its dataclass default counts as
"caller", one equal to it as "default". Nothing here enters a run's identity or a compare hash.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterable, Mapping
from typing import Any

from sspnet.train.options import RECIPE_FIELDS, recipe_source

FLAG, CONFIG_FILE, PRESET, CALLER = "flag", "config file", "preset", "caller"
DATASET_RECIPE, ORIGINAL, SPEC, DEFAULT, RESUMED = (
    "dataset recipe",
    "original recipe",
    "dataset spec",
    "default",
    "resumed run",
)
ORIGINAL_RULES = ("decay", "milestones")  # `default_decay`, `default_milestones`
SPEC_FIELDS = ("steps", "eps", "alpha", "blocks", "norm", "init")  # `dataset_threat`, the architecture's
UNKNOWN = (CALLER, DEFAULT)  # what a value not given reads as: a resume keeps the source it recorded


def given_sources(given: Mapping[str, str] | Iterable[str] | None) -> dict[str, str]:
    """{option: source} of the options a caller set: a mapping as it is, names as "caller", None as none."""
    if given is None:
        return {}
    if isinstance(given, Mapping):
        return {str(k): str(v) for k, v in given.items()}
    return dict.fromkeys(map(str, given), CALLER)


def option_sources(cfg: Any, given: Mapping[str, str] | Iterable[str] | None = None) -> dict[str, str]:
    """{field: source} for every field of the TrainConfig `cfg` as the caller built it (before `resolved()`):
    a given option (set, not None) its source in `given`; an option left at None the rule `resolved()` fills it
    with; any other option "caller" when it differs from its dataclass default, else "default"."""
    told = given_sources(given)
    out = {}
    for f in dataclasses.fields(cfg):
        name, value = f.name, getattr(cfg, f.name)
        if value is not None and name in told:
            out[name] = told[name]
        elif value is None:
            out[name] = _filled_by(cfg, name)
        else:
            out[name] = DEFAULT if value == _field_default(f) else CALLER
    return out


def _filled_by(cfg: Any, name: str) -> str:
    if name in RECIPE_FIELDS:
        return recipe_source(cfg.dataset, name, cfg.opt)
    if name in ORIGINAL_RULES:
        return ORIGINAL
    if name in SPEC_FIELDS:
        return SPEC
    return DEFAULT


def _field_default(f: dataclasses.Field) -> Any:
    if f.default is not dataclasses.MISSING:
        return f.default
    if f.default_factory is not dataclasses.MISSING:
        return f.default_factory()
    return dataclasses.MISSING


def resumed_sources(
    sources: Mapping[str, str], cfg: Any, saved: Mapping[str, Any], meta: Mapping[str, Any]
) -> dict[str, str]:
    """A resumed run's sources: an option not given now ("caller" / "default": `UNKNOWN`) whose value is the
    one config.json holds keeps the source recorded there (a defaulted milestones list, derived again for the
    new --epochs, is None here and takes its rule). A config.json without sources (earlier versions): its
    "defaulted" options take the rule that fills them (`option_sources` of the saved config with those at
    None), its other values "resumed run" unless they are the dataclass default. cfg: the resolved config of
    this start; saved / meta: `read_run_config` / `read_run_meta` of the folder."""
    recorded = dict(meta.get("sources") or {}) or _reconstructed(cfg, saved, list(meta.get("defaulted") or []))
    out = dict(sources)
    for name, source in sources.items():
        unchanged = name in saved and saved[name] == getattr(cfg, name, None)
        if source in UNKNOWN and unchanged and name in recorded:
            out[name] = recorded[name]
    return out


def _reconstructed(cfg: Any, saved: Mapping[str, Any], defaulted: list[str]) -> dict[str, str]:
    """The sources a config.json without them implies (`resumed_sources`); {} when it no longer builds."""
    names = {f.name for f in dataclasses.fields(cfg)}
    try:
        old = type(cfg).from_dict({k: v for k, v in saved.items() if k in names and k not in defaulted})
    except (TypeError, ValueError):
        return {}
    return {k: RESUMED if v == CALLER else v for k, v in option_sources(old).items()}
