"""Attacks: eps-ball and [0, 1] invariants, FGSM == 1-step PGD, mode/grad hygiene, batch independence."""

from __future__ import annotations

import sys

import pytest
import torch
import torch.nn.functional as F
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from torch import nn

from sspnet.attacks import ATTACKS, FGSM, PGD, Attack, Ball, FastFGSM, NoiseBall, ball_copies, make_attack
from sspnet.attacks import autoattack as aa_mod

torch.set_num_threads(1)
SETTINGS = settings(max_examples=20, deadline=None, suppress_health_check=[HealthCheck.too_slow])
TOL = 1e-6


def small_model(
    seed: int = 0, channels: int = 1, size: int = 6, classes: int = 4, bn: bool = False, dtype=torch.float32
) -> nn.Module:
    """A tiny conv net on [0, 1] input with its own normalisation (x - 0.5) / 0.25."""
    g = torch.Generator().manual_seed(seed)

    class Net(nn.Module):
        def __init__(self):
            super().__init__()
            layers = [nn.Conv2d(channels, 3, 3, padding=1)]
            if bn:
                layers.append(nn.BatchNorm2d(3))
            layers += [nn.ReLU(), nn.Flatten(), nn.Linear(3 * size * size, classes)]
            self.body = nn.Sequential(*layers)

        def forward(self, x):
            return self.body((x - 0.5) / 0.25)

    net = Net()
    with torch.no_grad():
        for p in net.parameters():
            p.copy_(torch.randn(p.shape, generator=g) * 0.7)
    return net.to(dtype)


def data(seed: int, b: int, channels: int = 1, size: int = 6, classes: int = 4, grid: bool = True, dtype=torch.float32):
    g = torch.Generator().manual_seed(seed)
    x = (
        torch.randint(0, 256, (b, channels, size, size), generator=g).to(dtype) / 255
        if grid
        else torch.rand(b, channels, size, size, generator=g, dtype=dtype)
    )
    return x, torch.randint(0, classes, (b,), generator=g)


def assert_feasible(x_adv, x, eps, norm):
    assert x_adv.shape == x.shape
    assert torch.isfinite(x_adv).all()
    assert x_adv.min() >= 0 and x_adv.max() <= 1
    d = (x_adv - x).flatten(1)
    if norm == "linf":
        assert d.abs().max() <= eps + TOL
    else:
        assert d.norm(dim=1).max() <= eps * (1 + 1e-5) + TOL


def on_grid(x):
    return torch.allclose(x * 255, (x * 255).round(), atol=1e-3)


@SETTINGS
@given(
    seed=st.integers(0, 10_000),
    b=st.integers(1, 5),
    size=st.integers(3, 6),
    channels=st.sampled_from([1, 3]),
    eps=st.floats(0, 1),
    norm=st.sampled_from(["linf", "l2"]),
    quantize=st.booleans(),
    random_start=st.booleans(),
    grid=st.booleans(),
    steps=st.integers(0, 4),
    bn=st.booleans(),
)
def test_pgd_stays_in_ball_and_pixel_range(seed, b, size, channels, eps, norm, quantize, random_start, grid, steps, bn):
    if norm == "l2":
        eps *= 3
    model = small_model(seed, channels, size, bn=bn)
    x, y = data(seed, b, channels, size, grid=grid)
    gen = torch.Generator().manual_seed(seed)
    attack = PGD(
        model,
        eps,
        alpha=max(eps / 3, 1e-3),
        steps=steps,
        norm=norm,
        random_start=random_start,
        restarts=2 if seed % 3 == 0 else 1,
        quantize=quantize,
        generator=gen,
    )
    x_adv = attack(x, y)
    assert_feasible(x_adv, x, eps, norm)
    if quantize and grid:
        assert on_grid(x_adv)


@SETTINGS
@given(
    seed=st.integers(0, 10_000),
    b=st.integers(1, 4),
    eps=st.floats(0, 1),
    norm=st.sampled_from(["linf", "l2"]),
    quantize=st.booleans(),
    grid=st.booleans(),
    copies=st.integers(1, 4),
)
def test_fgsm_ball_fastfgsm_stay_in_ball(seed, b, eps, norm, quantize, grid, copies):
    model = small_model(seed)
    x, y = data(seed, b, grid=grid)
    gen = torch.Generator().manual_seed(seed)
    for attack in (
        FGSM(model, eps, norm=norm, quantize=quantize),
        NoiseBall(model, eps, copies, norm=norm, quantize=quantize, generator=gen),
        FastFGSM(model, eps, norm=norm, quantize=quantize, generator=gen),
    ):
        x_adv = attack(x, y)
        assert_feasible(x_adv, x, eps, norm)
        if quantize and grid:
            assert on_grid(x_adv)


@SETTINGS
@given(seed=st.integers(0, 10_000), eps=st.floats(0, 0.01), norm=st.sampled_from(["linf", "l2"]))
def test_quantize_off_grid_input_with_tiny_eps_stays_in_ball(seed, eps, norm):
    """No 8-bit level may lie within eps of an off-grid pixel: the attack must still not leave the ball."""
    model = small_model(seed)
    x, y = data(seed, 3, grid=False)
    x_adv = PGD(model, eps, alpha=eps / 2 + 1e-4, steps=3, norm=norm, quantize=True)(x, y)
    assert_feasible(x_adv, x, eps, norm)


def test_linf_quantize_rounds_to_nearest_level_inside_ball():
    x = torch.tensor([[10.0, 0.0, 255.0, 100.0]]) / 255
    ball = Ball(x, 8 / 255, "linf", quantize=True)
    z = torch.tensor([[13.4, -3.0, 250.6, 120.0]]) / 255
    out = ball.project_(z.clone())
    assert torch.allclose(out * 255, torch.tensor([[13.0, 0.0, 251.0, 108.0]]), atol=1e-4)


def test_l2_projection_matches_per_sample_loop():
    g = torch.Generator().manual_seed(1)
    x = torch.rand(6, 2, 3, 3, generator=g) * 0.6 + 0.2
    z = x + torch.randn(6, 2, 3, 3, generator=g) * torch.tensor([0.01, 0.1, 1, 0.05, 2, 0.0]).view(-1, 1, 1, 1)
    eps = 0.3
    out = Ball(x, eps, "l2", quantize=False).project_(z.clone())
    for i in range(6):
        d = z[i] - x[i]
        n = d.norm()
        ref = (x[i] + (d * eps / n if n > eps else d)).clamp(0, 1)
        assert torch.allclose(out[i], ref, atol=1e-6)


@SETTINGS
@given(seed=st.integers(0, 10_000), b=st.integers(1, 6), norm=st.sampled_from(["linf", "l2"]), quantize=st.booleans())
def test_pgd_at_eps_zero_keeps_clean_accuracy(seed, b, norm, quantize):
    model = small_model(seed)
    x, y = data(seed, b, grid=True)
    x_adv = PGD(model, 0.0, alpha=0.1, steps=3, norm=norm, quantize=quantize)(x, y)
    assert torch.equal(x_adv, x)
    with torch.no_grad():
        assert torch.equal(model(x_adv).argmax(1), model(x).argmax(1))


@SETTINGS
@given(
    seed=st.integers(0, 10_000),
    b=st.integers(1, 6),
    eps=st.floats(0, 1),
    quantize=st.booleans(),
    norm=st.sampled_from(["linf", "l2"]),
    grid=st.booleans(),
)
def test_one_step_pgd_with_alpha_eps_equals_fgsm(seed, b, eps, quantize, norm, grid):
    model = small_model(seed)
    x, y = data(seed, b, grid=grid)
    fgsm = FGSM(model, eps, norm=norm, quantize=quantize)(x, y)
    pgd = PGD(model, eps, alpha=max(eps, 1e-12), steps=1, norm=norm, quantize=quantize)(x, y)
    if eps >= 1e-12:  # below, PGD's alpha (1e-12) is not FGSM's (eps)
        assert torch.equal(fgsm, pgd)
    # closed form for linf without quantisation
    if norm == "linf" and not quantize:
        xr = x.clone().requires_grad_(True)
        (g,) = torch.autograd.grad(F.cross_entropy(model(xr), y, reduction="sum"), xr)
        assert torch.allclose(fgsm, (x + eps * g.sign()).clamp(0, 1), atol=1e-7)


def _set_known_grads(model):
    known = {}
    for i, (name, p) in enumerate(model.named_parameters()):
        if i % 2 == 0:
            p.grad = torch.full_like(p, 0.5 + i)
            known[name] = p.grad.clone()
        else:
            p.grad = None
            known[name] = None
    return known


@pytest.mark.parametrize(
    "make",
    [
        lambda m: FGSM(m, 0.1),
        lambda m: PGD(m, 0.1, 0.03, 3, restarts=2),
        lambda m: PGD(m, 0.5, 0.2, 2, norm="l2"),
        lambda m: NoiseBall(m, 0.1, 3),
        lambda m: FastFGSM(m, 0.1),
    ],
)
def test_param_grads_untouched_mode_and_bn_stats_restored(make):
    model = small_model(3, bn=True)
    x, y = data(3, 5)
    model.train()
    model.body[1].eval()  # a mixed-mode model: each module's own flag must come back
    with torch.no_grad():
        model.body[1].running_mean.fill_(0.25)
    known = _set_known_grads(model)
    stats = {k: v.clone() for k, v in model.state_dict().items()}
    seen = []
    hook = model.body[0].register_forward_hook(lambda m, i, o: seen.append(m.training))
    x_adv = make(model)(x, y)
    hook.remove()
    assert seen and not any(seen)  # crafted in eval mode
    assert model.training and model.body[0].training and not model.body[1].training
    for name, p in model.named_parameters():
        assert (p.grad is None) if known[name] is None else torch.equal(p.grad, known[name])
    for k, v in model.state_dict().items():
        assert torch.equal(v, stats[k]), k
    assert not x.requires_grad and not x_adv.requires_grad


def test_mode_keep_crafts_in_training_mode():
    model = small_model(4, bn=True).train()
    x, y = data(4, 8)
    before = model.body[1].running_mean.clone()
    seen = []
    model.body[0].register_forward_hook(lambda m, i, o: seen.append(m.training))
    PGD(model, 0.1, 0.05, 2, mode="keep")(x, y)
    assert seen and all(seen)
    assert model.training
    assert not torch.equal(model.body[1].running_mean, before)  # train-mode BN moves, as in the original


def test_mode_restored_on_exception():
    class Boom(nn.Module):
        def forward(self, x):
            raise RuntimeError("boom")

    model = nn.Sequential(Boom()).train()
    with pytest.raises(RuntimeError, match="boom"):
        PGD(model, 0.1, 0.05, 2)(torch.rand(2, 1, 3, 3), torch.zeros(2, dtype=torch.long))
    assert model.training and model[0].training


def test_works_inside_no_grad_and_accepts_uint8():
    model = small_model(5)
    x, y = data(5, 4)
    with torch.no_grad():
        a = PGD(model, 0.1, 0.05, 2)(x, y)
    b = PGD(model, 0.1, 0.05, 2)((x * 255).round().to(torch.uint8), y)
    assert torch.equal(a, b)


@SETTINGS
@given(
    seed=st.integers(0, 10_000),
    b=st.integers(2, 8),
    split=st.integers(1, 7),
    norm=st.sampled_from(["linf", "l2"]),
    quantize=st.booleans(),
)
def test_batch_size_independence(seed, b, split, norm, quantize):
    split = min(split, b - 1)
    model = small_model(seed, dtype=torch.float64)
    x, y = data(seed, b, dtype=torch.float64)
    eps = 0.1 if norm == "linf" else 0.5
    attack = PGD(model, eps, eps / 4, 4, norm=norm, quantize=quantize)
    whole = attack(x, y)
    parts = torch.cat([attack(x[:split], y[:split]), attack(x[split:], y[split:])])
    assert torch.allclose(whole, parts, atol=1e-9)


@SETTINGS
@given(seed=st.integers(0, 10_000), norm=st.sampled_from(["linf", "l2"]))
def test_restarts_and_copies_keep_per_sample_worst_case(seed, norm):
    model = small_model(seed)
    x, y = data(seed, 8)
    eps = 0.05 if norm == "linf" else 0.2

    def loss_wrong(xa):
        with torch.no_grad():
            out = model(xa)
        return F.cross_entropy(out, y, reduction="none"), out.argmax(1) != y

    pairs = [
        (
            PGD(model, eps, eps / 4, 3, norm=norm),
            PGD(model, eps, eps / 4, 3, norm=norm, restarts=4, generator=torch.Generator().manual_seed(seed)),
        ),
        (
            NoiseBall(model, eps, 1, norm=norm, generator=torch.Generator().manual_seed(seed)),
            NoiseBall(model, eps, 6, norm=norm, generator=torch.Generator().manual_seed(seed)),
        ),
    ]
    for single, multi in pairs:
        l1, w1 = loss_wrong(single(x, y))
        lm, wm = loss_wrong(multi(x, y))
        assert (wm | ~w1).all()  # never loses a misclassification
        same = wm == w1
        assert (lm[same] >= l1[same] - 1e-5).all()


def test_worst_case_order_masks_and_caller_tensors_untouched():
    from sspnet.attacks.base import WorstCase

    first_x = torch.zeros(4, 2)
    first_wrong = torch.tensor([False, True, False, True])
    first_loss = torch.tensor([1.0, 1.0, 3.0, 1.0])
    worst = WorstCase()
    assert worst.update(first_x, first_loss, first_wrong).all()
    cand = torch.ones(4, 2)
    # sample 0: both correct, higher loss wins; 1: first misclassified, kept; 2: candidate misclassified wins;
    # 3: both misclassified, lower loss loses
    better = worst.update(cand, torch.tensor([2.0, 9.0, 0.5, 0.5]), torch.tensor([False, False, True, True]))
    assert better.tolist() == [True, False, True, False]
    assert worst.x[:, 0].tolist() == [1.0, 0.0, 1.0, 0.0]
    assert worst.wrong.tolist() == [False, True, True, True] and worst.loss.tolist() == [2.0, 1.0, 0.5, 1.0]
    assert not first_x.any() and first_loss.tolist() == [1.0, 1.0, 3.0, 1.0]  # the first candidate was copied
    assert worst.best is worst.x
    with pytest.raises(RuntimeError, match="before any candidate"):
        _ = WorstCase().best


def test_threat_model_without_eps_is_named_whether_or_not_alpha_is_set():
    from sspnet.attacks import ThreatModel

    model = small_model()
    for tm in (ThreatModel(eps=None), ThreatModel(eps=None, alpha=0.01)):
        with pytest.raises(ValueError, match="the threat model has no eps yet"):
            tm.attack("pgd", model)
        assert tm.attack("pgd", model, eps=0.1).eps == 0.1


def test_noise_ball_closed_form_and_copies():
    x = torch.full((3, 1, 4, 4), 0.5)
    y = torch.tensor([0, 1, 2])
    xs, ys = ball_copies(x, y, 0.1, 5, generator=torch.Generator().manual_seed(0))
    assert xs.shape == (15, 1, 4, 4) and torch.equal(ys, y.repeat(5))
    assert (xs - 0.5).abs().max() <= 0.1 + TOL and (xs - 0.5).abs().max() > 0.05
    assert torch.allclose(xs.mean(), torch.tensor(0.5), atol=0.02)


@pytest.mark.parametrize("name", [*ATTACKS, "fastfgsm"])
def test_factory_builds_every_attack(name):
    if name == "autoattack":
        pytest.importorskip("pyautoattack")
    model = small_model(8)
    x, y = data(8, 3)
    attack = make_attack(
        name,
        model,
        0.1,
        steps=2,
        copies=2,
        mode="keep",
        quantize=name != "autoattack",
        generator=torch.Generator().manual_seed(0),
    )
    assert isinstance(attack, Attack) and attack.name == name and attack.mode == "keep" and attack.eps == 0.1
    assert_feasible(attack(x, y), x, 0.1, "linf")
    expected = {"fgsm": FGSM, "pgd": PGD, "ball": NoiseBall, "fastfgsm": FastFGSM}
    if name in expected:
        assert type(attack) is expected[name]


def test_grad_stats_count_zero_and_nan_gradients():
    const = nn.Sequential(nn.Flatten(), nn.Linear(9, 3))
    with torch.no_grad():
        const[1].weight.zero_()
    attack = FGSM(const, 0.1)
    attack(torch.rand(4, 1, 3, 3), torch.zeros(4, dtype=torch.long))
    assert attack.grad_stats() == {"samples": 4, "zero_grad": 4, "nan_grad": 0}
    with torch.no_grad():
        const[1].weight.fill_(float("nan"))
    attack.reset_stats()
    attack(torch.rand(2, 1, 3, 3), torch.zeros(2, dtype=torch.long))
    assert attack.grad_stats()["nan_grad"] == 2


def test_pgd_beats_clean_on_a_linear_model():
    """On a linear model the linf-optimal perturbation is eps * sign(w_y' - w_y): PGD must find it."""
    model = nn.Sequential(nn.Flatten(), nn.Linear(4, 2, bias=False))
    with torch.no_grad():
        model[1].weight.copy_(torch.tensor([[1.0, -1, 1, -1], [-1.0, 1, -1, 1]]))
    x = torch.full((1, 1, 2, 2), 0.5)
    y = torch.tensor([0])
    x_adv = PGD(model, 0.1, 0.02, 10)(x, y)
    assert torch.allclose(x_adv.flatten(), torch.tensor([0.4, 0.6, 0.4, 0.6]), atol=1e-6)


@pytest.mark.parametrize(
    "call, message",
    [
        (lambda m: PGD(m, -0.1, 0.1, 3), "eps must be a finite number >= 0"),
        (lambda m: PGD(m, 8, 2, 3), "beyond the pixel range"),
        (lambda m: PGD(m, 0.1, 0.0, 3), "alpha must be a finite number > 0"),
        (lambda m: PGD(m, 0.1, 0.1, -1), "steps"),
        (lambda m: PGD(m, 0.1, 0.1, 2, restarts=0), "restarts must be an integer >= 1"),
        (lambda m: PGD(m, 0.1, 0.1, 2, norm="l3"), "valid norms: linf, l2"),
        (lambda m: PGD(m, 0.1, 0.1, 2, mode="train"), "valid modes"),
        (lambda m: NoiseBall(m, 0.1, 0), "copies"),
        (lambda m: make_attack("cw", m, 0.1), "valid attacks"),
        (lambda m: FGSM(m, 0.1)(torch.rand(2, 1, 6, 6) * 2, torch.zeros(2, dtype=torch.long)), "in \\[0, 1\\]"),
        (lambda m: FGSM(m, 0.1)(torch.rand(2, 1, 6, 6), torch.zeros(3, dtype=torch.long)), "y of shape B"),
    ],
)
def test_bad_input_raises_value_error(call, message):
    with pytest.raises(ValueError, match=message):
        call(small_model(0))


def test_autoattack_missing_gives_install_hint(monkeypatch):
    monkeypatch.setitem(sys.modules, "pyautoattack", None)
    monkeypatch.setitem(sys.modules, "autoattack", None)
    for name in ("autoattack", "square"):
        with pytest.raises(ValueError, match=r"dependency of sspnet.*pip install pyautoattack"):
            make_attack(name, small_model(0), 0.1)
    assert not aa_mod.autoattack_available()


@pytest.mark.parametrize("norm, eps", [("linf", 0.3), ("l2", 1.5)])
def test_autoattack_adapter_stays_in_ball(norm, eps):
    pytest.importorskip("pyautoattack")
    model = small_model(7)
    x, y = data(7, 4)
    x_adv = make_attack("autoattack", model, eps, norm=norm)(x, y)
    assert_feasible(x_adv, x, eps, norm)
    with torch.no_grad():
        assert (model(x_adv).argmax(1) != y).sum() >= (model(x).argmax(1) != y).sum()
