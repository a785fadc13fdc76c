"""The names, units and recipes of the training options: the alias and flag tables, the dataset recipes
(`default_recipe`), CLI units <-> pixel units, and what config.json files of earlier versions lack.
`sspnet.train.config.TrainConfig` and `sspnet.train.run_config` read them; nothing here imports either."""

from __future__ import annotations

from typing import Any

from sspnet.data.specs import DatasetSpec, get_dataset_spec

DEFAULT_DATASET = "mnist5k"  # TrainConfig.dataset
# options added after the first config.json format, at the value runs had before them
LEGACY_VALUES = {"val_split": 0.0, "select_on": "test", "train_quantize": False, "eps_warmup": 0.0, "step_size": 1.0}
# defaults that depend on --epochs: a resumed run with a new --epochs derives them again (`resume_options`)
EPOCH_DEPENDENT = ("milestones",)
# other names accepted by `TrainConfig.from_dict`: the original code's and those of earlier sspnet versions
ALIASES = {
    "tbsize": "batch_size",
    "block": "blocks",
    "checkpoint": "activation_checkpointing",
    "data-root": "data_root",
    "iters": "steps",
    "test_limit": "eval_n_images",
}
# The original's recipe (its full-MNIST / CIFAR-10 / TinyImageNet defaults; lr and decay from `default_lr` /
# `default_decay`). The embedded mnist5k (4,000 training digits) is not the original's data: with that recipe
# (plain SGD lr 0.1, batch 128) 2 epochs of a 1-block res end at 20-51% test accuracy, so mnist5k has its own
# (`DATASET_RECIPES`). Each option given replaces its own value only (`default_recipe`): --opt leaves the
# recipe's batch size and schedule; the recipe's lr goes with the recipe's optimizer.
ORIGINAL_RECIPE: dict[str, Any] = {"opt": "sgd", "batch_size": 128, "schedule": "multistep"}
DATASET_RECIPES: dict[str, dict[str, Any]] = {
    "mnist5k": {"opt": "adam", "lr": 2e-3, "batch_size": 8, "schedule": "cyclic"},
}
RECIPE_FIELDS = ("opt", "lr", "batch_size", "schedule")  # the options a recipe may fix

# options that say how to start this process, not what the run is: never taken from a run's config.json
RUNTIME_ONLY = ("resume", "force")
# the canonical `sspnet train` flag of each option whose flag is not --name-with-dashes (the CLI vocabulary,
# `sspnet.cli._options.VOCABULARY`; the messages name these, the original's names are aliases): `flag`
FLAGS = {
    "norm": "--norm-layer",
    "activation_checkpointing": "--checkpoint",
    "steps": "--train-pgd-steps",
    "eps": "--train-eps",
    "alpha": "--train-alpha",
    "save": "--out",
}


def default_recipe(dataset: str, opt: str | None = None) -> dict[str, Any]:
    """The defaults of opt, batch_size, schedule (and lr, where the recipe fixes it) for a dataset: its own
    recipe (`DATASET_RECIPES`: mnist5k) over the original's (`ORIGINAL_RECIPE`), whether --opt is given or not.

    Each option the caller sets replaces only its own value (`TrainConfig.resolved`). The one coupling: the
    recipe's lr belongs to the recipe's optimizer, so an `opt` other than the recipe's drops it and the lr falls
    back to the original's rule for that optimizer (`default_lr(arch, opt)`); the recipe's own optimizer
    (adam on mnist5k) keeps the recipe's lr."""
    recipe = {**ORIGINAL_RECIPE, **DATASET_RECIPES.get(get_dataset_spec(dataset).name, {})}
    if opt is not None and str(opt).lower() != recipe["opt"]:
        recipe.pop("lr", None)
    return recipe


def recipe_source(dataset: str, name: str, opt: str | None = None) -> str:
    """Where the default of recipe option `name` (`RECIPE_FIELDS`) comes from on a dataset for --opt `opt`:
    "dataset recipe" when `DATASET_RECIPES` fixes it, else "original recipe" (`ORIGINAL_RECIPE`, or for lr
    `default_lr`)."""
    own = DATASET_RECIPES.get(get_dataset_spec(dataset).name, {})
    if name == "lr":
        return "dataset recipe" if "lr" in own and "lr" in default_recipe(dataset, opt) else "original recipe"
    return "dataset recipe" if name in own else "original recipe"


def canonical_name(key: str) -> str:
    """The TrainConfig field for an option name: dashes -> underscores, original / old names mapped."""
    k = ALIASES.get(key, key.replace("-", "_"))
    return ALIASES.get(k, k)


def flag(name: str) -> str:
    """The `sspnet train` flag of TrainConfig field `name` (`FLAGS`, else --name-with-dashes)."""
    return FLAGS.get(name, "--" + name.replace("_", "-"))


def unit_name(spec: DatasetSpec) -> str:
    """The CLI unit of eps / alpha on a dataset, in words."""
    return "1/255" if spec.eps_unit < 1 else "[0, 1] pixel values"


def to_pixels(value: float, spec: DatasetSpec) -> float:
    """eps / alpha as the CLI takes them (the original's units, spec.eps_unit) -> pixel units [0, 1]."""
    return float(value) * spec.eps_unit


def to_cli_units(value: float, spec: DatasetSpec) -> float:
    """Pixel units -> the original's CLI units (8/255 -> 8 on cifar10), rounded to 10 significant digits."""
    return float(f"{float(value) / spec.eps_unit:.10g}")
