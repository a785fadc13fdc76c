"""The CLI's one flag vocabulary (`sspnet.cli._options.VOCABULARY`): every canonical flag and each alias it keeps
parse to the same config value in every subcommand; help defaults come from the tables; an unknown flag is one
error line with exit code 2; a config.json of today's format (tests/fixtures/train_config_v2.json, written by
`sspnet train` before the renames) still loads and resumes."""

import argparse
import json
from pathlib import Path

import pytest

from sspnet.cli import build_parser, main
from sspnet.cli._options import VOCABULARY

FIXTURE = Path(__file__).parents[1] / "fixtures" / "train_config_v2.json"
POSITIONAL = {"attack": ["RUN"], "growth": ["RUN"]}
VALUES = {
    "dataset": ["mnist"],
    "norm_layer": ["g"],
    "norm": ["l2"],
    "crit": ["acc"],
    "device": ["cpu"],
    "data_root": ["/data"],
    "out": ["somewhere"],
    "threads": ["2"],
}


def _value(concept: str, action: argparse.Action) -> list[str]:
    """Command-line words that give `concept` a non-default value."""
    if action.nargs == 0:  # store_true / BooleanOptionalAction: the flag alone
        return []
    if concept in VALUES:
        return VALUES[concept]
    kind = action.type
    return ["0.5"] if kind is float else ["3"] if kind is int else ["x"]


def _actions(command: str) -> dict[str, argparse.Action]:
    sub = next(a for a in build_parser()._actions if isinstance(a, argparse._SubParsersAction)).choices[command]
    return {s: a for a in sub._actions for s in a.option_strings}


def _config(command: str, args: argparse.Namespace):
    """The config dataclass the command builds from its flags."""
    if command == "train":
        from sspnet.cli.train import config_from_args

        return config_from_args(args)
    if command == "attack":
        from sspnet.cli.attack import config_from_args

        return config_from_args(args)
    if command == "growth":
        from sspnet.cli.growth import config_from_args

        return config_from_args(args, 1.0)
    if command == "compare":
        from sspnet.cli.compare import build_config

        return build_config(args)
    return vars(args)  # models: the namespace is its config


def _commands_with(concept: str) -> list[str]:
    flag = VOCABULARY[concept].flag
    return [
        c
        for c in ("train", "attack", "growth", "compare", "models")
        if flag in _actions(c) and _actions(c)[flag].option_strings[0] == flag
    ]


TABLE = [
    (command, concept, alias)
    for concept, entry in VOCABULARY.items()
    for command in _commands_with(concept)
    for alias in (None, *entry.aliases.get(command, ()))
]


@pytest.mark.parametrize("command, concept, alias", TABLE, ids=[f"{c}-{k}-{a or 'canonical'}" for c, k, a in TABLE])
def test_canonical_flag_and_alias_give_the_same_config(command, concept, alias):
    flag = VOCABULARY[concept].flag
    action = _actions(command)[flag]
    assert action.option_strings[0] == flag  # the canonical name first: --help lists it
    words = _value(concept, action)
    if isinstance(action, argparse.BooleanOptionalAction) and action.default:
        flag = "--no-" + flag[2:]  # the form that changes the value
    base: list[str] = []
    given = build_parser().parse_args([command, *POSITIONAL.get(command, []), flag, *words, *base])
    default = build_parser().parse_args([command, *POSITIONAL.get(command, []), *base])
    assert getattr(given, action.dest) != getattr(default, action.dest), (command, flag)  # the words took effect
    if alias is None:
        _config(command, given)  # the canonical flag builds a config
        return
    assert alias in action.option_strings
    old = build_parser().parse_args([command, *POSITIONAL.get(command, []), alias, *words, *base])
    assert vars(old) == vars(given)
    assert _config(command, old) == _config(command, given)


def test_every_alias_of_the_table_is_accepted():
    """The agreed aliases (common.md's table) are registered where the table says."""
    expected = {
        ("train", "--block"),
        ("models", "--block"),
        ("attack", "--block"),
        ("attack", "--eval"),
        ("train", "--norm"),
        ("models", "--norm"),
        ("attack", "--model-norm"),
        ("attack", "--iters"),
        ("growth", "--steps"),
        ("train", "--eps"),
        ("train", "--alpha"),
        ("train", "--iters"),
        ("compare", "--iters"),
        ("train", "--tbsize"),
        ("compare", "--tbsize"),
        ("train", "--eval-bsize"),
        ("attack", "--bsize"),
        ("growth", "--batch-size"),
        ("attack", "--n-examples"),
        ("growth", "--n"),
        ("train", "--test-limit"),
        ("train", "--save"),
    }
    missing = [(c, a) for c, a in sorted(expected) if a not in _actions(c)]
    assert not missing


@pytest.mark.parametrize(
    "command, alias, canonical",
    [
        ("train", "--iters", "--train-pgd-steps"),
        ("compare", "--iters", "--train-pgd-steps"),
        ("attack", "--iters", "--pgd-steps"),
        ("growth", "--steps", "--pgd-steps"),
        ("train", "--eps", "--train-eps"),
        ("train", "--norm", "--norm-layer"),
        ("growth", "--batch-size", "--eval-batch-size"),
        ("train", "--save", "--out"),
    ],
)
def test_one_alias_means_different_things_per_command_as_the_table_says(command, alias, canonical):
    actions = _actions(command)
    assert actions[alias] is actions[canonical]


def test_train_aliases_reach_the_same_training_options():
    from sspnet.cli.train import config_from_args

    old = config_from_args(
        build_parser().parse_args(
            [
                "train",
                "--dataset",
                "cifar10",
                "--block",
                "2",
                "--norm",
                "b",
                "--eps",
                "4",
                "--alpha",
                "1",
                "--iters",
                "3",
                "--tbsize",
                "32",
                "--eval-bsize",
                "50",
                "--test-limit",
                "20",
                "--save",
                "r",
            ]
        )
    )
    new = config_from_args(
        build_parser().parse_args(
            [
                "train",
                "--dataset",
                "cifar10",
                "--blocks",
                "2",
                "--norm-layer",
                "b",
                "--train-eps",
                "4",
                "--train-alpha",
                "1",
                "--train-pgd-steps",
                "3",
                "--batch-size",
                "32",
                "--eval-batch-size",
                "50",
                "--eval-n-images",
                "20",
                "--out",
                "r",
            ]
        )
    )
    assert old == new
    assert (
        new.blocks,
        new.norm,
        new.eps,
        new.alpha,
        new.steps,
        new.batch_size,
        new.eval_batch_size,
        new.eval_n_images,
        new.save,
    ) == (2, "b", 4 / 255, 1 / 255, 3, 32, 50, 20, "r")


def test_train_messages_name_the_canonical_flag_of_every_option():
    """`sspnet.train.config.flag(field)`, the flag TrainConfig's messages name, is train's canonical flag of that
    field (no alias), and the flag parses to that field."""
    import dataclasses

    from sspnet.cli.train import _DEST
    from sspnet.train import TrainConfig
    from sspnet.train.options import flag

    actions = _actions("train")
    for field in dataclasses.fields(TrainConfig):
        action = actions[flag(field.name)]
        assert flag(field.name) not in getattr(action, "aliases", ()), field.name
        assert _DEST.get(action.dest, action.dest) == field.name


def test_config_file_takes_canonical_and_old_keys(tmp_path):
    from sspnet.cli.train import config_from_args

    old, new = tmp_path / "old.yaml", tmp_path / "new.yaml"
    old.write_text("block: 2\ntbsize: 32\niters: 3\neps: 0.2\ntest-limit: 40\nnorm: l\n")
    new.write_text("blocks: 2\nbatch-size: 32\ntrain-pgd-steps: 3\ntrain_eps: 0.2\neval-n-images: 40\nnorm-layer: l\n")
    configs = [config_from_args(build_parser().parse_args(["train", "--config", str(f)])) for f in (old, new)]
    assert configs[0] == configs[1]
    assert (
        configs[1].blocks,
        configs[1].batch_size,
        configs[1].steps,
        configs[1].eps,
        configs[1].eval_n_images,
        configs[1].norm,
    ) == (2, 32, 3, 0.2, 40, "l")


@pytest.mark.parametrize("command", ["train", "attack", "growth", "compare", "models", "download"])
def test_unknown_flag_exits_2_with_one_line(command, capsys):
    positional = {"growth": ["RUN"], "download": ["mnist"]}.get(command, [])
    assert main([command, *positional, "--no-such-flag"]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "--no-such-flag" in err and "unrecognized arguments" in err


def test_bad_value_of_a_typed_flag_exits_2_with_one_line(capsys):
    assert main(["growth", "RUN", "--pgd-steps", "many"]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "--pgd-steps" in err and "invalid int value: 'many'" in err


def _help(command: str, capsys) -> str:
    with pytest.raises(SystemExit):
        main([command, "--help"])
    return " ".join(capsys.readouterr().out.split())


def test_help_names_the_aliases_and_defaults_from_the_tables(capsys):
    from sspnet.eval.growth import GrowthConfig
    from sspnet.experiments.attack import AttackRunConfig
    from sspnet.experiments.compare.config import PRESETS, EvalSettings, preset_value

    growth = _help("growth", capsys)
    assert "--pgd-steps N" in growth and "alias: --steps" in growth and "--steps N" not in growth
    assert f"PGD iterations (default {GrowthConfig().threat.steps}); alias: --steps" in growth
    attack = _help("attack", capsys)
    assert f"Square: model calls per image (default {AttackRunConfig.queries})" in attack
    compare = _help("compare", capsys)
    sweep = {name: preset_value(name, "sweep_images") for name in PRESETS}
    assert sweep["default"] == EvalSettings.sweep_images  # the default preset states no sweep_images of its own
    assert f"the preset's, default {sweep['default']};" in compare and f"cpu-hour {sweep['cpu-hour']}" in compare
    assert "alias: --sweep-n" in compare
    train = _help("train", capsys)
    from sspnet.train.options import DATASET_RECIPES, ORIGINAL_RECIPE

    assert (
        f"(default: the dataset's, {DATASET_RECIPES['mnist5k']['batch_size']} on mnist5k, "
        f"{ORIGINAL_RECIPE['batch_size']} on mnist/fmnist/cifar10/tiny); alias: --tbsize"
    ) in " ".join(train.split())


# --- a config.json of today's format -----------------------------------------------------------------------------
TINY = [
    "--dataset",
    "mnist5k",
    "--blocks",
    "1",
    "--batch-size",
    "16",
    "--epochs",
    "1",
    "--steps-per-epoch",
    "2",
    "--eval-n-images",
    "50",
    "--adv",
    "pgd",
    "--train-pgd-steps",
    "2",
    "--quiet",
    "--threads",
    "1",
]


def _fixture_run(tmp_path: Path) -> Path:
    run = tmp_path / "run"
    run.mkdir()
    doc = json.loads(FIXTURE.read_text())
    doc["config"]["save"] = str(run)
    (run / "config.json").write_text(json.dumps(doc))
    return run


def test_todays_config_json_loads_with_its_values(tmp_path):
    from sspnet.cli.train import config_from_args
    from sspnet.train.run_config import read_run_config

    run = _fixture_run(tmp_path)
    stored = read_run_config(run)
    assert (stored["blocks"], stored["batch_size"], stored["steps"], stored["eps"], stored["eval_n_images"]) == (
        1,
        16,
        2,
        0.3,
        50,
    )
    cfg = config_from_args(build_parser().parse_args(["train", "--resume", str(run), "--epochs", "2"]))
    assert (cfg.blocks, cfg.batch_size, cfg.steps, cfg.eps, cfg.alpha, cfg.eval_n_images, cfg.epochs) == (
        1,
        16,
        2,
        0.3,
        0.05,
        50,
        2,
    )
    assert cfg.resume and cfg.save == str(run) and cfg.milestones is None  # a defaulted milestone is derived again


def test_canonical_flags_write_todays_config_and_resume_it(tmp_path, restore_threads):
    """The run the fixture came from, made again with the canonical flags: the same options; then the fixture
    itself as the folder's config.json resumes for one more epoch."""
    run = tmp_path / "run"
    assert main(["train", *TINY, "--out", str(run)]) == 0
    written = json.loads((run / "config.json").read_text())
    fixture = json.loads(FIXTURE.read_text())
    # options added after the fixture was written are at the value that reproduces its run
    added = {k: v for k, v in written["config"].items() if k not in fixture["config"]}
    assert added == {"step_size": 1.0, "arch": None}
    assert {k: v for k, v in written["config"].items() if k != "save" and k not in added} == {
        k: v for k, v in fixture["config"].items() if k != "save"
    }
    assert written["format_version"] == fixture["format_version"] and written["defaulted"] == fixture["defaulted"]
    fixture["config"]["save"] = str(run)
    (run / "config.json").write_text(json.dumps(fixture))
    assert main(["train", "--resume", str(run), "--epochs", "2", "--quiet", "--threads", "1"]) == 0
    assert [json.loads(line)["epoch"] for line in (run / "metrics.jsonl").read_text().splitlines()] == [1, 2]
