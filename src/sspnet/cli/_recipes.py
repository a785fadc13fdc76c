"""The resolved training recipe of every dataset, for `sspnet train --help`: generated from the tables
(`sspnet.train.options.DATASET_RECIPES` / `ORIGINAL_RECIPE`, `sspnet.train.optim`'s rules, the dataset specs)
through `TrainConfig.resolved()` and `sspnet.train.sources.option_sources`, so no number is written here."""

from __future__ import annotations

from typing import Any

from sspnet.cli._options import default_text, per_dataset

# the columns: (heading, TrainConfig fields); train eps / alpha in each dataset's CLI unit
COLUMNS = (
    ("opt", ("opt",)),
    ("lr", ("lr",)),
    ("batch", ("batch_size",)),
    ("schedule", ("schedule",)),
    ("decay", ("decay",)),
    ("milestones", ("milestones",)),
    ("train eps/alpha/steps", ("eps", "alpha", "steps")),
)
MARKS = {"dataset recipe": "r", "original recipe": "o", "dataset spec": "s"}


def resolved(dataset: str) -> tuple[Any, dict[str, str]]:
    """The resolved TrainConfig of a run on `dataset` that gives no other option, and each option's source."""
    from sspnet.train import TrainConfig
    from sspnet.train.sources import option_sources

    cfg = TrainConfig(dataset=dataset)
    return cfg.resolved(), option_sources(cfg)


def recipe_value(dataset: str, name: str) -> Any:
    """One resolved option of `dataset` (no other option given), for the --help defaults (`per_dataset`)."""
    return getattr(resolved(dataset)[0], name)


def recipe_default(name: str) -> str:
    """'the dataset's, 8 on mnist5k, 128 on mnist/fmnist/cifar10/tiny': a recipe option per dataset."""
    return per_dataset(lambda spec: recipe_value(spec.name, name))


def _cell(cfg: Any, names: tuple[str, ...], sources: dict[str, str]) -> str:
    """'0.3/0.05/10 s': the values of `names`, '/'-joined, marked with their source (`MARKS`) when they share one."""
    from sspnet.data.specs import get_dataset_spec
    from sspnet.train.options import to_cli_units

    texts = []
    for name in names:
        value = getattr(cfg, name)
        if name in ("eps", "alpha"):
            value = to_cli_units(value, get_dataset_spec(cfg.dataset))
        texts.append("-" if name == "milestones" and cfg.schedule != "multistep" else default_text(value))
    marks = [MARKS.get(sources[name], "?") for name in names]
    return f"{'/'.join(texts)} {marks[0] if len(set(marks)) == 1 else ','.join(marks)}"


def recipe_table() -> str:
    """The --help epilog: one line per dataset with its resolved recipe, each value marked with its source."""
    from sspnet.data.specs import DATASETS
    from sspnet.train import TrainConfig
    from sspnet.train.optim import OPTIMIZERS, default_lr
    from sspnet.train.options import flag

    heads = ["dataset", *(h for h, _ in COLUMNS), "lr of --opt " + "/".join(OPTIMIZERS)]
    rows = []
    for name, spec in DATASETS.items():
        cfg, sources = resolved(name)
        lrs = "/".join(default_text(default_lr(spec.arch, o)) for o in OPTIMIZERS)
        rows.append([name, *(_cell(cfg, names, sources) for _, names in COLUMNS), f"{lrs} o"])
    widths = [max(len(r[i]) for r in [heads, *rows]) for i in range(len(heads))]
    lines = ["  " + "  ".join(c.ljust(w) for c, w in zip(r, widths)).rstrip() for r in [heads, *rows]]
    return "\n".join(
        [
            "The training recipe of each dataset, for the options not given (r: the dataset's recipe, o: the",
            "original's rules, s: the dataset's spec; train eps / alpha in the dataset's CLI unit; milestones for",
            f"{flag('epochs')} {TrainConfig.epochs}, --adv {TrainConfig.adv}, --model {TrainConfig.model}; -: unused "
            "by the schedule):",
            *lines,
            "Each flag replaces its own value only: --opt keeps the dataset's batch size and schedule. The recipe's",
            "lr belongs to the recipe's optimizer: an --opt other than it takes the original's lr for that",
            "optimizer (last column) unless --lr is given. config.json records where each value came from",
            '("sources": flag, config file, dataset recipe, original recipe, dataset spec, default).',
        ]
    )
