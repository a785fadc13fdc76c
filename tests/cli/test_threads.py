"""--threads in every command: it sets torch's thread count, is validated in one line, is no training option,
and counts per worker in compare."""

from __future__ import annotations

import pytest
import torch

from sspnet.cli import build_parser, main

COMMANDS = {"train": [], "attack": ["RUN"], "growth": ["RUN"], "compare": [], "models": []}


@pytest.mark.parametrize("command", list(COMMANDS))
def test_threads_sets_torch_threads_in_every_command(command, monkeypatch, restore_threads):
    import importlib

    module = importlib.import_module(f"sspnet.cli.{command}")
    seen = {}

    def run(args):
        seen["threads"] = torch.get_num_threads()
        return 0

    monkeypatch.setattr(module, "run", run)
    want = 1 if restore_threads != 1 else 2
    assert main([command, *COMMANDS[command], "--threads", str(want)]) == 0
    assert seen["threads"] == want


def test_threads_is_no_training_option():
    from sspnet.cli.train import config_from_args

    cfg = config_from_args(build_parser().parse_args(["train", "--threads", "2", "--epochs", "3"]))
    assert cfg.epochs == 3 and not hasattr(cfg, "threads")


@pytest.mark.parametrize("value", ["0", "-1", "x", "1.5", ""])
def test_threads_validated_in_one_line(value, capsys, restore_threads):
    assert main(["models", "--threads", value]) == 2
    err = capsys.readouterr().err
    assert err == f"sspnet models: error: --threads must be an integer >= 1, got {value!r}\n"


def test_compare_threads_are_per_worker(monkeypatch, restore_threads):
    from sspnet.cli import compare as cli_compare
    from sspnet.experiments.compare.executors.pool import pool_map

    seen = {}
    monkeypatch.setattr(cli_compare, "run_compare", lambda config: {"config": seen.setdefault("config", config)})
    assert main(["compare", "--dry-run", "--threads", "3"]) == 0 and seen.pop("config").threads == 3
    assert main(["compare", "--dry-run"]) == 0 and seen.pop("config").threads is None  # 1 per worker
    out = []
    pool_map([0], _threads_of_worker, (), 1, lambda item: None, lambda item, n: out.append(n), threads=3)
    assert out == [(3, 3)]


def _threads_of_worker(args):
    from sspnet.experiments.compare.executors.pool import worker_threads

    return torch.get_num_threads(), worker_threads()
