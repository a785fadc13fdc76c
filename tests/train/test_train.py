"""Training runs in-process on the bundled mnist5k: accuracy, adversarial modes, run folder, guards."""

import dataclasses
import json
import os
from pathlib import Path

import pytest
import torch

from sspnet.io import files as fileio
from sspnet.train import NonFiniteLossError, TrainConfig, load_state, train

TINY = dict(dataset="mnist5k", model="res", blocks=1, batch_size=16, quiet=True, eval_n_images=100, seed=1)


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    """A standard-training run: 3 epochs of mnist5k, res with 1 block, Adam, one-cycle schedule."""
    run = tmp_path_factory.mktemp("acc") / "run"
    cfg = TrainConfig(
        dataset="mnist5k",
        model="res",
        blocks=1,
        epochs=3,
        opt="adam",
        lr=4e-3,
        batch_size=32,
        schedule="cyclic",
        save=str(run),
        quiet=True,
        save_every=0,
    )
    return train(cfg)


def test_standard_training_reaches_real_accuracy(trained):
    assert trained.epochs_completed == 3
    assert trained.final["test_acc"] >= 90.0 and trained.final["val_acc"] >= 90.0
    assert trained.selected_on == "val" and trained.best_acc == max(r["val_acc"] for r in trained.history)
    # 10% of the 4,000 training images are held out for validation
    assert trained.final["adv_train_acc"] is None and trained.final["images"] == 3600


def test_run_folder_layout(trained):
    run = trained.run_dir
    for name in (
        "config.json",
        "metrics.jsonl",
        "train.log",
        "model_acc.pt",
        "model_loss.pt",
        "model_final.pt",
        "last.pt",
    ):
        assert (run / name).is_file(), name
    assert not [p for p in run.iterdir() if p.name.endswith(".tmp")]
    cfg = json.loads((run / "config.json").read_text())
    assert set(cfg["provenance"]) >= {"sspnet_version", "torch_version", "git_hash"}
    assert cfg["config"]["lr"] == 4e-3 and cfg["config"]["milestones"] == [60, 100, 140]
    assert cfg["format_version"] == 2 and (cfg["config"]["eps"], cfg["config"]["steps"]) == (0.3, 10)
    lines = [json.loads(ln) for ln in (run / "metrics.jsonl").read_text().splitlines()]
    assert [r["epoch"] for r in lines] == [1, 2, 3] and lines == trained.history
    for key in (
        "train_loss",
        "train_acc",
        "adv_train_acc",
        "val_loss",
        "val_acc",
        "test_loss",
        "test_acc",
        "lr",
        "images_per_s",
        "seconds",
    ):
        assert key in lines[0]
    assert [cfg["config"][k] for k in ("val_split", "select_on", "train_quantize")] == [0.1, "val", True]
    assert cfg["budget_history"] == [{"epochs": 3, "at_epoch": 0, "at_step": 0}]  # cyclic: no milestones
    final = torch.load(run / "model_final.pt", weights_only=True)
    assert final["format"] == "sspnet" and final["args"]["tbsize"] == 32 and final["epoch"] == 3
    assert (final["selected_on"], final["criterion"], final["val_acc"]) == ("final", "final", lines[2]["val_acc"])
    best = {"acc": max(lines, key=lambda r: r["val_acc"]), "loss": min(lines, key=lambda r: r["val_loss"])}
    for crit, rec in best.items():  # chosen on the validation split, the record of that epoch stored
        ckpt = torch.load(run / f"model_{crit}.pt", weights_only=True)
        assert (ckpt["selected_on"], ckpt["criterion"], ckpt["epoch"]) == ("val", crit, rec["epoch"])
        assert [ckpt[k] for k in ("val_acc", "val_loss", "test_acc")] == [
            rec[k] for k in ("val_acc", "val_loss", "test_acc")
        ]
    state = load_state(run / "last.pt")
    assert (state["epoch"], state["step"]) == (3, 0)
    assert set(state["rng"]) >= {"torch", "python", "cuda"}
    for k, v in final["state_dict"].items():
        assert torch.equal(v, state["model"][k])
    import sspnet

    model = sspnet.load_model(run)
    assert not model.training and model.config["blocks"] == 1
    assert "epoch 3/3" in (run / "train.log").read_text()


@pytest.mark.parametrize("adv", ["fgsm", "pgd", "ball", "fast"])
def test_adversarial_modes_run_and_are_harder_than_clean(trained, tmp_path, adv):
    cfg = TrainConfig(
        **{**TINY, "batch_size": 32},
        epochs=1,
        adv=adv,
        steps=2,
        steps_per_epoch=2,
        opt="adam",
        lr=1e-4,
        init_from=str(trained.run_dir),
        save=str(tmp_path / adv),
        craft_eval=adv == "fgsm",
        clean_metrics=True,
    )
    rec = train(cfg).final
    assert rec["adv_train_acc"] is not None
    if adv != "ball":  # random noise is much weaker than gradient attacks: on 64 images only its loss tells
        assert rec["adv_train_acc"] < rec["train_acc"] - 5.0, rec
    assert rec["adv_train_loss"] > rec["train_loss"], rec
    # ball: 5 noisy copies of each of the 2 * 32 images were trained on
    assert rec["images"] == 64


def test_adversarial_training_skips_the_clean_forward_unless_asked(tmp_path, monkeypatch):
    from sspnet.nn.models import SSPNet

    calls = []
    forward = SSPNet.forward
    monkeypatch.setattr(SSPNet, "forward", lambda self, x: (calls.append(torch.is_grad_enabled()), forward(self, x))[1])
    cfg = TrainConfig(**TINY, epochs=1, adv="pgd", steps=2, steps_per_epoch=1, save=str(tmp_path / "r"), save_every=0)
    rec = train(cfg).final
    # one step: 2 attack forwards + 1 training forward with grad; the test evaluation runs without grad
    assert calls[:3] == [True, True, True] and not any(calls[3:])
    assert rec["train_loss"] is None and rec["train_acc"] is None and rec["adv_train_acc"] is not None
    assert rec["images"] == 16
    log = (tmp_path / "r" / "train.log").read_text()
    assert "epoch 1/1 train adv loss" in log


def test_resume_drops_metrics_of_an_epoch_redone_after_a_crash(tmp_path):
    run = tmp_path / "r"
    train(TrainConfig(**TINY, epochs=1, steps_per_epoch=2, save=str(run), tensorboard=True))
    # a crash after the epoch-2 metrics line was appended but before last.pt was replaced
    fileio.append_line(run / "metrics.jsonl", json.dumps({"epoch": 2, "test_acc": -1.0}))
    result = train(TrainConfig.from_run(run, epochs=2))
    lines = [json.loads(ln) for ln in (run / "metrics.jsonl").read_text().splitlines()]
    assert [r["epoch"] for r in lines] == [1, 2] and lines[1]["test_acc"] >= 0 and lines == result.history
    assert json.loads((run / "config.json").read_text())["config"]["epochs"] == 2
    try:
        import torch.utils.tensorboard  # noqa: F401

        assert (run / "tb").is_dir()
    except ImportError:
        assert "tensorboard is not installed" in (run / "train.log").read_text()


def test_existing_folder_needs_resume_or_force(tmp_path):
    run = tmp_path / "r"
    run.mkdir()
    (run / "config.json").write_text("{}")
    with pytest.raises(FileExistsError, match="--resume"):
        train(TrainConfig(**TINY, epochs=1, steps_per_epoch=1, save=str(run)))
    train(TrainConfig(**TINY, epochs=1, steps_per_epoch=1, save=str(run), force=True, activation_checkpointing=True))
    assert load_state(run / "last.pt")["epoch"] == 1


def test_resume_with_other_model_is_refused(tmp_path):
    run = tmp_path / "r"
    train(TrainConfig(**TINY, epochs=1, steps_per_epoch=1, save=str(run)))
    with pytest.raises(ValueError, match="model='res'"):
        train(TrainConfig.from_run(run, model="ssp2", epochs=2))
    with pytest.raises(ValueError, match="dataset='mnist5k'"):
        train(TrainConfig.from_run(run, dataset="fmnist", epochs=2))


def test_crash_while_saving_keeps_previous_checkpoint(tmp_path, monkeypatch):
    run = tmp_path / "r"
    train(TrainConfig(**TINY, epochs=1, steps_per_epoch=2, save=str(run)))
    before = (run / "last.pt").read_bytes()
    real = fileio.atomic_write

    def crashing(path, write):
        if Path(path).name == "last.pt":

            def partial(f):
                f.write(before[: len(before) // 2])
                raise OSError("simulated crash while writing")

            return real(path, partial)
        return real(path, write)

    monkeypatch.setattr(fileio, "atomic_write", crashing)
    with pytest.raises(OSError, match="simulated crash"):
        train(TrainConfig.from_run(run, epochs=2))
    assert (run / "last.pt").read_bytes() == before
    assert load_state(run / "last.pt")["epoch"] == 1
    assert not [p for p in os.listdir(run) if p.endswith(".tmp")]


def test_nan_guard_names_epoch_and_step_and_keeps_last_good_state(tmp_path, monkeypatch):
    run = tmp_path / "r"
    train(TrainConfig(**TINY, epochs=1, steps_per_epoch=4, save=str(run)))
    good = (run / "last.pt").read_bytes()
    import sspnet.train.setup as setup

    real_create = setup.build_model
    calls = {"n": 0}

    def poisoned(cfg):
        model = real_create(cfg)

        def hook(module, inputs, output):
            calls["n"] += 1
            return output * float("nan") if calls["n"] == 3 else output  # 3rd training forward of epoch 2

        model.register_forward_hook(hook)
        return model

    monkeypatch.setattr(setup, "build_model", poisoned)
    with pytest.raises(NonFiniteLossError, match=r"epoch 2, step 3") as info:
        train(TrainConfig.from_run(run, epochs=2, log_interval=50))
    assert (info.value.epoch, info.value.step) == (2, 3)
    assert (run / "last.pt").read_bytes() == good
    assert len((run / "metrics.jsonl").read_text().splitlines()) == 1
    assert "non-finite" in (run / "train.log").read_text()


def _write_old_format(run: Path, unit: float) -> None:
    """Rewrite run/config.json as sspnet wrote it before pixel units: config.eps / alpha in CLI units (the
    dataset's `unit`), old names iters / test_limit, exact pixel values in top-level eps_px / alpha_px."""
    doc = json.loads((run / "config.json").read_text())
    cfg = doc.pop("config")
    eps_px, alpha_px = cfg["eps"], cfg["alpha"]
    cfg.update(eps=eps_px / unit, alpha=alpha_px / unit, iters=cfg.pop("steps"), test_limit=cfg.pop("eval_n_images"))
    doc.pop("format_version")
    (run / "config.json").write_text(json.dumps({"config": cfg, "eps_px": eps_px, "alpha_px": alpha_px, **doc}))


def test_old_format_config_json_resumes_with_pixel_eps(tmp_path):
    from sspnet.train import read_run_config

    run = tmp_path / "r"
    train(TrainConfig(**TINY, epochs=1, adv="pgd", steps=2, eps=0.2, alpha=0.05, steps_per_epoch=1, save=str(run)))
    _write_old_format(run, 1.0)
    saved = read_run_config(run)
    assert (saved["eps"], saved["alpha"], saved["steps"], saved["eval_n_images"]) == (0.2, 0.05, 2, 100)
    result = train(TrainConfig.from_run(run, epochs=2))
    assert [r["epoch"] for r in result.history] == [1, 2]
    doc = json.loads((run / "config.json").read_text())  # rewritten in the current format
    assert doc["format_version"] == 2 and doc["config"]["eps"] == 0.2 and "eps_px" not in doc
    # cifar10 (no data needed): CLI units 8 and 2 in config, the pixel values taken from eps_px / alpha_px
    c10 = tmp_path / "c10"
    c10.mkdir()
    (c10 / "config.json").write_text(
        json.dumps(
            {
                "config": {"dataset": "cifar10", "adv": "pgd", "eps": 8.0, "alpha": 2.0, "iters": 7, "test_limit": 500},
                "eps_px": 8 / 255,
                "alpha_px": 2 / 255,
                "world_size": 1,
            }
        )
    )
    cfg = TrainConfig.from_run(c10)
    cfg.validate()
    assert (cfg.eps, cfg.alpha, cfg.steps, cfg.eval_n_images) == (8 / 255, 2 / 255, 7, 500)
    from sspnet.distributed import DistInfo
    from sspnet.train.folder import RunFolder

    with pytest.raises(FileNotFoundError, match="no last.pt"):  # the identity check agrees with the old folder
        RunFolder(cfg.resolved(), DistInfo()).check()  # (and a resume needs a last.pt)
    with pytest.raises(ValueError, match="cannot resume .* eps="):
        RunFolder(dataclasses.replace(cfg, eps=8.0 / 255 / 2).resolved(), DistInfo()).check()


def test_eval_subset_of_a_label_sorted_split_covers_every_class():
    from sspnet.data import load
    from sspnet.data.subsets import subset_indices
    from sspnet.train.setup import eval_subset

    x, y = load("mnist5k", split="test")
    assert torch.equal(y, y.sort().values)  # sorted by label: a prefix would hold class 0 only
    xs, ys = eval_subset(x, y, 30)
    assert torch.bincount(ys, minlength=10).tolist() == [3] * 10
    idx = subset_indices(y, 30)
    assert torch.equal(ys, y[idx]) and torch.equal(xs, x[idx])
    small = eval_subset(x, y, 12)[1]
    assert len(set(small.tolist())) == 10
    assert eval_subset(x, y, None)[0] is x and eval_subset(x, y, 5000)[1] is y
