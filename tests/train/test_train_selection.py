"""Model selection on a validation split held out of the training images, resume with a new budget (lr schedule
and budget history), the training adversary's 8-bit rounding."""

import dataclasses
import json

import pytest
import torch

import sspnet
from sspnet.distributed import DistInfo
from sspnet.nn.checkpoints import describe_checkpoint
from sspnet.train import TrainConfig, train

TINY = dict(dataset="mnist5k", model="res", blocks=1, batch_size=16, quiet=True, eval_n_images=100, seed=1)
# (loss, accuracy %) the fake evaluation returns per split and epoch: the best validation epoch is 2, the best
# test epoch 3, so selecting on the test set would pick another checkpoint
SCRIPT = {"val": [(1.0, 50.0), (0.5, 70.0), (0.8, 60.0)], "test": [(0.9, 80.0), (0.7, 60.0), (0.4, 90.0)]}
pytestmark = pytest.mark.usefixtures("one_thread")


def _metrics(run):
    return [json.loads(ln) for ln in (run / "metrics.jsonl").read_text().splitlines()]


def _weights(path):
    return torch.load(path, weights_only=True)["state_dict"]


def test_val_split_is_stratified_disjoint_fixed_by_seed_and_not_trained_on(tmp_path):
    from sspnet.data import load
    from sspnet.data.subsets import holdout_indices
    from sspnet.train.setup import prepare

    x, y = load("mnist5k", split="train")
    keep, held = holdout_indices(y, 0.1, seed=1)
    assert (len(keep), len(held)) == (3600, 400) and not set(keep.tolist()) & set(held.tolist())
    per_class, share = torch.bincount(y[held], minlength=10), torch.bincount(y, minlength=10) * 0.1
    assert ((per_class - share).abs() <= 1).all()  # every class in proportion
    assert torch.equal(holdout_indices(y, 0.1, seed=1)[1], held)
    assert not torch.equal(holdout_indices(y, 0.1, seed=2)[1], held)
    cfg = TrainConfig(**TINY, epochs=1, save=str(tmp_path / "r")).resolved()
    run = prepare(cfg, DistInfo())
    assert torch.equal(run.train_batches.images, x[keep]) and torch.equal(run.train_batches.labels, y[keep])
    assert torch.equal(run.val_batches.images, x[held]) and len(run.train_batches) == 3600 // 16
    whole = prepare(TrainConfig(**TINY, epochs=1, val_split=0, save=str(tmp_path / "w")).resolved(), DistInfo())
    assert whole.val_batches is None and torch.equal(whole.train_batches.images, x)


@pytest.fixture(scope="module")
def scripted(tmp_path_factory):
    """Two 3-epoch runs with scripted evaluations: selection on val (the default) and on test."""
    import sspnet.train.loop as loop

    mp = pytest.MonkeyPatch()
    mp.setattr(
        loop, "_evaluate", lambda run, batches: SCRIPT["val" if batches is run.val_batches else "test"][run.state.epoch]
    )
    base, threads = tmp_path_factory.mktemp("sel"), torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        for select_on in ("val", "test"):
            # the original's SGD recipe: mnist5k's own one-cycle default ends at lr 0, so epoch 3 would equal 2
            # (--opt replaces the optimizer only: the multistep schedule is named too)
            opts = dict(select_on=select_on, save=str(base / select_on), opt="sgd", schedule="multistep")
            train(TrainConfig(**TINY, epochs=3, steps_per_epoch=1, **opts))
    finally:
        mp.undo()
        torch.set_num_threads(threads)
    return base


def test_best_checkpoints_are_chosen_on_the_validation_split(scripted):
    run = scripted / "val"
    recs = _metrics(run)
    assert [(r["val_loss"], r["val_acc"]) for r in recs] == SCRIPT["val"]
    assert [(r["test_loss"], r["test_acc"]) for r in recs] == SCRIPT["test"]
    assert [r["best_acc"] for r in recs] == [True, True, False]
    for crit in ("acc", "loss"):
        ckpt = torch.load(run / f"model_{crit}.pt", weights_only=True)
        assert (ckpt["epoch"], ckpt["selected_on"], ckpt["criterion"]) == (2, "val", crit)
        assert (ckpt["val_acc"], ckpt["test_acc"]) == (70.0, 60.0)
    on_test = scripted / "test"
    for crit in ("acc", "loss"):  # the original's rule picks the best test epoch
        ckpt = torch.load(on_test / f"model_{crit}.pt", weights_only=True)
        assert (ckpt["epoch"], ckpt["selected_on"]) == (3, "test")
    assert "selected on the test set" in (on_test / "train.log").read_text()


def test_load_model_defaults_to_the_final_checkpoint(scripted):
    run = scripted / "val"
    final, best = _weights(run / "model_final.pt"), _weights(run / "model_acc.pt")
    assert not torch.equal(final["head.4.weight"], best["head.4.weight"])  # epoch 3 vs epoch 2
    loaded = sspnet.load_model(run).state_dict()
    assert all(torch.equal(loaded[k], final[k]) for k in final)
    assert torch.equal(sspnet.load_model(run, crit="acc").state_dict()["head.4.weight"], best["head.4.weight"])


def test_describe_checkpoint_names_the_selection_and_warns_on_test(scripted):
    final = describe_checkpoint(scripted / "val")
    assert (final["selected_on"], final["epoch"], final["warning"]) == ("final", 3, None)
    assert final["file"].endswith("model_final.pt") and final["test_acc"] == 90.0
    val = describe_checkpoint(scripted / "val", "acc")
    assert (val["selected_on"], val["criterion"], val["epoch"], val["warning"]) == ("val", "acc", 2, None)
    test = describe_checkpoint(scripted / "test", "loss")
    assert test["selected_on"] == "test" and test["epoch"] == 3
    assert "selected on the test set (best test loss at epoch 3)" in test["warning"]
    assert "optimistically biased" in test["warning"]


def test_no_validation_split_writes_only_the_final_checkpoint(tmp_path):
    with pytest.raises(ValueError, match="--select-on val needs a validation split but --val-split is 0"):
        TrainConfig(val_split=0, select_on="val").validate()
    run = tmp_path / "r"
    result = train(TrainConfig(**TINY, epochs=1, steps_per_epoch=1, val_split=0, save=str(run)))
    assert result.selected_on == "none" and result.best_acc is None
    assert result.final["val_acc"] is None and result.final["test_acc"] is not None
    assert not (run / "model_acc.pt").exists() and (run / "model_final.pt").is_file()
    info = describe_checkpoint(run, "acc")  # falls back to the final checkpoint and says so
    assert info["file"].endswith("model_final.pt") and "has no model_acc.pt" in info["note"]


def _lr_log(monkeypatch):
    """Record the learning rate of every training step."""
    import sspnet.train.loop as loop

    lrs, real = [], loop.train_step
    monkeypatch.setattr(
        loop,
        "train_step",
        lambda net, opt, *a, **k: (lrs.append(opt.param_groups[0]["lr"]), real(net, opt, *a, **k))[1],
    )
    return lrs


def test_resume_with_more_epochs_continues_on_the_new_budget_schedule(tmp_path, monkeypatch):
    """Semantics: from the step where it resumes, the run follows the schedule of a fresh run with the new
    --epochs (the steps before it keep the lr they were trained with)."""
    lrs = _lr_log(monkeypatch)
    kw = dict(TINY, steps_per_epoch=2, schedule="cyclic", opt="adam", lr=1e-3, save_every=0)
    train(TrainConfig(**kw, epochs=3, save=str(tmp_path / "fresh")))
    fresh, lrs[:] = list(lrs), []
    run = tmp_path / "grown"
    train(TrainConfig(**kw, epochs=1, save=str(run)))
    train(TrainConfig.from_run(run, epochs=3))
    assert len(lrs) == 6 and lrs[2:] == fresh[2:] and min(lrs[2:-1]) > 0  # a cycle ends at 0 on its last step
    assert lrs[:2] != fresh[:2]  # the first epoch ran on the 1-epoch cycle
    logged = [r["lr"] for r in _metrics(run)]
    assert logged[1:] == [r["lr"] for r in _metrics(tmp_path / "fresh")][1:] and min(logged) > 0
    doc = json.loads((run / "config.json").read_text())
    assert doc["budget_history"] == [
        {"epochs": 1, "at_epoch": 0, "at_step": 0},
        {"epochs": 3, "at_epoch": 1, "at_step": 0},
    ]
    assert doc["config"]["epochs"] == 3
    train(TrainConfig.from_run(run, epochs=3))  # the same budget again: nothing to do, no new entry
    assert len(json.loads((run / "config.json").read_text())["budget_history"]) == 2


def _cifar_stub(path, defaulted):
    """A cifar10 run folder's config.json (no data needed): standard res training, 100 epochs, the milestones
    of the original's rule for that budget, taken from the default or given explicitly."""
    path.mkdir()
    cfg = TrainConfig(dataset="cifar10", epochs=100, save=str(path)).resolved()
    (path / "config.json").write_text(
        json.dumps(
            {
                "format_version": 2,
                "config": dataclasses.asdict(cfg),
                "defaulted": ["milestones"] if defaulted else [],
                "budget_history": [{"epochs": 100, "at_epoch": 0, "at_step": 0, "milestones": cfg.milestones}],
            }
        )
    )
    torch.save({"epoch": 0, "step": 0}, path / "last.pt")  # resume refuses a folder without training state
    return cfg


def test_resume_derives_default_milestones_again_for_the_new_budget(tmp_path):
    from sspnet.cli import build_parser
    from sspnet.cli.train import config_from_args
    from sspnet.train.folder import RunFolder

    assert _cifar_stub(tmp_path / "d", defaulted=True).milestones == [30, 60, 90]
    grown = TrainConfig.from_run(tmp_path / "d", epochs=200)
    assert grown.milestones is None and grown.resolved().milestones == [60, 100, 140]
    RunFolder(grown.resolved(), DistInfo(), grown.defaulted()).check()  # agrees with the folder
    args = build_parser().parse_args(["train", "--resume", str(tmp_path / "d"), "--epochs", "200"])
    assert config_from_args(args).resolved().milestones == [60, 100, 140]
    pinned = TrainConfig.from_run(tmp_path / "d", epochs=200, milestones=[10, 20])
    with pytest.raises(ValueError, match=r"cannot resume .*milestones=\[60, 100, 140\] \(asked: \[10, 20\]\)"):
        RunFolder(pinned.resolved(), DistInfo(), pinned.defaulted()).check()
    _cifar_stub(tmp_path / "e", defaulted=False)  # given explicitly: kept whatever the budget
    assert TrainConfig.from_run(tmp_path / "e", epochs=200).resolved().milestones == [30, 60, 90]


def test_config_json_without_the_new_options_resumes_as_it_was_trained(tmp_path):
    """Runs from before the validation split / rounding options: all images trained on, selection on test,
    no rounding."""
    from sspnet.train import read_run_config

    run = tmp_path / "r"
    train(TrainConfig(**TINY, epochs=1, steps_per_epoch=1, save=str(run), opt="sgd", schedule="multistep"))
    doc = json.loads((run / "config.json").read_text())
    for key in ("val_split", "select_on", "train_quantize"):
        del doc["config"][key]
    del doc["budget_history"], doc["defaulted"]
    (run / "config.json").write_text(json.dumps(doc))
    saved = read_run_config(run)
    assert (saved["val_split"], saved["select_on"], saved["train_quantize"]) == (0.0, "test", False)
    rec = train(TrainConfig.from_run(run, epochs=2)).final
    assert rec["val_acc"] is None and rec["epoch"] == 2
    history = json.loads((run / "config.json").read_text())["budget_history"]
    assert history == [
        {"epochs": 1, "at_epoch": 0, "at_step": 0},
        {"epochs": 2, "at_epoch": 1, "at_step": 0, "milestones": [60, 100, 140]},
    ]


@pytest.mark.parametrize("kind", ["fgsm", "pgd", "fast"])
def test_train_quantize_puts_adversarial_examples_on_the_8bit_grid(kind):
    from sspnet.train.step import Adversary, adversary_threat

    model = sspnet.create_model("res", dataset="mnist5k", blocks=1, seed=0)
    g = torch.Generator().manual_seed(0)
    x, y = torch.randint(0, 256, (8, 1, 28, 28), generator=g).float() / 255, torch.randint(0, 10, (8,), generator=g)
    for quantize in (True, False):
        adversary = Adversary(kind, model, adversary_threat(kind, 0.3, 0.05, 2, quantize))
        xa, _ = adversary(x, y, torch.Generator().manual_seed(1))
        off_grid = (xa * 255 - (xa * 255).round()).abs().max().item()
        assert (off_grid < 1e-3) == quantize, (quantize, off_grid)
        assert (xa - x).abs().max() <= 0.3 + 1e-6 and not torch.equal(xa, x)


def test_train_quantize_is_on_by_default_and_part_of_the_run_identity(tmp_path):
    from sspnet.train.setup import prepare

    cfg = TrainConfig(**TINY, epochs=1, steps_per_epoch=1, adv="pgd", steps=1, save=str(tmp_path / "r"))
    for quantize in (True, False):
        c = dataclasses.replace(cfg, save=str(tmp_path / f"q{quantize}"), train_quantize=quantize)
        assert prepare(c.resolved(), DistInfo()).adversary.attack.quantize is quantize
    assert cfg.train_quantize is True
    train(cfg)
    with pytest.raises(ValueError, match="train_quantize=True"):
        train(TrainConfig.from_run(tmp_path / "r", epochs=2, train_quantize=False))
