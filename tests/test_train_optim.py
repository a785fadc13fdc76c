"""Optimizer and schedule construction (sspnet.optim) and TrainConfig resolution: closed forms, no training."""
import io

import pytest
import torch

from sspnet.train.optim import (CyclicFactor, build_optimizer, build_schedule, default_decay, default_lr,
                          default_milestones)
from sspnet.train import TrainConfig


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


def test_resolved_config_fills_original_defaults():
    c = TrainConfig(dataset="cifar10", adv="pgd").resolved()
    assert (c.lr, c.decay, c.milestones, c.iters) == (0.1, 5e-4, [80, 140, 180], 7)
    assert (c.eps, c.alpha) == (8.0, 2.0)  # CLI units: 1/255
    m = TrainConfig(dataset="mnist5k", opt="adam").resolved()
    assert (m.lr, m.decay, m.milestones, m.iters, m.eps, m.alpha) == (1e-3, 0.0, [60, 100, 140], 10, 0.3, 0.05)
    assert TrainConfig(dataset="fmnist").resolved().eps == 0.1
    assert TrainConfig(dataset="mnist5k", seed=3).resolved().save.endswith("mnist5k-res-none-seed3")


@pytest.mark.parametrize("kw, match", [
    ({"lr": 0.0}, "--lr must be a finite number > 0"), ({"lr": -1.0}, "--lr"),
    ({"epochs": 0}, "--epochs must be an integer >= 1"), ({"opt": "lbfgs"}, "valid optimizers"),
    ({"adv": "cw"}, "valid adversaries: none, fgsm, pgd, ball, fast"), ({"batch_size": 4001}, "larger than the 4000"),
    ({"schedule": "cosine"}, "valid schedules"), ({"dataset": "svhn"}, "valid datasets"),
    ({"eps": 8.0}, "whole pixel range"), ({"milestones": [0]}, "positive epoch"),
    ({"resume": True, "force": True, "save": "x"}, "contradict"),
])
def test_validate_rejects_bad_options(kw, match):
    with pytest.raises(ValueError, match=match):
        TrainConfig(**kw).validate()


def test_from_dict_accepts_original_names_and_rejects_unknown():
    c = TrainConfig.from_dict({"tbsize": 64, "block": 2, "data-root": "/d", "checkpoint": True})
    assert (c.batch_size, c.blocks, c.data_root, c.activation_checkpointing) == (64, 2, "/d", True)
    with pytest.raises(ValueError, match="unknown training option 'bogus'"):
        TrainConfig.from_dict({"bogus": 1})
