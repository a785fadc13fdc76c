"""Perturbation growth ratio: closed forms on linear groups, identity groups, structure, JSON, CLI."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from torch import nn

import sspnet
from sspnet.attacks import random_point
from sspnet.eval.growth import GrowthConfig, GrowthResult, measure_growth, p_name, sample_ratios, trace_features

pytestmark = pytest.mark.usefixtures("one_thread")


def tiny(scheme: str = "res", dataset: str = "mnist5k", blocks: int = 2) -> nn.Module:
    return sspnet.create_model(scheme, dataset=dataset, blocks=blocks, seed=0).eval()


def images(n: int = 6, shape=(1, 28, 28), seed: int = 0) -> torch.Tensor:
    return torch.rand((n, *shape), generator=torch.Generator().manual_seed(seed))


def zero_residuals(model: nn.Module) -> None:
    """F = 0 in every block (last conv weight and bias zero): each block, hence each group, is the identity."""
    with torch.no_grad():
        for group in model.groups:
            for block in group:
                block.f.conv2.weight.zero_()
                block.f.conv2.bias.zero_()


class Scale(nn.Module):
    """h -> c * h + b (b a fixed tensor): a block whose growth ratio is |c| for every norm."""

    def __init__(self, c: float, channels: int = 64):
        super().__init__()
        self.c = c
        self.register_buffer("b", torch.linspace(-1, 1, channels).view(1, -1, 1, 1))

    def forward(self, h):
        return self.c * h + self.b


@pytest.mark.parametrize("scheme", ["res", "ssp2", "ssp3", "ark", "midrk2"])
def test_identity_group_has_ratio_exactly_one(scheme):
    model = tiny(scheme)
    zero_residuals(model)
    x = images()
    r = sample_ratios(model, x, random_point(x, 0.3, "sign", generator=torch.Generator().manual_seed(1)))
    for key in ("groups", "blocks"):
        for p in ("1", "2", "inf"):
            if scheme == "ssp3":  # 1/3 x + 2/3 (3/4 x + 1/4 x) = x only up to float32 rounding
                torch.testing.assert_close(r[key][p], torch.ones_like(r[key][p]), rtol=0, atol=1e-6)
            else:  # x + 0, 1/2 x + 1/2 x, ... are exact
                assert torch.equal(r[key][p], torch.ones_like(r[key][p])), (key, p)


def test_scalar_linear_blocks_match_closed_form():
    model = tiny("res", blocks=2)
    model.groups[0] = nn.Sequential(Scale(2.0), Scale(-0.5))
    model.double()
    x = images(5).double()
    res = measure_growth(
        model,
        x,
        torch.zeros(5, dtype=torch.long),
        GrowthConfig(eps=0.2, noise="uniform"),
        x_adv=random_point(x, 0.2, "sign", generator=torch.Generator().manual_seed(3)),
    )
    for prof in (res.adversarial, res.baseline):
        for p in ("1", "2", "inf"):
            assert prof.groups[p] == pytest.approx([1.0], rel=1e-12)  # |2 * -0.5|
            assert prof.blocks[p] == pytest.approx([2.0, 0.5], rel=1e-12)
            assert prof.std_blocks[p] == pytest.approx([0.0, 0.0], abs=1e-9)


def test_channel_mixing_group_matches_hand_computation():
    """G = two 1x1 convolutions with bias: ratios are ||W2 W1 d||_p / ||d||_p, computed here with numpy."""
    torch.manual_seed(0)
    model = tiny("res", blocks=2).double()
    c1, c2 = nn.Conv2d(64, 64, 1).double(), nn.Conv2d(64, 64, 1).double()
    model.groups[0] = nn.Sequential(c1, c2)
    x = images(4).double()
    xp = random_point(x, 0.3, "uniform", generator=torch.Generator().manual_seed(2))
    with torch.no_grad():
        d = (model.stem(model.normalize(xp)) - model.stem(model.normalize(x))).numpy()  # B x 64 x 6 x 6
    w1 = c1.weight.detach().numpy()[:, :, 0, 0]
    w2 = c2.weight.detach().numpy()[:, :, 0, 0]
    d1 = np.einsum("oc,bchw->bohw", w1, d)
    d2 = np.einsum("oc,bchw->bohw", w2, d1)
    r = sample_ratios(model, x, xp)
    for p, order in (("1", 1), ("2", 2), ("inf", np.inf)):

        def n(a, order=order):
            return np.linalg.norm(a.reshape(a.shape[0], -1), ord=order, axis=1)

        np.testing.assert_allclose(r["groups"][p][:, 0].numpy(), n(d2) / n(d), rtol=1e-10)
        np.testing.assert_allclose(r["blocks"][p][:, 0].numpy(), n(d1) / n(d), rtol=1e-10)
        np.testing.assert_allclose(r["blocks"][p][:, 1].numpy(), n(d2) / n(d1), rtol=1e-10)


def test_cifar_structure_groups_after_transitions():
    model = tiny("ssp2", dataset="cifar10", blocks=1)
    x = images(3, (3, 32, 32))
    g_in, b_in, g_out = trace_features(model, x)
    assert [t.shape[1] for t in g_in] == [16, 32, 64] and len(b_in) == 3
    with torch.no_grad():
        assert torch.equal(g_in[1], model.transitions[0](g_out[0]))
        assert torch.equal(model.head(g_out[-1]), model(x))
    r = sample_ratios(model, x, random_point(x, 8 / 255, "sign"))
    # one block per group: the block profile is the group profile
    for p in ("1", "2", "inf"):
        assert r["groups"][p].shape == (3, 3)
        assert torch.equal(r["groups"][p], r["blocks"][p])


def test_zero_perturbation_is_skipped_not_averaged():
    model = tiny("res")
    x = images(4)
    xp = x.clone()
    xp[:2] = random_point(x[:2], 0.1, "sign")
    res = measure_growth(model, x, torch.zeros(4, dtype=torch.long), GrowthConfig(eps=0.1, noise="none"), x_adv=xp)
    assert res.adversarial.skipped == 2 and res.adversarial.undefined == []
    expected = sample_ratios(model, x[:2], xp[:2])["groups"]["2"].mean().item()
    assert res.adversarial.groups["2"][0] == pytest.approx(expected, rel=1e-12)
    assert res.baseline is None


def test_noise_baseline_is_sign_noise_clipped():
    """The baseline keeps its semantics: every pixel moved by +-eps, then clipped to [0, 1]."""
    x = images(8)
    xs = random_point(x, 0.3, "sign", generator=torch.Generator().manual_seed(0))
    assert xs.min() >= 0 and xs.max() <= 1 and (xs - x).abs().max() <= 0.3 + 1e-6
    inside = (x > 0.3) & (x < 0.7)
    assert torch.allclose((xs - x).abs()[inside], torch.full_like(x[inside], 0.3), atol=1e-6)
    up, down = (x + 0.3).clamp(0, 1), (x - 0.3).clamp(0, 1)
    assert ((xs == up) | (xs == down)).all() and (xs == up).any() and (xs == down).any()


def sorted_split(per_class: int = 3, classes: int = 10, shape=(1, 28, 28)):
    """uint8 images with labels sorted by class: any prefix holds too few classes."""
    g = torch.Generator().manual_seed(0)
    labels = torch.arange(classes).repeat_interleave(per_class)
    return torch.randint(0, 256, (len(labels), *shape), generator=g, dtype=torch.uint8), labels


def test_growth_uses_every_class_of_a_sorted_split_and_records_it():
    model = tiny("res")
    x, y = sorted_split()
    res = measure_growth(model, x, y, GrowthConfig(eps=0.1, alpha=0.05, steps=1, n_images=10, batch_size=4))
    assert res.n == 10 and res.subset["per_class"] == [1] * 10 and res.subset["rule"] == "stratified-v1"
    assert len(res.subset["indices"]) == 10 and res.subset["seed"] == 0
    bigger = measure_growth(model, x, y, GrowthConfig(eps=0.1, steps=1, alpha=0.05, n_images=20, noise="none"))
    assert set(res.subset["indices"]) <= set(bigger.subset["indices"])  # nested


def test_given_adversarial_images_for_the_split_or_for_the_selection():
    model = tiny("res")
    x, y = sorted_split()
    xf = x.float() / 255
    x_adv = random_point(xf, 0.1, "uniform", generator=torch.Generator().manual_seed(4))
    idx = torch.tensor([2, 9, 15, 28])
    cfg = GrowthConfig(eps=0.1, noise="none")
    whole = measure_growth(model, x, y, cfg, indices=idx, x_adv=x_adv)
    picked = measure_growth(model, x, y, cfg, indices=idx, x_adv=x_adv[idx])
    assert whole.adversarial == picked.adversarial and whole.subset["rule"] == "given"
    expected = sample_ratios(model, xf[idx], x_adv[idx])["groups"]["2"].mean().item()
    assert whole.adversarial.groups["2"][0] == pytest.approx(expected, rel=1e-12)
    with pytest.raises(ValueError, match="one image per selected image"):
        measure_growth(model, x, y, cfg, indices=idx, x_adv=x_adv[:5])


def test_undefined_ratios_raise_or_say_why(capsys):
    model = tiny("res")
    x, y = sorted_split()
    with pytest.raises(ValueError, match="below one 8-bit level"):
        measure_growth(model, x, y, GrowthConfig(eps=0.5 / 255, alpha=0.5 / 255, steps=1, n_images=4))
    with pytest.raises(ValueError, match="eps must be > 0"):
        measure_growth(model, x, y, GrowthConfig(eps=0.0, n_images=4))
    res = measure_growth(model, x, y, GrowthConfig(eps=0.5 / 255, steps=1, n_images=4, quantize=False))
    assert res.adversarial.undefined == [] and not any(math.isnan(v) for v in res.adversarial.groups["2"])
    with pytest.warns(UserWarning, match="undefined"):
        same = measure_growth(model, x, y, GrowthConfig(eps=0.1, noise="none", n_images=4), x_adv=x)
    assert math.isnan(same.adversarial.groups["2"][0]) and same.adversarial.skipped == 4
    assert same.adversarial.undefined[0].startswith("adversarial group 0: the perturbation is exactly 0")
    from sspnet.cli.growth import _print

    _print(same)  # the CLI's table: no NaN, the undefined ratio marked and explained
    out = capsys.readouterr().out
    assert "nan" not in out.lower() and "undef" in out and "the perturbation is exactly 0" in out


def test_default_adversary_is_pgd20_at_dataset_eps_and_json_round_trip(tmp_path):
    model = tiny("ssp2")
    x, y = images(4), torch.arange(4)
    cfg = GrowthConfig(steps=2)
    res = measure_growth(model, x, y, cfg, label="ssp2")
    spec = sspnet.get_dataset_spec("mnist5k")
    assert res.adversary == {
        "name": "pgd",
        "eps": spec.train_eps,
        "alpha": spec.train_alpha,
        "steps": 2,
        "random_start": False,
        "quantize": True,
    }
    assert GrowthConfig().steps == 20 and GrowthConfig().random_start is False
    assert res.noise["eps"] == spec.train_eps and res.blocks_per_group == [2] and res.f_calls_per_block == [2, 2]
    assert all(v > 0 for v in res.adversarial.blocks["inf"])
    res.adversarial.groups["1"][0] = math.nan
    res.adversarial.std_blocks["2"][1] = math.nan
    path = res.save(tmp_path / "g.json")
    assert "NaN" not in path.read_text()  # strict JSON: NaN stored as null
    back = GrowthResult.load(path)
    assert math.isnan(back.adversarial.groups["1"][0]) and math.isnan(back.adversarial.std_blocks["2"][1])
    assert back.adversarial.blocks == res.adversarial.blocks and back.baseline == res.baseline
    assert back.subset == res.subset and back.subset["indices"] == [0, 1, 2, 3] and back.baseline.undefined == []
    assert back.run_dir is None and back.adversary == res.adversary


def test_bad_options_raise_value_errors():
    with pytest.raises(ValueError, match="valid: 1, 2, inf"):
        p_name("3")
    with pytest.raises(ValueError, match="valid: pgd, fgsm, none"):
        GrowthConfig(adversary="cw").validate()
    with pytest.raises(ValueError, match="pixel units"):
        GrowthConfig(eps=8).validate()
    with pytest.raises(ValueError, match="sspnet model"):
        sample_ratios(nn.Linear(2, 2), torch.zeros(1, 2), torch.ones(1, 2))


def test_growth_cli_writes_json_and_plots(tmp_path, capsys):
    from sspnet.cli import main
    from sspnet.nn.checkpoints import save_checkpoint

    runs = []
    for scheme in ("res", "ssp3"):
        d = tmp_path / scheme
        d.mkdir()
        save_checkpoint(d / "model_final.pt", tiny(scheme))  # the default checkpoint of a run folder
        runs.append(str(d))
    plot = tmp_path / "both.png"
    rc = main(["growth", *runs, "--n", "6", "--steps", "2", "--batch-size", "3", "--plot", str(plot)])
    assert rc == 0
    for d in runs:
        res = GrowthResult.load(f"{d}/growth.json")
        assert res.n == 6 and res.ps == ["1", "2", "inf"] and res.adversary["steps"] == 2
        assert res.checkpoint["file"].endswith("model_final.pt") and res.checkpoint["crit"] == "final"
        assert (tmp_path / d / "growth.png").stat().st_size > 0
    assert plot.stat().st_size > 0
    out = capsys.readouterr().out
    assert "adversarial p=2" in out and "noise" in out and "checkpoint: model_final.pt" in out
    assert main(["growth", str(tmp_path / "missing")]) == 2
    assert "no run folder or checkpoint" in capsys.readouterr().err
