"""L2 Lipschitz bounds: conv norms against exact matrices, closed forms of the Shu-Osher bound, bound >= measured
growth for every registered model, forward-Euler / SSP certificates, certified accuracy, the growth CLI."""

from __future__ import annotations

import math

import pytest
import torch
from torch import nn

import sspnet
from sspnet.attacks import random_point
from sspnet.eval.growth import GrowthResult
from sspnet.eval.growth_trace import sample_ratios, trace_features
from sspnet.eval.lipschitz import certified_accuracy, lipschitz_profile, shu_osher_bound
from sspnet.eval.lipschitz_cert import fe_step_limit, ssp_certificate
from sspnet.eval.lipschitz_ops import GN_REASON, conv_norm_bound, conv_norm_power, norm_factor
from sspnet.nn.blocks import RKBlock, rk_step
from sspnet.nn.inference import inference_copy
from sspnet.nn.registry import list_models
from sspnet.nn.schemes import SCHEME_PRESETS

pytestmark = pytest.mark.usefixtures("one_thread")
REL = 1e-6  # float32 forward passes against float64 bounds


def gen(seed: int) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


def exact_norm(conv: nn.Conv2d, shape: tuple[int, int, int]) -> float:
    """The spectral norm of the conv (no bias) as an explicit matrix, column by column."""
    n = math.prod(shape)
    basis = torch.eye(n, dtype=torch.float64).view(n, *shape)
    cols = nn.functional.conv2d(basis, conv.weight.detach().double(), stride=conv.stride, padding=conv.padding)
    return float(torch.linalg.matrix_norm(cols.reshape(n, -1).T, ord=2))


@pytest.mark.parametrize(
    "c_in, c_out, k, stride, pad, hw",
    [(3, 4, 3, 1, 1, (6, 6)), (2, 3, 4, 2, 1, (7, 7)), (1, 5, 3, 1, 0, (8, 8)), (2, 2, 3, 2, 1, (5, 8))],
)
def test_conv_bound_is_above_the_exact_norm_and_power_iteration_reaches_it(c_in, c_out, k, stride, pad, hw):
    torch.manual_seed(c_in * 10 + k)
    conv = nn.Conv2d(c_in, c_out, k, stride, pad)
    exact = exact_norm(conv, (c_in, *hw))
    power = conv_norm_power(conv, (c_in, *hw), iters=2000)
    bound = conv_norm_bound(conv, hw)
    assert power == pytest.approx(exact, rel=1e-6)
    assert exact <= bound * (1 + 1e-12)
    assert bound < 1.25 * exact  # tight-ish even on these small maps


@pytest.mark.parametrize(
    "kernel, n",
    [
        ([[0, 0, 0], [1, 0.1, -1], [0, 0, 0]], 2),  # left and right tap cancel on a wrapped 2-grid (norm 0.1 there)
        ([[-1.4, 1.6, -0.7], [1.2, -0.7, 0.6], [-0.8, 0.7, -0.4]], 3),  # 3-torus norm ~0.75 of the padded conv's
    ],
)
def test_a_torus_too_small_for_the_padding_would_undercut_the_norm(kernel, n):
    """The torus must hold the padded map (m >= n + p): on the n-torus the taps that reach the padding wrap onto
    real pixels, and these kernels' norm there is below the zero-padded conv's."""
    conv = nn.Conv2d(1, 1, 3, padding=1, bias=False)
    with torch.no_grad():
        conv.weight.copy_(torch.tensor(kernel).view(1, 1, 3, 3))
    exact = exact_norm(conv, (1, n, n))
    folded = torch.zeros(n, n, dtype=torch.float64)  # the kernel's taps at offsets (a - 1, b - 1) mod n
    for a in range(3):
        for b in range(3):
            folded[(a - 1) % n, (b - 1) % n] += kernel[a][b]
    wrapped = torch.fft.fft2(folded).abs().max()  # the n-torus circular conv's norm (one channel)
    assert float(wrapped) < 0.9 * exact <= 0.9 * conv_norm_bound(conv, n) * (1 + 1e-12)


def test_conv_bound_is_close_to_power_iteration_on_a_random_3x3_conv():
    torch.manual_seed(0)
    for stride in (1, 2):
        conv = nn.Conv2d(8, 8, 3, stride, 1)
        power, bound = conv_norm_power(conv, (8, 16, 16), iters=500), conv_norm_bound(conv, 16)
        assert power <= bound * (1 + 1e-12) and bound < 1.03 * power, (stride, power, bound)


@pytest.mark.parametrize("stride", [1, 2])
def test_1x1_conv_bound_equals_the_matrix_norm(stride):
    torch.manual_seed(1)
    conv = nn.Conv2d(5, 7, 1, stride=stride)
    exact = float(torch.linalg.matrix_norm(conv.weight.detach()[:, :, 0, 0].double(), ord=2))
    assert conv_norm_bound(conv, 9) == pytest.approx(exact, rel=1e-12)
    assert conv_norm_power(conv, (5, 9, 9)) == pytest.approx(exact, rel=1e-10)


def test_scaled_identity_tap_has_norm_exactly_the_scale():
    conv = nn.Conv2d(4, 4, 3, padding=1, bias=False)
    with torch.no_grad():
        conv.weight.zero_()
        conv.weight[:, :, 1, 1] = -2.5 * torch.eye(4)
    assert conv_norm_bound(conv, 7) == pytest.approx(2.5, rel=1e-14)
    assert conv_norm_power(conv, (4, 7, 7), iters=5) == pytest.approx(2.5, rel=1e-14)


def test_batchnorm_folding_equals_the_bound_of_the_scaled_kernel():
    torch.manual_seed(2)
    conv = nn.Conv2d(3, 4, 3, padding=1)
    bn1, bn2 = nn.BatchNorm2d(3).eval(), nn.BatchNorm2d(4).eval()
    for bn in (bn1, bn2):
        bn.running_var.uniform_(0.2, 3.0)
        bn.weight.data.uniform_(-2, 2)
    d1, d2 = norm_factor(bn1).scale, norm_factor(bn2).scale
    assert torch.allclose(d1, (bn1.weight.detach() / torch.sqrt(bn1.running_var + bn1.eps)).double())
    scaled = nn.Conv2d(3, 4, 3, padding=1)
    scaled.weight.data = (conv.weight.double() * d1.view(1, -1, 1, 1) * d2.view(-1, 1, 1, 1)).float()
    assert conv_norm_bound(conv, 6, in_scale=d1, out_scale=d2) == pytest.approx(conv_norm_bound(scaled, 6), rel=1e-6)
    gn = nn.GroupNorm(2, 4)
    gn.weight.data = torch.tensor([0.5, -3.0, 1.0, 2.0])
    assert norm_factor(gn).lip == pytest.approx(3.0 / math.sqrt(gn.eps)) and norm_factor(gn).reason == GN_REASON


def test_schemes_have_nonnegative_coefficients():
    """The linear closed form below holds for schemes with alpha, beta >= 0: every preset (rk4 included)."""
    for name, s in SCHEME_PRESETS.items():
        assert all(v >= 0 for rows in (s.alpha, s.beta) for row in rows for v in row), name


@pytest.mark.parametrize("name", list(SCHEME_PRESETS))
def test_shu_osher_bound_is_exact_for_f_a_nonnegative_multiple_of_identity(name):
    s = SCHEME_PRESETS[name]
    x = torch.randn(3, 5, dtype=torch.float64, generator=gen(0))
    for h in (0.5, 1.0, 2.0):
        beta = [[h * b for b in row] for row in s.beta]
        for c in (0.0, 0.3, 1.7):
            y = rk_step(lambda u, c=c: c * u, x, s.alpha, beta)
            gain = float(torch.linalg.vector_norm(y) / torch.linalg.vector_norm(x))
            assert gain == pytest.approx(shu_osher_bound(s.alpha, beta, c), rel=1e-10), (h, c)


@pytest.mark.parametrize("name", ["ssp3", "rk4", "midrk2-orig"])
def test_shu_osher_bound_for_a_psd_linear_f_is_reached_on_the_top_eigenvector(name):
    s = SCHEME_PRESETS[name]
    q, _ = torch.linalg.qr(torch.randn(6, 6, dtype=torch.float64, generator=gen(1)))
    lam = torch.tensor([1.4, 0.9, 0.5, 0.2, 0.1, 0.0], dtype=torch.float64)
    a = q @ torch.diag(lam) @ q.T
    bound = shu_osher_bound(s.alpha, s.beta, 1.4)
    x = torch.randn(20, 6, dtype=torch.float64, generator=gen(2))
    gains = torch.linalg.vector_norm(rk_step(lambda u: u @ a, x, s.alpha, s.beta), dim=1) / x.norm(dim=1)
    assert float(gains.max()) <= bound * (1 + 1e-12) and float(gains.max()) < 0.999 * bound
    top = q[:, :1].T
    gain = rk_step(lambda u: u @ a, top, s.alpha, s.beta).norm() / top.norm()
    assert float(gain) == pytest.approx(bound, rel=1e-10)


def test_step_size_zero_gives_bound_one_and_res_gives_one_plus_h_lf():
    for scheme in ("ssp3", "ark"):
        prof = lipschitz_profile(sspnet.create_model(scheme, "mnist5k", blocks=2, norm="b", seed=0, step_size=0))
        assert prof.block_bounds == [1.0, 1.0] and prof.groups == [1.0]
    for h in (0.5, 2.0):
        prof = lipschitz_profile(sspnet.create_model("res", "mnist5k", blocks=2, norm="b", seed=0, step_size=h))
        assert [b.block for b in prof.blocks] == pytest.approx([1 + h * b.f for b in prof.blocks], rel=1e-14)


def randomize_bn(model: nn.Module, seed: int) -> nn.Module:
    g = gen(seed)
    for m in model.modules():
        if isinstance(m, nn.BatchNorm2d):
            m.running_mean.copy_(torch.randn(m.num_features, generator=g) * 0.3)
            m.running_var.copy_(torch.rand(m.num_features, generator=g) * 1.5 + 0.3)
    return model.eval()


def ratio(a: torch.Tensor, a2: torch.Tensor, b: torch.Tensor, b2: torch.Tensor) -> float:
    """max over samples of ||b2 - b|| / ||a2 - a||."""
    num, den = ((v2 - v).reshape(v.shape[0], -1).double().norm(dim=1) for v, v2 in ((b, b2), (a, a2)))
    return float((num / den).max())


def assert_bound_above_measured(model: nn.Module, x: torch.Tensor, x2: torch.Tensor) -> None:
    prof = lipschitz_profile(model)
    (gi, _, go), (gi2, _, go2) = trace_features(model, x), trace_features(model, x2)
    with torch.no_grad():
        z, z2, s, s2 = model(x), model(x2), model.normalize(x), model.normalize(x2)
    assert ratio(s, s2, gi[0], gi2[0]) <= prof.stem.bound * (1 + REL)
    assert ratio(go[-1], go2[-1], z, z2) <= prof.head.bound * (1 + REL)
    for j, t in enumerate(prof.transitions):
        assert ratio(go[j], go2[j], gi[j + 1], gi2[j + 1]) <= t.bound * (1 + REL), j
    r = sample_ratios(model, x, x2, ["2"])
    measured = r["blocks"]["2"].amax(0).tolist()
    assert len(measured) == len(prof.blocks)
    for k, (m, b) in enumerate(zip(measured, prof.block_bounds)):
        assert m <= b * (1 + REL), (k, m, b)
    for m, b in zip(r["groups"]["2"].amax(0).tolist(), prof.groups):
        assert m <= b * (1 + REL)
    assert ratio(x, x2, z, z2) <= prof.network * (1 + REL)


@pytest.mark.parametrize("i, name", list(enumerate(list_models())))
def test_bound_is_above_the_measured_ratio_for_every_registered_model(i, name):
    even = i % 2 == 0  # alternate the step size and the mnist norm over the models
    configs = [("cifar10", "b", 1.0 if even else 0.5), ("mnist5k", "g" if even else "b", 0.5 if even else 1.0)]
    for k, (dataset, norm, h) in enumerate(configs):
        model = randomize_bn(sspnet.create_model(name, dataset, blocks=1, norm=norm, seed=k, step_size=h), k)
        spec = model.spec
        x = torch.rand(3, spec.channels, spec.size, spec.size, generator=gen(k))
        x2 = random_point(x, 0.05, "sign", "linf", generator=gen(k + 1))
        assert_bound_above_measured(model, x, x2)


def test_bound_is_above_the_measured_ratio_after_training_and_on_gradient_directions():
    model = sspnet.create_model("ssp2", "mnist5k", blocks=1, norm="b", seed=3)
    x = torch.rand(10, 1, 28, 28, generator=gen(3))
    y = torch.arange(10) % 10
    opt = torch.optim.SGD(model.parameters(), lr=0.1)
    model.train()
    for _ in range(4):
        opt.zero_grad()
        nn.functional.cross_entropy(model(x), y).backward()
        opt.step()
    model.eval()
    xg = x[:4].clone().requires_grad_(True)
    nn.functional.cross_entropy(model(xg), y[:4]).backward()
    x2 = (x[:4] + 0.1 * xg.grad.sign()).clamp(0, 1)  # one FGSM step: the locally worst direction
    assert_bound_above_measured(model, x[:4], x2)
    prof, fused = lipschitz_profile(model), lipschitz_profile(inference_copy(model))  # BatchNorm folded
    assert fused.block_bounds == pytest.approx(prof.block_bounds, rel=1e-5) and not prof.vacuous


def test_head_bound_is_reached_by_a_constant_map_along_the_top_singular_vector():
    """Head BN -> ReLU -> pool -> linear on a map where the ReLU passes everything: the affine map L D pool, whose
    norm sigma_max(L D) / sqrt(H W) is reached by v (x) ones, v the top right singular vector of L D."""
    model = randomize_bn(sspnet.create_model("res", "mnist5k", blocks=1, norm="b", seed=0), 0).double()
    bn, lin = model.head[0], model.head[-1]
    with torch.no_grad():
        bn.bias.fill_(50.0)  # every pre-activation positive on the inputs below
        bn.weight.uniform_(0.2, 2.0, generator=gen(2))
    bound = lipschitz_profile(model).head.bound
    ld = lin.weight.detach().double() * (bn.weight.detach() / torch.sqrt(bn.running_var + bn.eps)).double()
    v = torch.linalg.svd(ld).Vh[0]
    u = torch.rand(1, 64, 6, 6, generator=gen(3), dtype=torch.float64)
    u2 = u + 0.01 * v.view(1, -1, 1, 1).expand_as(u)
    with torch.no_grad():
        assert ratio(u, u2, model.head(u), model.head(u2)) == pytest.approx(bound, rel=1e-9)
    assert bound == pytest.approx(float(torch.linalg.matrix_norm(ld, ord=2)) / 6, rel=1e-12)


def test_stem_bound_folds_each_batchnorm_into_the_conv_before_it():
    model = randomize_bn(sspnet.create_model("res", "mnist5k", blocks=1, norm="b", seed=1), 1)
    c1, bn1, _, c2, bn2, _, c3 = model.stem
    expected = conv_norm_bound(c1, 28, out_scale=norm_factor(bn1).scale)
    expected *= conv_norm_bound(c2, 26, out_scale=norm_factor(bn2).scale) * conv_norm_bound(c3, 13)
    assert lipschitz_profile(model).stem.bound == pytest.approx(expected, rel=1e-12)


def test_transition_bound_is_reached_when_its_branch_is_zero():
    """With conv2 = 0 and every pre-activation positive the transition is the linear Dd Wd D1 (1x1, stride 2):
    its bound ||Dd Wd D1|| is reached by the top right singular vector placed on the sampled (even) pixels."""
    model = randomize_bn(sspnet.create_model("res", "cifar10", blocks=1, norm="b", seed=0), 0).double()
    t = model.transitions[0]
    with torch.no_grad():
        t.f.conv2.weight.zero_()
        t.f.n1.bias.fill_(50.0)
    bound = lipschitz_profile(model).transitions[0].bound
    d1, dd = norm_factor(t.f.n1).scale, norm_factor(t.down[1]).scale
    m = dd.view(-1, 1) * t.down[0].weight.detach().double()[:, :, 0, 0] * d1.view(1, -1)
    v = torch.linalg.svd(m).Vh[0]
    u = torch.rand(1, 16, 32, 32, generator=gen(1), dtype=torch.float64)
    u2 = u.clone()
    u2[:, :, ::2, ::2] += 0.01 * v.view(1, -1, 1, 1)
    with torch.no_grad():
        assert ratio(u, u2, t(u), t(u2)) == pytest.approx(bound, rel=1e-9)
    assert bound == pytest.approx(float(torch.linalg.matrix_norm(m, ord=2)), rel=1e-12)


def test_network_bound_is_the_product_of_its_parts_and_normalize_is_one_over_min_std():
    model = sspnet.create_model("ssp2", "cifar10", blocks=2, norm="b", seed=0)
    prof = lipschitz_profile(model)
    assert prof.normalize.bound == pytest.approx(1 / min(model.spec.std), rel=1e-6)
    assert prof.groups[1] == pytest.approx(prof.blocks[2].block * prof.blocks[3].block, rel=1e-14)
    parts = [prof.normalize.bound, prof.stem.bound, *prof.groups, *(t.bound for t in prof.transitions)]
    assert prof.network == pytest.approx(math.prod(parts) * prof.head.bound, rel=1e-12)
    assert [(b.group, b.index) for b in prof.blocks] == [(0, 0), (0, 1), (1, 0), (1, 1), (2, 0), (2, 1)]


def test_groupnorm_bound_is_vacuous_and_says_so():
    cifar = sspnet.create_model("res", "cifar10", blocks=1, norm="g", seed=0)
    t = cifar.transitions[0]
    lip = [norm_factor(n).lip for n in (t.f.n1, t.f.n2, t.down[1])]
    branch = conv_norm_bound(t.f.conv2, 16) * lip[1] * conv_norm_bound(t.f.conv1, 32)
    expected = lip[0] * (branch + lip[2] * conv_norm_bound(t.down[0], 32))
    assert lipschitz_profile(cifar).transitions[0].bound == pytest.approx(expected, rel=1e-12)
    model = sspnet.create_model("res", "mnist5k", blocks=1, seed=0)  # GroupNorm by default
    prof = lipschitz_profile(model)
    assert prof.vacuous and GN_REASON in prof.reasons and prof.blocks[0].vacuous
    f = model.groups[0][0].f  # L_F = ||W2|| Lip(n2) ||W1|| Lip(n1)
    lip_f = conv_norm_bound(f.conv2, 6) * conv_norm_bound(f.conv1, 6) * norm_factor(f.n1).lip * norm_factor(f.n2).lip
    assert prof.blocks[0].f == pytest.approx(lip_f, rel=1e-12)
    assert prof.to_dict()["blocks"][0]["reason"] == GN_REASON


def test_forward_euler_step_limit_closed_form():
    u, v = torch.randn(5, 3, 4, 4, generator=gen(0)), torch.randn(5, 3, 4, 4, generator=gen(1))
    for c in (0.5, 3.0):
        t_fe = fe_step_limit(lambda t, c=c: -c * t, u.double(), v.double())
        assert torch.allclose(t_fe, torch.full((5,), 2 / c, dtype=torch.float64))
    assert torch.equal(fe_step_limit(lambda t: 2 * t, u, v), torch.zeros(5, dtype=torch.float64))
    assert torch.isinf(fe_step_limit(lambda t: torch.ones_like(t), u, v)).all()
    f = lambda t: -t + 0.3 * torch.tanh(t.flip(1))  # noqa: E731
    t_fe = fe_step_limit(f, u.double(), v.double())
    for s, sign in ((1 - 1e-6, -1), (1 + 1e-6, 1)):  # ||d + t dF|| crosses ||d|| at t_FE
        d, df = (u - v).double(), f(u.double()) - f(v.double())
        gap = (d + (s * t_fe).view(-1, 1, 1, 1) * df).flatten(1).norm(dim=1) - d.flatten(1).norm(dim=1)
        assert (torch.sign(gap) == sign).all()


class Dissipative(nn.Module):
    """F(u) = -c u + a small nonlinear mixing term: t_FE near 2 / c."""

    def __init__(self, c: float):
        super().__init__()
        self.c = c

    def forward(self, u):
        return -self.c * u + 0.05 * torch.tanh(u.roll(1, dims=1))


@pytest.mark.parametrize("name", list_models())
def test_ssp_certificate_reproduces_the_block_and_bounds_the_ratio(name):
    model = sspnet.create_model(name, "mnist5k", blocks=1, norm="b", seed=0).double().eval()
    block = model.groups[0][0]
    x = torch.randn(6, 64, 6, 6, dtype=torch.float64, generator=gen(0))
    x2 = x + 0.1 * torch.randn(x.shape, dtype=torch.float64, generator=gen(1))
    cert = ssp_certificate(block, x, x2)
    with torch.no_grad():
        assert torch.equal(cert.out, block(x)) and torch.equal(cert.out2, block(x2))
    assert (cert.rho >= cert.ratio * (1 - 1e-12)).all()
    assert (cert.ratio[cert.certified] <= 1 + 1e-9).all()
    assert torch.equal(cert.t_fe, fe_step_limit(block.f, x, x2))
    assert (cert.fe_contractive == (block.step_size <= cert.t_fe)).all()


@pytest.mark.parametrize("name, c, h, certified", [("ssp2", 1.0, 1.0, True), ("ssp2", 3.0, 1.0, False),
                                                   ("ssp3", 1.5, 1.0, True), ("rk4", 1.0, 1.0, False),
                                                   ("ssp43", 1.0, 1.8, True), ("res", 1.0, 1.9, True)])  # fmt: skip
def test_ssp_certificate_on_a_dissipative_f(name, c, h, certified):
    block = RKBlock(4, "b", SCHEME_PRESETS[name], step_size=h).double().eval()
    block.f = Dissipative(c)
    x = torch.randn(8, 4, 3, 3, dtype=torch.float64, generator=gen(4))
    x2 = x + 0.2 * torch.randn(x.shape, dtype=torch.float64, generator=gen(5))
    cert = ssp_certificate(block, x, x2)
    assert torch.allclose(cert.t_fe, fe_step_limit(block.f, x, x2), rtol=1e-12)
    assert torch.allclose(cert.t_fe, torch.full_like(cert.t_fe, 2 / c), rtol=0.1)  # the tanh term moves it a little
    assert bool(cert.certified.all()) is certified and (cert.reason is None) is (name != "rk4")
    assert (cert.ratio[cert.certified] <= 1 + 1e-9).all() and (cert.rho >= cert.ratio * (1 - 1e-12)).all()
    if certified:
        assert (cert.rho <= 1 + 1e-12).all()


def test_certified_accuracy_known_answers():
    model = sspnet.create_model("res", "mnist5k", blocks=1, norm="b", seed=0).eval()
    lin = model.head[-1]
    with torch.no_grad():
        lin.weight.zero_()
        lin.bias.copy_(torch.tensor([1.0] + [0.0] * 9))  # logits constant: class 0 by a margin of 1
    x, y = torch.rand(8, 1, 28, 28, generator=gen(0)), torch.tensor([0, 0, 0, 1, 2, 0, 3, 4])
    res = certified_accuracy(model, x, y, eps=0.3)
    assert res.bound == 0.0 and res.accuracy == res.certified == 0.5 and res.radius == pytest.approx(0.3 * 28)
    res = certified_accuracy(model, x, y, eps=0.1, norm="l2", bound=0.5)  # radius 1 / (sqrt(2) 0.5) = sqrt(2)
    assert res.certified == 0.5 and res.median_radius == pytest.approx(math.sqrt(2) / 2)  # half 0, half sqrt(2)
    assert certified_accuracy(model, x, y, eps=1.0, norm="l2", bound=0.8).certified == 0.0  # 1 < sqrt(2) 0.8
    with torch.no_grad():
        lin.weight.normal_(0, 1e-3, generator=gen(1))
    res = certified_accuracy(model, x, y, eps=1e-4)
    assert 0 < res.bound < 0.1 and res.certified == 0.5
    assert certified_accuracy(model, x, y, eps=1e9).certified == 0.0


def test_growth_cli_prints_and_writes_the_bound_beside_the_measured_ratio(tmp_path, capsys):
    from sspnet.cli import main
    from sspnet.nn.checkpoints import save_checkpoint

    run = tmp_path / "run"
    run.mkdir()
    model = randomize_bn(sspnet.create_model("ssp3", "mnist5k", blocks=2, norm="b", seed=0), 0)
    save_checkpoint(run / "model_final.pt", model)  # the default checkpoint of a run folder
    assert main(["growth", str(run), "--n", "6", "--steps", "2", "--batch-size", "3"]) == 0
    out = capsys.readouterr().out
    assert "L2 bound vs measured p=2" in out and "certified accuracy at linf eps" in out and "vacuous" not in out
    res = GrowthResult.load(run / "growth.json")
    lip = res.lipschitz
    assert set(lip) == {"profile", "certified", "certificates", "ssp_reasons"}
    bounds = [b["block"] for b in lip["profile"]["blocks"]]
    for prof in (res.adversarial, res.baseline):
        assert all(m <= b * (1 + REL) for m, b in zip(prof.blocks["2"], bounds))
        assert all(m <= b * (1 + REL) for m, b in zip(prof.groups["2"], lip["profile"]["groups"]))
    assert set(lip["certificates"]) == {"adversarial", "noise"}
    assert len(lip["certificates"]["noise"]["fe_contractive"]) == len(bounds) and lip["certified"]["n"] == 6
    old = res.to_dict()
    del old["lipschitz"]  # a growth.json written before the bound existed
    assert GrowthResult.from_dict(old).lipschitz is None
    assert main(["growth", str(run), "--n", "3", "--steps", "1", "--no-bound"]) == 0
    assert GrowthResult.load(run / "growth.json").lipschitz is None and "L2 bound" not in capsys.readouterr().out
