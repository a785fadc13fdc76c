"""The step size h of RK blocks: h = 0 is the identity, h scales the closed forms, checkpoints and plans carry it."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from torch import nn

from sspnet.nn import create_model, load_model, save_checkpoint
from sspnet.nn.blocks import ARKBlock, RKBlock
from sspnet.nn.registry import display_name, get_block, list_models, model_stem, split_step_size
from sspnet.nn.schemes import SCHEME_PRESETS


class Scale(nn.Module):
    """F(u) = c u: a linear residual branch whose step has a closed form."""

    def __init__(self, c: float):
        super().__init__()
        self.c = c

    def forward(self, u: torch.Tensor) -> torch.Tensor:
        return self.c * u


def stability_polynomial(A: np.ndarray, b: np.ndarray, z: float) -> float:
    """R(z) = 1 + z b^T (I - z A)^-1 1, the closed form of one step of y' = lambda y with z = h lambda."""
    s = len(b)
    return float(1 + z * b @ np.linalg.solve(np.eye(s) - z * A, np.ones(s)))


@pytest.mark.parametrize("name", list_models())
def test_step_size_zero_is_the_identity_for_every_model(name):
    torch.manual_seed(0)
    model = create_model(name, "cifar10", blocks=2, step_size=0.0, seed=0).eval()
    x = torch.randn(3, model.groups[0][0].f.conv1.in_channels, 8, 8)
    for block in model.groups[0]:
        assert torch.equal(block(x), x)
        assert block.f_calls == 0
    assert model.f_calls_per_block == [0] * len(model.f_calls_per_block)


@pytest.mark.parametrize("name", list(SCHEME_PRESETS))
@pytest.mark.parametrize("h", [0.25, 0.5, 1.0, 2.0])
def test_h_scales_the_stability_polynomial_of_every_scheme(name, h):
    scheme = SCHEME_PRESETS[name]
    c = 0.7
    block = RKBlock(4, "b", scheme, step_size=h)
    block.f = Scale(c)
    x = torch.randn(2, 4, 3, 3, dtype=torch.float64)
    A, b = np.array(scheme.butcher_A), np.array(scheme.butcher_b)
    expected = stability_polynomial(A, b, h * c)
    torch.testing.assert_close(block(x), expected * x, rtol=1e-12, atol=1e-12)


def test_res_with_h_is_x_plus_h_f_and_ssp2_is_the_second_order_taylor_polynomial():
    x = torch.randn(2, 4, 3, 3, dtype=torch.float64)
    for h in (0.1, 0.5, 3.0):
        res = RKBlock(4, "b", SCHEME_PRESETS["res"], step_size=h)
        res.f = Scale(2.0)
        torch.testing.assert_close(res(x), x + h * 2.0 * x)
        ssp2 = RKBlock(4, "b", SCHEME_PRESETS["ssp2"], step_size=h)
        ssp2.f = Scale(2.0)
        z = 2.0 * h
        torch.testing.assert_close(ssp2(x), (1 + z + z * z / 2) * x)


@pytest.mark.parametrize("b10", [-1.0, 0.0, 1.5])
def test_ark_with_h_is_second_order_for_every_learned_c2(b10):
    x = torch.randn(2, 4, 3, 3, dtype=torch.float64)
    for h in (0.0, 0.5, 2.0):
        block = ARKBlock(4, "b", b10=b10, step_size=h).double()
        block.f = Scale(-0.3)
        z = -0.3 * h
        torch.testing.assert_close(block(x), (1 + z + z * z / 2) * x)
        alpha, beta = block.shu_osher()
        assert sum(beta[-1]) == pytest.approx(h) and alpha == ((1.0,), (1.0, 0.0))


def test_the_step_size_is_in_the_model_config_and_round_trips_through_a_checkpoint(tmp_path):
    model = create_model("ssp2", "mnist5k", blocks=1, step_size=0.5, seed=3)
    assert model.config["step_size"] == 0.5
    path = save_checkpoint(tmp_path / "m.pt", model)
    loaded = load_model(path)
    assert loaded.groups[0][0].step_size == 0.5
    x = torch.rand(2, 1, 28, 28)
    torch.testing.assert_close(loaded(x), model.eval()(x))


def test_a_checkpoint_without_a_step_size_loads_with_h_one(tmp_path):
    model = create_model("res", "mnist5k", blocks=1, seed=1)
    path = save_checkpoint(tmp_path / "old.pt", model)
    obj = torch.load(path, weights_only=True)
    del obj["model_config"]["step_size"]  # as sspnet wrote them before the step size existed
    torch.save(obj, path)
    loaded = load_model(path)
    assert loaded.config["step_size"] == 1.0 and loaded.groups[0][0].step_size == 1.0
    x = torch.rand(2, 1, 28, 28)
    torch.testing.assert_close(loaded(x), model.eval()(x))


@pytest.mark.parametrize("bad", [-0.5, float("nan"), float("inf"), True, "1"])
def test_a_bad_step_size_is_refused_in_one_line(bad):
    with pytest.raises(ValueError, match="step size must be a finite number >= 0") as info:
        create_model("res", "mnist5k", step_size=bad)
    assert "\n" not in str(info.value)


def test_model_specs_with_a_step_size():
    assert split_step_size("res@0.5") == ("res", 0.5)
    assert split_step_size("ssp2") == ("ssp2", None)
    assert display_name("res@0.5") == "ResNet h=0.5"
    assert model_stem("res@0.25") == "res-h0.25" and model_stem("dir/ralston.yaml") == "ralston"
    for bad, words in (("res@", "a number like res@0.5"), ("res@x", "a number like res@0.5"), ("res@-1", ">= 0")):
        with pytest.raises(ValueError, match=words):
            split_step_size(bad)
    assert get_block("res").f_calls == 1


def test_compare_plans_a_small_step_res_as_its_own_run_and_keeps_the_hash_of_res(tmp_path):
    from sspnet.experiments.compare.config import CompareConfig
    from sspnet.experiments.compare.plan.runs import make_context, plan_runs

    ctx = make_context(CompareConfig(models=["res", "res@0.5"], seeds=1, out=tmp_path))
    res, small = plan_runs(ctx)
    assert res.run_dir.name == "res-s0-ed352bd3"  # the default preset's res run of every earlier version
    assert small.run_dir.name.startswith("res-h0.5-s0-") and small.train_hash != res.train_hash
    assert small.train_config.model == "res" and small.train_config.step_size == 0.5
    assert res.train_config.step_size == 1.0
    with pytest.raises(ValueError, match="res@0.5"):
        make_context(CompareConfig(models=["res@zero"], seeds=1, out=tmp_path))


def test_train_refuses_a_negative_step_size_in_one_line_and_writes_nothing(tmp_path, capsys):
    from one_line_errors import one_error_line

    from sspnet.cli import main

    assert main(["train", "--step-size", "-1", "--epochs", "1", "--out", str(tmp_path / "run")]) == 2
    one_error_line(capsys, "--step-size", ">= 0")
    assert not (tmp_path / "run").exists()
