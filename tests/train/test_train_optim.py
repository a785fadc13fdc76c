"""The parts of training without a training run: optimizers and schedules (sspnet.train.optim), TrainConfig
resolution and validation, the metrics meter, TrainState's last.pt round trip."""

import io
import random

import pytest
import torch

from sspnet.train import TrainConfig
from sspnet.train.optim import (
    CyclicFactor,
    build_optimizer,
    build_schedule,
    default_decay,
    default_lr,
    default_milestones,
)


def _params():
    return [torch.nn.Parameter(torch.zeros(3))]


def test_original_defaults():
    assert default_lr("cifar10", "sgd") == 0.1 and default_lr("mnist", "sgd") == 0.1
    assert default_lr("cifar10", "adam") == 1e-4 and default_lr("mnist", "adam") == 1e-3
    assert default_lr("mnist", "rms") == 1e-3
    assert default_decay("cifar10", "sgd") == 5e-4 and default_decay("mnist", "sgd") == 0.0
    sgd = build_optimizer(_params(), "sgd", 0.1, 5e-4, "cifar10").param_groups[0]
    assert (sgd["momentum"], sgd["nesterov"], sgd["weight_decay"]) == (0.9, True, 5e-4)
    assert build_optimizer(_params(), "sgd", 0.1, 0.0, "mnist").param_groups[0]["momentum"] == 0
    assert build_optimizer(_params(), "adam", 1e-4, 0.0, "cifar10").param_groups[0]["betas"] == (0.0, 0.9)
    assert isinstance(build_optimizer(_params(), "rms", 1e-3, 0.0, "mnist"), torch.optim.RMSprop)
    with pytest.raises(ValueError, match="valid optimizers: sgd, adam, rms"):
        build_optimizer(_params(), "lbfgs", 0.1, 0.0, "mnist")


def test_milestone_rules():
    assert default_milestones("cifar10", 200, True, 0.1) == [80, 140, 180]
    assert default_milestones("cifar10", 200, True, 0.05) == [120, 160, 180]
    assert default_milestones("cifar10", 200, False, 0.1, "ssp3") == [70, 120, 160]
    assert default_milestones("cifar10", 200, False, 0.1, "res") == [60, 100, 140]
    assert default_milestones("cifar10", 100, False, 0.1, "res") == [30, 60, 90]
    assert default_milestones("mnist", 200, True, 0.1) == [60, 100, 140]


def test_multistep_is_per_epoch_gamma_power():
    opt = build_optimizer(_params(), "sgd", 0.1, 0.0, "mnist")
    sched = build_schedule(opt, "multistep", epochs=5, steps_per_epoch=3, milestones=[2, 4])
    lrs = []
    for _ in range(15):
        lrs.append(opt.param_groups[0]["lr"])
        opt.step()
        sched.step()
    expected = [0.1] * 6 + [0.1 * 0.1] * 6 + [0.1 * 0.01] * 3
    assert lrs == pytest.approx(expected, rel=1e-12)


def test_cyclic_is_a_triangle_and_state_round_trips_weights_only():
    f = CyclicFactor(total_steps=10, peak=0.4)
    values = [f(k) for k in range(10)]
    assert values[3] == pytest.approx(1.0) and values[-1] == pytest.approx(0.0)
    assert all(a < b for a, b in zip(values[:4], values[1:4])) and all(a > b for a, b in zip(values[3:], values[4:]))
    opt = build_optimizer(_params(), "sgd", 0.2, 0.0, "mnist")
    sched = build_schedule(opt, "cyclic", epochs=2, steps_per_epoch=5)
    for _ in range(3):
        opt.step()
        sched.step()
    buf = io.BytesIO()
    torch.save(sched.state_dict(), buf)
    buf.seek(0)
    state = torch.load(buf, weights_only=True)
    opt2 = build_optimizer(_params(), "sgd", 0.2, 0.0, "mnist")
    sched2 = build_schedule(opt2, "cyclic", epochs=2, steps_per_epoch=5)
    sched2.load_state_dict(state)
    assert sched2.last_epoch == 3 and sched2.get_last_lr() == pytest.approx(sched.get_last_lr())


def _stepped(epochs, steps, milestones=None, schedule="cyclic", n=0):
    opt = build_optimizer(_params(), "sgd", 0.1, 0.0, "mnist")
    sched = build_schedule(opt, schedule, epochs=epochs, steps_per_epoch=steps, milestones=milestones)
    lrs = []
    for _ in range(n):
        lrs.append(opt.param_groups[0]["lr"])
        opt.step()
        sched.step()
    return opt, sched, lrs


@pytest.mark.parametrize("schedule, old, new", [("cyclic", None, None), ("multistep", [1], [3])])
def test_loaded_schedule_continues_on_the_new_budget(schedule, old, new):
    """A schedule saved after 3 steps of a 2-epoch budget, loaded into the schedule of a 4-epoch budget (for
    multistep: the milestones that budget gives), continues as a fresh 4-epoch schedule from step 3."""
    from sspnet.train.optim import load_schedule_state

    _, saved, _ = _stepped(2, 5, old, schedule, n=3)
    state = io.BytesIO()
    torch.save(saved.state_dict(), state)
    state.seek(0)
    opt, sched, _ = _stepped(4, 5, new, schedule)
    load_schedule_state(sched, torch.load(state, weights_only=True))
    lrs = []
    for _ in range(17):
        lrs.append(opt.param_groups[0]["lr"])
        opt.step()
        sched.step()
    assert lrs == _stepped(4, 5, new, schedule, n=20)[2][3:]
    assert lrs != _stepped(2, 5, old, schedule, n=20)[2][3:]  # what LambdaLR.load_state_dict would continue with
    # the same budget: bit for bit the lr the saved schedule had
    opt, sched, _ = _stepped(2, 5, old, schedule)
    load_schedule_state(sched, saved.state_dict())
    assert opt.param_groups[0]["lr"] == saved.optimizer.param_groups[0]["lr"] and sched.last_epoch == 3


def test_resolved_config_fills_original_defaults_in_pixel_units():
    c = TrainConfig(dataset="cifar10", adv="pgd").resolved()
    assert (c.lr, c.decay, c.milestones, c.steps) == (0.1, 5e-4, [80, 140, 180], 7)
    assert (c.eps, c.alpha) == (8 / 255, 2 / 255)
    assert TrainConfig(dataset="tiny").resolved().eps == 4 / 255
    m = TrainConfig(dataset="mnist5k", opt="adam").resolved()  # the recipe's optimizer keeps the recipe's lr
    assert (m.lr, m.decay, m.milestones, m.steps, m.eps, m.alpha) == (2e-3, 0.0, [60, 100, 140], 10, 0.3, 0.05)
    assert TrainConfig(dataset="mnist", opt="adam").resolved().lr == 1e-3  # the original's lr for adam
    assert TrainConfig(dataset="fmnist").resolved().eps == 0.1
    assert TrainConfig(dataset="mnist5k", seed=3).resolved().save.endswith("mnist5k-res-none-seed3")
    assert (m.val_split, m.select_on, m.train_quantize, m.sync_bn) == (0.1, "val", True, True)
    assert TrainConfig(val_split=0).resolved().select_on == "none"  # no validation split: model_final.pt only
    assert TrainConfig(val_split=0, select_on="test").resolved().select_on == "test"
    assert set(TrainConfig().defaulted()) >= {"lr", "milestones", "select_on"}


@pytest.mark.parametrize(
    "kw, match",
    [
        ({"lr": 0.0}, "--lr must be a finite number > 0"),
        ({"lr": -1.0}, "--lr"),
        ({"epochs": 0}, "--epochs must be an integer >= 1"),
        ({"opt": "lbfgs"}, "valid optimizers"),
        ({"adv": "cw"}, "valid adversaries: none, fgsm, pgd, ball, fast"),
        ({"batch_size": 3601}, "larger than the 3600"),
        ({"val_split": -0.1}, "--val-split must be a fraction in"),
        ({"val_split": True}, "--val-split must be"),
        ({"val_split": 0.0, "select_on": "val"}, "--select-on val needs a validation split"),
        ({"schedule": "cosine"}, "valid schedules"),
        ({"dataset": "svhn"}, "valid datasets"),
        ({"eps": 8.0}, "whole pixel range"),
        ({"milestones": [0]}, "positive epoch"),
        (
            {"dataset": "cifar10", "eps": 8.0},
            r"--train-eps 2040 \(TrainConfig.eps=8 in pixel units\) .* --train-eps is in units of 1/255, at most 255",
        ),
        (
            {"dataset": "cifar10", "alpha": -2 / 255},
            r"--train-alpha must be a finite number >= 0 \(on cifar10 in units of 1/255\), got -2",
        ),
        ({"steps": 0}, "--train-pgd-steps must be an integer >= 1"),
        ({"eval_n_images": 0}, "--eval-n-images must be an integer >= 1"),
        ({"blocks": 0}, "--blocks must be an integer >= 1"),
        ({"eval_batch_size": 0}, "--eval-batch-size must be an"),
        ({"batch_size": 0}, "--batch-size must be an integer >= 1"),
        ({"save_every": -1}, "--save-every must be an integer >= 0"),
        ({"adv": "pgd", "alpha": 0.0}, "--train-alpha must"),
        ({"save": " "}, "--out must name a run folder, got an empty string; pass --out DIR"),
        ({"resume": True, "force": True, "save": "x"}, "contradict"),
    ],
)
def test_validate_rejects_bad_options(kw, match):
    with pytest.raises(ValueError, match=match):
        TrainConfig(**kw).validate()


def test_from_dict_accepts_original_names_and_rejects_unknown():
    c = TrainConfig.from_dict({"tbsize": 64, "block": 2, "data-root": "/d", "checkpoint": True})
    assert (c.batch_size, c.blocks, c.data_root, c.activation_checkpointing) == (64, 2, "/d", True)
    old = TrainConfig.from_dict({"iters": 3, "test_limit": 50})  # the names of earlier sspnet versions
    assert (old.steps, old.eval_n_images) == (3, 50)
    assert TrainConfig.from_dict({"test-limit": 7, "eval-n-images": 9}).eval_n_images == 9
    with pytest.raises(ValueError, match="unknown training option 'bogus'"):
        TrainConfig.from_dict({"bogus": 1})


def test_meter_named_sums_means_and_all_reduce(monkeypatch):
    from sspnet.train import meter as meter_module
    from sspnet.train.meter import TRAIN_SUMS, Meter

    m = Meter(TRAIN_SUMS)
    assert m.sums.dtype == torch.float64 and m.sums.shape == (6,)
    m.add("loss", torch.tensor(3.0))
    m.add("correct", torch.tensor(2))
    m.add("count", 4)
    m.add("loss", torch.tensor(1.0))
    m.add("count", 4)
    m.add("adv_count", 5)
    assert m.totals() == {
        "loss": 4.0,
        "correct": 2.0,
        "count": 8.0,
        "adv_loss": 0.0,
        "adv_correct": 0.0,
        "adv_count": 5.0,
    }
    assert m.means() == {"loss": 0.5, "acc": 25.0, "adv_loss": 0.0, "adv_acc": 0.0}
    assert Meter(TRAIN_SUMS).means() == {"loss": None, "acc": None, "adv_loss": None, "adv_acc": None}
    single = m.reduced()  # one process: a copy with the same sums
    assert single.totals() == m.totals() and single.sums.data_ptr() != m.sums.data_ptr()

    def two_ranks(t):  # stands in for a second rank holding the same sums
        return t.mul_(2)

    monkeypatch.setattr(meter_module.dist, "all_reduce_sum", two_ranks)
    both = m.reduced()
    assert both.totals()["count"] == 16.0 and both.means()["acc"] == 25.0
    assert m.totals()["count"] == 8.0  # the rank's own sums are untouched
    m.reset()
    assert not m.sums.any()
    with pytest.raises(KeyError):
        m.add("bogus", 1)
    with pytest.raises(ValueError, match="shape"):
        m.load(torch.zeros(3))


def _train_state(seed):
    from sspnet.nn.models import create_model
    from sspnet.train.meter import TRAIN_SUMS, Meter
    from sspnet.train.state import TrainState

    model = create_model("res", dataset="mnist5k", blocks=1, seed=seed)
    opt = build_optimizer(model.parameters(), "adam", 1e-3, 0.0, "mnist")
    return TrainState(model, opt, build_schedule(opt, "cyclic", epochs=2, steps_per_epoch=3), None, Meter(TRAIN_SUMS))


def _one_step(state, seed):
    from sspnet.train.step import train_step

    g = torch.Generator().manual_seed(seed)
    batch = (torch.rand(8, 1, 28, 28, generator=g), torch.randint(0, 10, (8,), generator=g))
    return train_step(state.model, state.optimizer, state.scheduler, None, batch, state.meter, loss_scale=1 / 8)


def test_train_state_round_trip_through_last_pt_format():
    a = _train_state(0)
    _one_step(a, 1)
    a.epoch, a.step, a.seconds, a.best = 1, 2, 3.5, {"acc": 91.0, "loss": 0.25}
    buf = io.BytesIO()
    torch.save(a.state_dict(), buf)
    after = (torch.rand(4), random.random())  # what the saved RNG states produce next
    buf.seek(0)
    saved = torch.load(buf, weights_only=True)
    assert saved["format"] == "sspnet-train-state" and saved["sums"].tolist()[2] == 8.0
    b = _train_state(1)
    b.load_state_dict(saved)
    assert (torch.rand(4).tolist(), random.random()) == (after[0].tolist(), after[1])
    assert (b.epoch, b.step, b.best) == (1, 2, {"acc": 91.0, "loss": 0.25}) and b.seconds >= 3.5
    assert torch.equal(b.meter.sums, a.meter.sums) and b.scheduler.last_epoch == a.scheduler.last_epoch == 1
    for k, v in a.model.state_dict().items():
        assert torch.equal(v, b.model.state_dict()[k]), k
    sa, sb = a.optimizer.state_dict()["state"], b.optimizer.state_dict()["state"]
    assert sa.keys() == sb.keys() and all(torch.equal(sa[i][n], sb[i][n]) for i in sa for n in sa[i])
    # both continue identically
    assert torch.equal(_one_step(a, 2), _one_step(b, 2))
    for k, v in a.model.state_dict().items():
        assert torch.equal(v, b.model.state_dict()[k]), k
    with pytest.raises(ValueError, match="not an sspnet training state"):
        b.load_state_dict({"format": "other"})
