"""The training eps warm-up: its schedule in closed form, the radius each step's adversary uses, the cache hash
of runs without it, and the option's checks."""

import pytest
import torch

from sspnet.train import TrainConfig, train
from sspnet.train.step import Adversary, adversary_threat, warmup_fraction

TINY = dict(
    dataset="mnist5k",
    model="res",
    blocks=1,
    batch_size=16,
    quiet=True,
    eval_n_images=50,
    seed=1,
    save_every=0,
    adv="pgd",
    eps=0.2,
    alpha=0.1,
    steps=2,
    opt="adam",
    lr=1e-3,
)


def test_warmup_fraction_is_linear_in_steps_and_reaches_one():
    assert [warmup_fraction(t, 4) for t in range(6)] == [0.25, 0.5, 0.75, 1.0, 1.0, 1.0]
    assert [warmup_fraction(t, 2.5) for t in range(3)] == [0.4, 0.8, 1.0]
    assert warmup_fraction(0, 0) == warmup_fraction(7, 0.0) == 1.0


def test_each_step_crafts_within_the_warmed_up_radius(tmp_path, monkeypatch):
    seen = []
    call = Adversary.__call__

    def spy(self, x, y, generator):
        x_adv, y_adv = call(self, x, y, generator)
        seen.append((self.attack.eps, self.attack.alpha, float((x_adv - x).abs().max())))
        return x_adv, y_adv

    monkeypatch.setattr(Adversary, "__call__", spy)
    # 2 epochs of 3 steps, warm-up over 1.5 epochs = 4.5 steps
    train(TrainConfig(**TINY, epochs=2, steps_per_epoch=3, eps_warmup=1.5, save=str(tmp_path / "r")))
    assert len(seen) == 6
    for t, (eps, alpha, moved) in enumerate(seen):
        f = min(1.0, (t + 1) / 4.5)
        assert eps == pytest.approx(0.2 * f) and alpha == pytest.approx(0.1 * f)
        assert moved <= 0.2 * f + 1e-6  # inside the ball of this step (8-bit rounding stays inside it)
    assert seen[-1][0] == pytest.approx(0.2) and seen[0][2] > 0


def test_without_warmup_every_step_uses_the_full_radius(tmp_path, monkeypatch):
    radii = []
    call = Adversary.__call__
    monkeypatch.setattr(
        Adversary, "__call__", lambda self, x, y, g: (radii.append(self.attack.eps), call(self, x, y, g))[1]
    )
    train(TrainConfig(**TINY, epochs=1, steps_per_epoch=3, save=str(tmp_path / "r")))
    assert radii == [0.2, 0.2, 0.2]


def test_a_run_without_warmup_keeps_its_cache_hash():
    from sspnet.experiments.compare.plan.runs import config_hash, train_key

    base = TrainConfig(**TINY, epochs=2)
    zero = TrainConfig(**TINY, epochs=2, eps_warmup=0.0)
    warm = TrainConfig(**TINY, epochs=2, eps_warmup=1)
    assert "eps_warmup" not in train_key(base)
    assert config_hash(train_key(base)) == config_hash(train_key(zero)) != config_hash(train_key(warm))


@pytest.mark.parametrize("value", [-0.5, 3, float("nan"), float("inf")])
def test_warmup_outside_the_run_is_refused(value):
    with pytest.raises(ValueError, match=r"--eps-warmup must be a number of epochs in \[0, --epochs 2\]"):
        TrainConfig(**TINY, epochs=2, eps_warmup=value).validate()


def test_warmup_of_a_text_value_names_the_type():
    with pytest.raises(ValueError, match="--eps-warmup must be a number"):
        TrainConfig(**TINY, epochs=2, eps_warmup="2").validate()


def test_ball_training_noise_is_warmed_up_too():
    import sspnet

    model = sspnet.create_model("res", dataset="mnist5k", blocks=1)
    adv = Adversary("ball", model, adversary_threat("ball", 0.3, 0.0, 1, False), copies=2)
    adv.set_fraction(0.5)
    x = torch.full((4, 1, 28, 28), 0.5)
    xb, yb = adv(x, torch.zeros(4, dtype=torch.long), torch.Generator().manual_seed(0))
    assert xb.shape[0] == 8 and float((xb - x.repeat(2, 1, 1, 1)).abs().max()) <= 0.15 + 1e-6


def test_compare_presets_warm_up_and_the_flag_overrides_them(tmp_path):
    from sspnet.cli import build_parser
    from sspnet.cli.compare import build_config
    from sspnet.experiments.compare.plan.runs import make_plan

    for preset in ("default", "cpu-hour"):
        plan, ctx = make_plan(
            build_config(build_parser().parse_args(["compare", "--preset", preset, "--out", str(tmp_path / preset)]))
        )
        assert ctx.train["eps_warmup"] == 2 and plan[0].train_config.eps_warmup == 2
    cfg = build_config(build_parser().parse_args(["compare", "--eps-warmup", "0", "--out", str(tmp_path / "c")]))
    from sspnet.experiments.compare.plan.runs import train_key

    plan, ctx = make_plan(cfg)
    assert plan[0].train_config.eps_warmup == 0 and "eps_warmup" not in train_key(plan[0].train_config)


def test_other_epochs_keep_the_presets_share_of_warmup(tmp_path):
    from sspnet.experiments.compare import CompareConfig
    from sspnet.experiments.compare.plan.runs import make_plan

    def warmup(**train):
        return make_plan(CompareConfig(out=str(tmp_path / "c"), seeds=1, train=train))[0][0].train_config.eps_warmup

    assert warmup() == 2 and warmup(epochs=4) == 1 and warmup(epochs=1) == 0.25 and warmup(epochs=16) == 4
    assert warmup(epochs=1, eps_warmup=0) == 0 and warmup(epochs=8, eps_warmup=1) == 1
    with pytest.raises(ValueError, match="--eps-warmup must be a number of epochs in"):
        warmup(epochs=1, eps_warmup=3)
