"""Options that compose: each training option given replaces its own value only (`default_recipe`), config.json
records where every value came from (`sspnet.train.sources`), and `sspnet train --help` shows each dataset's
resolved recipe. Before, naming --opt on mnist5k switched batch size and schedule to the original's (batch 128,
multistep): `--opt adam --lr 0.003` ended 2 epochs at about 40% test accuracy."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from sspnet.cli import build_parser, main
from sspnet.cli.train import config_from_args
from sspnet.train import TrainConfig, option_sources, train

FIELDS = ("opt", "lr", "batch_size", "schedule", "decay", "milestones", "eps", "alpha", "steps")
MNIST5K = {
    "opt": "adam",
    "lr": 2e-3,
    "batch_size": 8,
    "schedule": "cyclic",
    "decay": 0.0,
    "milestones": [60, 100, 140],
    "eps": 0.3,
    "alpha": 0.05,
    "steps": 10,
}
MNIST = {**MNIST5K, "opt": "sgd", "lr": 0.1, "batch_size": 128, "schedule": "multistep"}
CIFAR10 = {**MNIST, "decay": 5e-4, "eps": 8 / 255, "alpha": 2 / 255, "steps": 7}
FIXTURE = Path(__file__).parents[1] / "fixtures" / "train_config_v2.json"
# a few optimizer steps of a 1-block res on 50 test images: config.json is written, the numbers do not matter
QUICK = ["--blocks", "1", "--epochs", "1", "--steps-per-epoch", "2", "--eval-n-images", "50", "--quiet"]


def recipe(**kw) -> dict:
    r = TrainConfig(**kw).resolved()
    return {k: getattr(r, k) for k in FIELDS}


def parsed(*words: str) -> TrainConfig:
    return config_from_args(build_parser().parse_args(["train", *words]))


def test_each_flag_replaces_its_own_value_only():
    assert recipe(dataset="mnist5k") == MNIST5K
    assert recipe(dataset="mnist5k", opt="adam") == MNIST5K  # the recipe's optimizer keeps the recipe's lr
    assert recipe(dataset="mnist5k", opt="Adam") == MNIST5K
    assert recipe(dataset="mnist5k", opt="sgd") == {**MNIST5K, "opt": "sgd", "lr": 0.1}  # default_lr(mnist, sgd)
    assert recipe(dataset="mnist5k", opt="rms") == {**MNIST5K, "opt": "rms", "lr": 1e-3}
    assert recipe(dataset="mnist5k", batch_size=128) == {**MNIST5K, "batch_size": 128}
    assert recipe(dataset="mnist5k", opt="sgd", lr=0.01) == {**MNIST5K, "opt": "sgd", "lr": 0.01}
    assert recipe(dataset="mnist5k", schedule="multistep") == {**MNIST5K, "schedule": "multistep"}


def test_the_other_datasets_resolve_as_before():
    """The original's recipe, with or without --opt, as before the change."""
    for dataset in ("mnist", "fmnist"):
        expected = MNIST if dataset == "mnist" else {**MNIST, "eps": 0.1, "alpha": 0.02}
        assert recipe(dataset=dataset) == expected
        assert recipe(dataset=dataset, opt="adam") == {**expected, "opt": "adam", "lr": 1e-3}
    assert recipe(dataset="cifar10") == CIFAR10
    assert recipe(dataset="cifar10", opt="adam") == {**CIFAR10, "opt": "adam", "lr": 1e-4, "decay": 0.0}
    assert recipe(dataset="cifar10", adv="pgd") == {**CIFAR10, "milestones": [80, 140, 180]}
    assert recipe(dataset="tiny")["batch_size"] == 128 and recipe(dataset="tiny")["schedule"] == "multistep"


def test_the_new_users_command_is_the_default_recipe_but_for_lr():
    """`sspnet train --dataset mnist5k --model ssp2 --block 1 --epochs 2 --opt adam --lr 0.003` resolves to the
    run without `--opt adam --lr 0.003` in every option but lr."""
    common = ["--dataset", "mnist5k", "--model", "ssp2", "--block", "1", "--epochs", "2"]
    base = parsed(*common).resolved()
    named = parsed(*common, "--opt", "adam", "--lr", "0.003").resolved()
    assert named.lr == 0.003 and base.lr == MNIST5K["lr"]
    assert {**vars(named), "lr": None} == {**vars(base), "lr": None}


@pytest.mark.slow
def test_naming_the_optimizer_learns_as_the_default_recipe(tmp_path, restore_threads):
    """Two real 2-epoch runs of the new user's command (ssp2, 1 block), with one thread: 93.0% with the
    defaults and 92.7% with --opt adam --lr 0.003 (42.0% when --opt also switched batch 128 and multistep),
    about 50 s each."""
    torch.set_num_threads(1)
    acc = {}
    for name, extra in (("default", {}), ("adam", {"opt": "adam", "lr": 0.003})):
        cfg = TrainConfig(dataset="mnist5k", model="ssp2", blocks=1, epochs=2, save=str(tmp_path / name), quiet=True)
        acc[name] = train(TrainConfig(**{**vars(cfg), **extra})).final["test_acc"]
    assert acc["default"] > 90 and acc["adam"] > 90 and abs(acc["default"] - acc["adam"]) < 3, acc


def _sources(run: Path) -> dict:
    return json.loads((run / "config.json").read_text())["sources"]


def test_config_json_says_where_each_value_came_from(tmp_path, restore_threads):
    run = tmp_path / "run"
    options = tmp_path / "options.yaml"
    options.write_text("seed: 3\n")
    words = ["--dataset", "mnist5k", "--opt", "adam", *QUICK, "--config", str(options), "--threads", "1"]
    assert main(["train", *words, "--out", str(run)]) == 0
    s = _sources(run)
    assert {k: s[k] for k in ("dataset", "opt", "blocks", "epochs", "steps_per_epoch", "save", "seed")} == {
        "dataset": "flag",
        "opt": "flag",
        "blocks": "flag",
        "epochs": "flag",
        "steps_per_epoch": "flag",
        "save": "flag",
        "seed": "config file",
    }
    assert (s["batch_size"], s["schedule"], s["lr"]) == ("dataset recipe",) * 3  # adam: the recipe's lr
    assert (s["decay"], s["milestones"], s["eps"], s["steps"], s["norm"]) == (
        "original recipe",
        "original recipe",
        "dataset spec",
        "dataset spec",
        "dataset spec",
    )
    assert (s["adv"], s["val_split"], s["eval_batch_size"]) == ("default",) * 3
    assert set(s) == set(vars(TrainConfig()))
    written = json.loads((run / "config.json").read_text())["config"]
    assert (written["batch_size"], written["schedule"], written["lr"]) == (8, "cyclic", 2e-3)

    # resumed with a new budget: the options not given again keep their sources; --epochs is a flag again
    assert main(["train", "--resume", str(run), "--epochs", "2", "--quiet", "--threads", "1"]) == 0
    again = _sources(run)
    assert again == {**s, "resume": "flag"}

    sgd = tmp_path / "sgd"
    assert main(["train", "--dataset", "mnist5k", "--opt", "sgd", *QUICK, "--threads", "1", "--out", str(sgd)]) == 0
    s = _sources(sgd)
    assert (s["opt"], s["lr"], s["batch_size"], s["schedule"]) == (
        "flag",
        "original recipe",
        "dataset recipe",
        "dataset recipe",
    )
    assert json.loads((sgd / "config.json").read_text())["config"]["lr"] == 0.1


def test_library_callers_name_what_they_set():
    """Without `given`, a value other than the dataclass default counts as the caller's, one equal to it as the
    default (a set field equal to its default cannot be told apart); `given` names them."""
    cfg = TrainConfig(dataset="mnist5k", epochs=200, lr=0.01, seed=4)
    s = option_sources(cfg)
    assert (s["epochs"], s["lr"], s["seed"], s["dataset"], s["batch_size"]) == (
        "default",
        "caller",
        "caller",
        "default",
        "dataset recipe",
    )
    assert option_sources(cfg, ["epochs", "dataset"])["epochs"] == "caller"
    assert option_sources(cfg, {"lr": "flag"})["lr"] == "flag"
    assert option_sources(TrainConfig(dataset="cifar10"))["batch_size"] == "original recipe"
    assert option_sources(TrainConfig(dataset="mnist5k", opt="sgd"))["lr"] == "original recipe"


def test_an_old_config_json_without_sources_still_resumes(tmp_path, restore_threads):
    """tests/fixtures/train_config_v2.json (no sources) as a run's config.json resumes; the sources written then
    come from its "defaulted" list and, for the rest, from the resumed run."""
    from sspnet.train import read_run_meta

    run = tmp_path / "run"
    words = ["--dataset", "mnist5k", "--batch-size", "16", "--adv", "pgd", "--train-pgd-steps", "2", *QUICK]
    words += ["--threads", "1", "--out", str(run)]
    assert main(["train", *words]) == 0
    doc = json.loads(FIXTURE.read_text())
    assert "sources" not in doc
    doc["config"]["save"] = str(run)
    (run / "config.json").write_text(json.dumps(doc))
    assert read_run_meta(run)["sources"] == {}
    assert main(["train", "--resume", str(run), "--epochs", "2", "--quiet", "--threads", "1"]) == 0
    s = _sources(run)
    assert (s["epochs"], s["resume"], s["batch_size"], s["blocks"], s["adv"]) == (
        "flag",
        "flag",
        "resumed run",
        "resumed run",
        "resumed run",
    )
    assert (s["lr"], s["opt"], s["decay"], s["eps"], s["seed"]) == (
        "dataset recipe",
        "dataset recipe",
        "original recipe",
        "dataset spec",
        "default",
    )


def test_help_lists_the_resolved_recipe_of_every_dataset(capsys):
    from sspnet.data.specs import DATASETS
    from sspnet.train.options import DATASET_RECIPES, ORIGINAL_RECIPE

    with pytest.raises(SystemExit):
        main(["train", "--help"])
    text = capsys.readouterr().out
    lines = text.splitlines()
    head = next(i for i, line in enumerate(lines) if line.split()[:2] == ["dataset", "opt"])
    rows = {line.split()[0]: line.split() for line in lines[head + 1 : head + 1 + len(DATASETS)]}
    assert set(rows) == set(DATASETS)
    mnist5k, cifar10 = rows["mnist5k"], rows["cifar10"]
    batch = DATASET_RECIPES["mnist5k"]["batch_size"]
    assert mnist5k[1:9] == ["adam", "r", "0.002", "r", str(batch), "r", "cyclic", "r"]
    assert cifar10[1:9] == ["sgd", "o", "0.1", "o", str(ORIGINAL_RECIPE["batch_size"]), "o", "multistep", "o"]
    assert "0.0005 o" in " ".join(cifar10) and "8/2/7 s" in " ".join(cifar10)
    assert "an --opt other than it takes the original's lr" in " ".join(text.split())
