"""Where each option of a comparison came from (`CompareConfig.resolved`, results.json's settings.sources and a
line of REPORT.md): a compare flag, the preset, or the defaults. Recorded only: no hash covers it, so the run
folders and the evaluation hash stay those of the options themselves.

    {"dataset": "preset", "models": "flag", "seeds": "preset", "grid": "preset",
     "train": {option: source}, "eval": {option: source}}

train: the options compare passes to every run ("flag" | "preset" | "preset, scaled to --epochs": a preset's
eps warm-up with other --epochs, `config._scale_warmup`), and the recipe options it leaves to the trainer, with
the source `sspnet.train.sources.option_sources` gives them ("dataset recipe", "original recipe", "dataset
spec"; e.g. the lr of an --opt other than the preset's, `config._follow_opt`); with a grid, blocks and the PGD
steps come from it. eval: every `EvalSettings` option: "flag", "preset" or "default" (`EvalSettings`' defaults,
`sspnet.attacks.DEFAULTS["compare"]`, or the rule `EvalSettings.resolve` fills it with).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

FLAG, PRESET, DEFAULT = "flag", "preset", "default"
SCALED = "preset, scaled to --epochs"
GRID_FIELDS = ("blocks", "steps")  # what a grid variant sets


def _of(given: Any) -> str:
    """A CompareConfig entry's source: None is the preset's."""
    return PRESET if given is None else FLAG


def train_sources(
    train: Mapping[str, Any],
    preset: Mapping[str, Any],
    given: Mapping[str, Any],
    dataset: str,
    grid_source: str | None = None,
) -> dict[str, str]:
    """{option: source} of the training options of a comparison (see the module docstring). train: the resolved
    options; preset: the preset's; given: the flags set; grid_source: where the grid came from (None: none)."""
    from sspnet.train import TrainConfig
    from sspnet.train.options import RECIPE_FIELDS
    from sspnet.train.sources import ORIGINAL_RULES, SPEC_FIELDS, option_sources

    out = {}
    for name in train:
        if name in given:
            out[name] = FLAG
        elif name == "eps_warmup" and train[name] != preset.get(name):
            out[name] = SCALED
        else:
            out[name] = PRESET
    rules = option_sources(TrainConfig.from_dict({**train, "dataset": dataset}))
    for name in (*RECIPE_FIELDS, *ORIGINAL_RULES, *SPEC_FIELDS):
        out.setdefault(name, rules[name])
    if grid_source is not None:
        out.update(dict.fromkeys(GRID_FIELDS, grid_source))
    return out


def eval_sources(preset: Mapping[str, Any], given: Mapping[str, Any], names: Any) -> dict[str, str]:
    """{option: source} of every evaluation option in `names` (the flat `EvalSettings` options): flag, preset
    or default."""
    return {name: FLAG if name in given else PRESET if name in preset else DEFAULT for name in names}


def compare_sources(
    config: Any, preset: Mapping[str, Any], train: Mapping[str, Any], dataset: str, eval_names: Any
) -> dict[str, Any]:
    """The sources of a `CompareConfig` resolved against its preset entry (`PRESETS[config.preset]`); train:
    the resolved training options; eval_names: the flat `EvalSettings` options."""
    given_train = {k: v for k, v in config.train.items() if v is not None}
    given_eval = {k: v for k, v in config.eval.items() if v is not None}
    grid = config.grid if config.grid is not None else preset["grid"]
    return {
        "dataset": _of(config.dataset),
        "models": _of(config.models),
        "seeds": _of(config.seeds),
        "grid": _of(config.grid),
        "train": train_sources(train, preset["train"], given_train, dataset, _of(config.grid) if grid else None),
        "eval": eval_sources(preset["eval"], given_eval, eval_names),
    }


def sources_line(sources: Mapping[str, Any]) -> list[str]:
    """REPORT.md's line: '- option sources (...): dataset preset, ...; training (flag: epochs; preset: adv, ...),
    evaluation (...)'; none for the context of an earlier version, which has no sources."""
    if not sources:
        return []
    parts = []
    for section, words in (("train", "training"), ("eval", "evaluation")):
        by: dict[str, list[str]] = {}
        for name, source in (sources.get(section) or {}).items():
            by.setdefault(source, []).append(name)
        groups = [f"{source}: {', '.join(sorted(names))}" for source, names in by.items()]
        parts.append(f"{words} ({'; '.join(groups)})")
    top = ", ".join(f"{k} {sources[k]}" for k in ("dataset", "models", "seeds", "grid") if k in sources)
    return [f"- option sources (results.json settings.sources; flag: the command line): {top}; {', '.join(parts)}"]
