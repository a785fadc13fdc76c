"""Nothing silent in train: an empty --save, non-finite hyper-parameters and resumes without last.pt, with fewer
epochs or with an edited scheme file are refused; non-finite weights stop a run before they are saved; a run
started with --force can be resumed."""

from __future__ import annotations

import json
import os

import pytest
import torch
from one_line_errors import one_error_line
from tiny_runs import TINY, copy_run

from sspnet.cli import main
from sspnet.train import NonFiniteLossError, TrainConfig, load_state, train

pytestmark = pytest.mark.usefixtures("one_thread")


def test_empty_save_and_non_finite_hyper_parameters_are_refused(tmp_path, capsys, monkeypatch):
    monkeypatch.chdir(tmp_path)
    assert main(["train", "--save", "", "--epochs", "1"]) == 2
    one_error_line(capsys, "--out must name a run folder")
    for flag, value in (("--decay", "inf"), ("--decay", "nan"), ("--lr", "inf")):
        assert main(["train", flag, value, "--epochs", "1", "--save", "r"]) == 2
        one_error_line(capsys, flag, "finite")
    assert os.listdir(tmp_path) == []


def test_resume_without_last_pt_is_refused(tiny_run, tmp_path, capsys):
    run = copy_run(tiny_run, tmp_path)
    (run / "last.pt").unlink()
    before = {p.name: p.read_bytes() for p in run.iterdir()}
    assert main(["train", "--resume", str(run), "--epochs", "2"]) == 2
    one_error_line(capsys, "no last.pt", "--force")
    assert {p.name: p.read_bytes() for p in run.iterdir()} == before


def test_resume_with_fewer_epochs_than_done_is_refused_and_changes_nothing(tiny_run, tmp_path, capsys):
    run = copy_run(tiny_run, tmp_path)
    train(TrainConfig.from_run(run, epochs=2))
    before = {p.name: p.read_bytes() for p in run.iterdir()}
    assert main(["train", "--resume", str(run), "--epochs", "1"]) == 2
    one_error_line(capsys, "--epochs 1", "trained 2 epochs", "--epochs 2 or more")
    assert {p.name: p.read_bytes() for p in run.iterdir()} == before


RALSTON = 'name: ralston\nA: [[0, 0], ["2/3", 0]]\nb: ["1/4", "3/4"]\norder: 2\n'


def test_an_edited_scheme_file_is_refused_on_resume(tmp_path, capsys):
    scheme = tmp_path / "ralston.yaml"
    scheme.write_text(RALSTON)
    run = tmp_path / "run"
    train(TrainConfig(**{**TINY, "model": str(scheme)}, epochs=1, steps_per_epoch=1, save=str(run)))
    assert list(json.loads((run / "config.json").read_text())["scheme_hashes"]) == [str(scheme)]
    scheme.write_text("# a comment changes no coefficient\n" + RALSTON)
    train(TrainConfig.from_run(run, epochs=2, steps_per_epoch=1))  # resumes
    scheme.write_text('name: ralston\nA: [[0, 0], ["1/2", 0]]\nb: [0, 1]\norder: 2\n')  # now the midpoint rule
    assert main(["train", "--resume", str(run), "--epochs", "3"]) == 2
    one_error_line(capsys, f"the scheme file {scheme} was edited")


def test_non_finite_weights_stop_the_run_before_they_are_saved(tmp_path, monkeypatch):
    """The loss is finite at the step that breaks the weights (a huge --decay does this): the guard checks the
    weights at every sync point, before any save, so last.pt keeps finite weights."""
    import sspnet.train.setup as setup

    real = setup.build_optimizer
    steps = {"n": 0}

    def breaking(params, *args, **kw):
        opt = real(params, *args, **kw)

        def post(optimizer, a, k):
            steps["n"] += 1
            if steps["n"] == 4:  # after the 4th step's finite loss, just before the check of step 4
                with torch.no_grad():
                    optimizer.param_groups[0]["params"][0].fill_(float("inf"))

        opt.register_step_post_hook(post)
        return opt

    monkeypatch.setattr(setup, "build_optimizer", breaking)
    run = tmp_path / "run"
    with pytest.raises(NonFiniteLossError, match="non-finite weights.* at epoch 1, by step 4") as info:
        train(TrainConfig(**TINY, epochs=1, steps_per_epoch=6, save=str(run), save_every=2, log_interval=2))
    assert "--force" in str(info.value) and "lower --lr" in str(info.value)
    state = load_state(run / "last.pt")
    assert state["step"] == 2 and all(torch.isfinite(t).all() for t in state["model"].values() if t.is_floating_point())
    assert not (run / "metrics.jsonl").exists()


def test_a_run_started_with_force_can_be_resumed(tmp_path, capsys):
    run = tmp_path / "run"
    args = [
        "train",
        "--save",
        str(run),
        "--block",
        "1",
        "--tbsize",
        "16",
        "--test-limit",
        "50",
        "--steps-per-epoch",
        "1",
        "--quiet",
    ]
    assert main(args + ["--epochs", "1", "--force"]) == 0
    assert main(["train", "--resume", str(run), "--epochs", "2"]) == 0, capsys.readouterr().err
    assert [json.loads(ln)["epoch"] for ln in (run / "metrics.jsonl").read_text().splitlines()] == [1, 2]
