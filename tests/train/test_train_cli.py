"""`sspnet train` through sspnet.cli.main: bad input -> one error line and exit 2; config files; exit codes."""

import json

import pytest

from sspnet.cli import build_parser, main
from sspnet.cli.train import config_from_args

BASE = [
    "train",
    "--dataset",
    "mnist5k",
    "--block",
    "1",
    "--tbsize",
    "16",
    "--epochs",
    "1",
    "--steps-per-epoch",
    "2",
    "--test-limit",
    "50",
    "--quiet",
]


@pytest.mark.parametrize(
    "flags, message",
    [
        (["--lr", "0"], "--lr must be a finite number > 0"),
        (["--lr", "-0.1"], "--lr must be a finite number > 0"),
        (["--epochs", "0"], "--epochs must be an integer >= 1"),
        (["--opt", "lbfgs"], "unknown optimizer 'lbfgs'; valid optimizers: sgd, adam, rms"),
        (["--adv", "cw"], "unknown adversary 'cw'; valid adversaries: none, fgsm, pgd, ball, fast"),
        (
            ["--tbsize", "5000"],
            "--batch-size 5000 is larger than the 3600 training images of mnist5k (4000 less the "
            "--val-split 0.1 held out)",
        ),
        (
            ["--batch-size", "5000", "--val-split", "0"],
            "--batch-size 5000 is larger than the 4000 training images of mnist5k;",
        ),
        (["--val-split", "1"], "--val-split must be a fraction in [0, 1) of the training images"),
        (["--val-split", "0.0001"], "--val-split 0.0001 holds out no image of the 4000 training images"),
        (["--val-split", "0", "--select-on", "val"], "--select-on val needs a validation split but --val-split is 0"),
        (["--select-on", "best"], "unknown --select-on 'best'; valid: val, test, none"),
        (["--dataset", "svhn"], "unknown dataset 'svhn'"),
        (["--device", "tpu"], "unknown device 'tpu'"),
        (["--milestones", "10,x"], "--milestones takes a comma-separated list of ints"),
        (["--model", "nosuchscheme"], "nosuchscheme"),
    ],
)
def test_bad_input_exits_2_with_one_clear_line(tmp_path, capsys, flags, message):
    code = main([*BASE, "--save", str(tmp_path / "run"), *flags])
    err = capsys.readouterr().err
    assert code == 2
    assert err.startswith("sspnet train: error: ") and message in err and "Traceback" not in err


def test_existing_folder_and_resume_mismatch_exit_2(tmp_path, capsys):
    run = tmp_path / "run"
    assert main([*BASE, "--save", str(run)]) == 0
    capsys.readouterr()
    assert main([*BASE, "--save", str(run)]) == 2
    assert "already holds a run" in capsys.readouterr().err
    assert main(["train", "--resume", str(run), "--model", "ssp2", "--quiet"]) == 2
    err = capsys.readouterr().err
    assert "cannot resume" in err and "model='res' (asked: 'ssp2')" in err
    assert main(["train", "--resume", str(tmp_path / "missing")]) == 2
    assert "does not exist" in capsys.readouterr().err
    # resuming a finished run with more epochs continues it
    assert main(["train", "--resume", str(run), "--epochs", "2", "--quiet"]) == 0
    assert [json.loads(ln)["epoch"] for ln in (run / "metrics.jsonl").read_text().splitlines()] == [1, 2]


def test_nan_loss_exits_1(tmp_path, capsys):
    code = main([*BASE, "--save", str(tmp_path / "run"), "--lr", "1e30", "--steps-per-epoch", "4"])
    err = capsys.readouterr().err
    assert code == 1 and "non-finite training loss" in err and "epoch 1, step" in err


def test_config_file_fills_defaults_and_flags_override(tmp_path):
    cfg_file = tmp_path / "c.yaml"
    cfg_file.write_text("model: ssp2\ntbsize: 64\nlr: 0.01\nmilestones: [3, 5]\ngroups: ssp3\nblock: 2\n")
    args = build_parser().parse_args(["train", "--config", str(cfg_file), "--lr", "0.02", "--checkpoint"])
    cfg = config_from_args(args)
    assert (cfg.model, cfg.batch_size, cfg.lr, cfg.milestones, cfg.groups, cfg.blocks) == (
        "ssp2",
        64,
        0.02,
        [3, 5],
        ["ssp3"],
        2,
    )
    assert cfg.activation_checkpointing and cfg.adv == "none" and cfg.dataset == "mnist5k"
    assert (cfg.val_split, cfg.select_on, cfg.train_quantize, cfg.sync_bn) == (0.1, None, True, True)
    flags = config_from_args(
        build_parser().parse_args(
            ["train", "--val-split", "0", "--select-on", "test", "--no-train-quantize", "--no-sync-bn"]
        )
    )
    assert (flags.val_split, flags.select_on, flags.train_quantize, flags.sync_bn) == (0.0, "test", False, False)
    (tmp_path / "bad.json").write_text(json.dumps({"learning_rate": 1}))
    args = build_parser().parse_args(["train", "--config", str(tmp_path / "bad.json")])
    with pytest.raises(ValueError, match="unknown training option 'learning_rate'"):
        config_from_args(args)


def _config(argv):
    return config_from_args(build_parser().parse_args(["train", *argv]))


def test_eps_and_alpha_flags_are_converted_to_pixel_units():
    c = _config(["--dataset", "cifar10", "--eps", "8", "--alpha", "2"])
    assert (c.eps, c.alpha) == (8 / 255, 2 / 255)
    assert _config(["--dataset", "tiny", "--eps", "4"]).eps == 4 / 255
    assert _config(["--dataset", "mnist5k", "--eps", "0.3"]).eps == 0.3
    assert _config(["--dataset", "cifar10"]).eps is None  # the default is filled in (in pixels) by resolved()


def test_config_file_eps_is_in_cli_units_too(tmp_path):
    f = tmp_path / "c.yaml"
    f.write_text("dataset: cifar10\neps: 8\nalpha: 2\niters: 3\ntest-limit: 40\n")
    c = _config(["--config", str(f)])
    assert (c.eps, c.alpha, c.steps, c.eval_n_images) == (8 / 255, 2 / 255, 3, 40)
    assert _config(["--config", str(f), "--eps", "4"]).eps == 4 / 255  # the flag wins
    assert _config(["--config", str(f), "--dataset", "mnist5k", "--eps", "0.2"]).eps == 0.2


def test_resume_keeps_the_saved_pixel_eps_and_converts_new_flags(tmp_path):
    run = tmp_path / "run"
    run.mkdir()
    (run / "config.json").write_text(
        json.dumps(
            {
                "format_version": 2,
                "config": {
                    "dataset": "cifar10",
                    "adv": "pgd",
                    "eps": 8 / 255,
                    "alpha": 2 / 255,
                    "steps": 7,
                    "epochs": 3,
                },
            }
        )
    )
    c = _config(["--resume", str(run)])
    assert (c.eps, c.alpha, c.steps, c.resume, c.save) == (8 / 255, 2 / 255, 7, True, str(run))
    assert _config(["--resume", str(run), "--alpha", "1"]).alpha == 1 / 255


def test_checkpoint_args_keep_the_original_units():
    from sspnet.train import TrainConfig
    from sspnet.train.folder import original_args

    args = original_args(TrainConfig(dataset="cifar10", adv="pgd").resolved())
    assert (args["eps"], args["alpha"], args["iters"]) == (8.0, 2.0, 7)
    assert original_args(TrainConfig(dataset="mnist5k", eps=0.2).resolved())["eps"] == 0.2


def test_bad_config_file_and_eps_exit_2_with_one_line(tmp_path, capsys):
    bad = tmp_path / "bad.yaml"
    bad.write_text("model: [ssp2\n")
    assert main(["train", "--config", str(bad)]) == 2
    err = capsys.readouterr().err
    assert err.startswith("sspnet train: error: config file") and "not valid YAML" in err and err.count("\n") == 1
    assert main(["train", "--config", str(tmp_path / "missing.yaml")]) == 2
    assert "config file" in capsys.readouterr().err
    assert main(["train", "--dataset", "cifar10", "--eps", "300", "--save", str(tmp_path / "r")]) == 2
    err = capsys.readouterr().err
    assert "--train-eps 300" in err and "units of 1/255" in err and "Traceback" not in err
