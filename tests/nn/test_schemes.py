"""Schemes as data: closed forms, convergence order, SSP property, conversions and validation."""

import json
import math

import pytest
import torch

from sspnet.nn.blocks import rk_step
from sspnet.nn.models import create_model
from sspnet.nn.schemes import SCHEME_PRESETS, Scheme, get_scheme, load_scheme_file, register_scheme

D = torch.float64


def _F():
    g = torch.Generator().manual_seed(0)
    W = torch.randn(6, 6, generator=g, dtype=D) / 3
    return lambda u: torch.tanh(u @ W.T) + 0.1 * u


CLOSED_FORMS = {
    "res": lambda x, F: x + F(x),
    "ssp2": lambda x, F: 0.5 * x + 0.5 * ((x + F(x)) + F(x + F(x))),
    "ssp3": lambda x, F: (lambda u1: (lambda u2: x / 3 + 2 / 3 * (u2 + F(u2)))(0.75 * x + 0.25 * (u1 + F(u1))))(
        x + F(x)
    ),
    "midrk2": lambda x, F: x + F(x + 0.5 * F(x)),
    "midrk2-orig": lambda x, F: (lambda u: u + F(u))(x + 0.5 * F(x)),
    "ssp43": lambda x, F: (lambda u2: (lambda u3: u3 + 0.5 * F(u3))(2 / 3 * x + 1 / 3 * u2 + F(u2) / 6))(
        (lambda u1: u1 + 0.5 * F(u1))(x + 0.5 * F(x))
    ),
    "rk4": lambda x, F: (
        lambda k1: (lambda k2: (lambda k3: (lambda k4: x + (k1 + 2 * k2 + 2 * k3 + k4) / 6)(F(x + k3)))(F(x + k2 / 2)))(
            F(x + k1 / 2)
        )
    )(F(x)),
}


@pytest.mark.parametrize("name", list(CLOSED_FORMS))
def test_block_equals_closed_form(name):
    F = _F()
    x = torch.randn(4, 6, generator=torch.Generator().manual_seed(1), dtype=D)
    s = SCHEME_PRESETS[name]
    calls = []

    def counted(u):
        calls.append(1)
        return F(u)

    y = rk_step(counted, x, s.alpha, s.beta)
    torch.testing.assert_close(y, CLOSED_FORMS[name](x, F), rtol=1e-12, atol=1e-12)
    assert len(calls) == s.f_calls == s.stages  # exactly one F call per stage


def test_every_preset_has_a_closed_form_test():
    assert set(SCHEME_PRESETS) == set(CLOSED_FORMS)


def _error(scheme, n, lam=-1.0, T=1.0):
    h = T / n
    y = torch.tensor([1.0], dtype=D)
    for _ in range(n):
        y = rk_step(lambda u: h * lam * u, y, scheme.alpha, scheme.beta)
    return abs(y.item() - math.exp(lam * T))


@pytest.mark.parametrize("name", [n for n, s in SCHEME_PRESETS.items() if s.consistent])
def test_measured_order_matches_declared(name):
    s = SCHEME_PRESETS[name]
    e1, e2 = _error(s, 16), _error(s, 32)
    assert math.log2(e1 / e2) == pytest.approx(s.order, abs=0.15)


def test_inconsistent_legacy_scheme_does_not_converge():
    s = SCHEME_PRESETS["midrk2-orig"]
    assert s.order == 0 and sum(s.butcher_b) == pytest.approx(1.5)
    assert _error(s, 64) > 0.1


@pytest.mark.parametrize("name", [n for n, s in SCHEME_PRESETS.items() if s.ssp_coefficient])
def test_ssp_no_norm_growth_within_ssp_step(name):
    """F(u) = h L u with ||I + L||_inf <= 1 (forward Euler contractive at step 1): no growth for h <= C."""
    s = SCHEME_PRESETS[name]
    g = torch.Generator().manual_seed(2)
    for _ in range(20):
        P = torch.rand(8, 8, generator=g, dtype=D) ** 4
        P = P / P.sum(1, keepdim=True)  # row-stochastic, nonnegative
        L = P - torch.eye(8, dtype=D)
        x = torch.randn(8, generator=g, dtype=D)
        for h in (s.ssp_coefficient, s.ssp_coefficient / 2):
            y = rk_step(lambda u, h=h, L=L: h * (L @ u), x, s.alpha, s.beta)
            assert y.abs().max() <= x.abs().max() + 1e-12
    assert s.shu_osher_ssp_bound() == pytest.approx(s.ssp_coefficient)


def test_butcher_round_trip_and_same_step():
    for name, s in SCHEME_PRESETS.items():
        t = Scheme.from_butcher(name + "-b", s.butcher_A, s.butcher_b, order=s.order, consistent=s.consistent)
        for ra, rb in zip(t.butcher_A, s.butcher_A):
            assert ra == pytest.approx(rb)
        assert t.butcher_b == pytest.approx(s.butcher_b)
        F = _F()
        x = torch.randn(3, 6, dtype=D)
        torch.testing.assert_close(rk_step(F, x, t.alpha, t.beta), rk_step(F, x, s.alpha, s.beta))


@pytest.mark.parametrize(
    "kwargs,needle",
    [
        (dict(A=[[0, 1], [0.5, 0]], b=[0.5, 0.5]), "explicitness"),
        (dict(A=[[0.5, 0], [1, 0]], b=[0.5, 0.5]), "explicitness"),
        (dict(A=[[0, 0], [1, 0]], b=[0.5, 0.5, 0.0]), "shape"),
        (dict(A=[[0, 0], [1, 0]], b=[0.5, 0.6]), "consistency"),
        (dict(A=[[0, 0], [1, 0]], b=["1/2", "zz"]), "not a number"),
    ],
)
def test_butcher_validation(kwargs, needle):
    with pytest.raises(ValueError, match=needle):
        Scheme.from_butcher("bad", **kwargs)


@pytest.mark.parametrize(
    "alpha,beta,needle",
    [
        ([[1], [0.5, 0.4]], [[1], [0, 0.5]], "consistency"),
        ([[1, 0.5], [0.5, 0.5]], [[1], [0, 0.5]], "explicitness"),
        ([[1], [0.5, 0.5]], [[1]], "shape"),
        ([[1], [0.5]], [[1], [0, 0.5]], "shape"),
    ],
)
def test_shu_osher_validation(alpha, beta, needle):
    with pytest.raises(ValueError, match=needle):
        Scheme("bad", alpha, beta)


def test_scheme_files_json_and_yaml(tmp_path):
    d = {"name": "heun-file", "A": [[0, 0], ["1", 0]], "b": ["1/2", "1/2"], "order": 2, "ssp_coefficient": 1}
    (tmp_path / "s.json").write_text(json.dumps(d))
    (tmp_path / "s.yaml").write_text("name: ssp2-yaml\nalpha: [[1], [0.5, 0.5]]\nbeta: [[1], [0, 0.5]]\norder: 2\n")
    js, ys = load_scheme_file(tmp_path / "s.json"), get_scheme(str(tmp_path / "s.yaml"))
    F, x = _F(), torch.randn(2, 6, dtype=D)
    for s in (js, ys):
        torch.testing.assert_close(rk_step(F, x, s.alpha, s.beta), CLOSED_FORMS["ssp2"](x, F))
    (tmp_path / "bad.json").write_text(json.dumps({"name": "x", "A": [[1]], "b": [1]}))
    with pytest.raises(ValueError, match=r"bad.json: explicitness"):
        load_scheme_file(tmp_path / "bad.json")
    with pytest.raises(FileNotFoundError, match="scheme file .*missing.json not found"):
        load_scheme_file(tmp_path / "missing.json")
    (tmp_path / "broken.yaml").write_text("name: [unclosed\n")
    with pytest.raises(ValueError, match=r"^scheme file .*broken.yaml: not valid YAML \(.* at line \d+\)$"):
        load_scheme_file(tmp_path / "broken.yaml")


def test_unknown_scheme_lists_valid_names():
    with pytest.raises(ValueError, match=r"unknown scheme 'ssp9'; valid schemes: res, ssp2"):
        get_scheme("ssp9")
    with pytest.raises(ValueError, match=r"unknown model 'ssp9'; valid models: res, ssp2.*ark"):
        create_model("ssp9")


def test_register_scheme_adds_a_model_name():
    import sspnet

    s = Scheme.from_butcher("ralston2-test", [[0, 0], [2 / 3, 0]], [0.25, 0.75], order=2)
    register_scheme(s)
    try:
        assert "ralston2-test" in sspnet.list_models()
        model = sspnet.create_model("ralston2-test", dataset="mnist5k", blocks=1)
        assert model.config["scheme"] == "ralston2-test"
        with pytest.raises(ValueError, match="already registered"):
            register_scheme(s)
    finally:
        SCHEME_PRESETS.pop("ralston2-test")


# SSPRK(5,4) of Spiteri & Ruuth (2002), Butcher form as published (14 digits); its SSP coefficient is 1.508.
SSP54_A = [
    [0, 0, 0, 0, 0],
    [0.39175222700392, 0, 0, 0, 0],
    [0.21766909633821, 0.36841059262959, 0, 0, 0],
    [0.08269208670950, 0.13995850206999, 0.25189177424738, 0, 0],
    [0.06796628370320, 0.11503469844438, 0.20703489864929, 0.54497475021237, 0],
]
SSP54_b = [0.14681187618661, 0.24848290924556, 0.10425883036650, 0.27443890091960, 0.22600748319395]


def test_ssp_coefficients_and_orders_computed_from_coefficients():
    from sspnet.nn.scheme_theory import classical_order, ssp_coefficient

    assert round(ssp_coefficient(SSP54_A, SSP54_b), 3) == 1.508
    assert classical_order(SSP54_A, SSP54_b) == 4
    expected = {
        "res": (1, 1.0),
        "ssp2": (2, 1.0),
        "ssp3": (3, 1.0),
        "midrk2": (2, 0.0),
        "ssp43": (3, 2.0),
        "rk4": (4, 0.0),
        "midrk2-orig": (0, None),
    }
    for name, (order, c) in expected.items():
        s = SCHEME_PRESETS[name]
        assert s.computed_order == order == s.order, name
        if c is not None:  # every declared preset value is what its coefficients give
            assert s.computed_ssp_coefficient == pytest.approx(c, abs=1e-6) and s.ssp_coefficient == c, name


def test_false_declarations_are_refused_with_computed_values(tmp_path):
    heun = {"A": [[0, 0], [1, 0]], "b": ["1/2", "1/2"]}
    with pytest.raises(ValueError, match="declares order 3 but .* only up to order 2; declare order 2"):
        Scheme.from_dict({"name": "fake3", **heun, "order": 3})
    with pytest.raises(ValueError, match="declares 3 but its coefficients give 1; declare 1"):
        Scheme.from_dict({"name": "fake-ssp", **heun, "order": 2, "ssp_coefficient": 3})
    (tmp_path / "fake.yaml").write_text(
        "name: fake4\nA: [[0, 0], [1, 0]]\nb: [0.5, 0.5]\norder: 4\nssp_coefficient: 3\n"
    )
    with pytest.raises(ValueError, match="fake.yaml: order: 'fake4' declares order 4"):
        load_scheme_file(tmp_path / "fake.yaml")
    with pytest.raises(ValueError, match="'RK4-like' declares 0.5 but its coefficients give 0; declare 0"):
        Scheme.from_butcher(
            "RK4-like",
            [[0, 0, 0, 0], [0.5, 0, 0, 0], [0, 0.5, 0, 0], [0, 0, 1, 0]],
            [1 / 6, 1 / 3, 1 / 3, 1 / 6],
            order=4,
            ssp_coefficient=0.5,
        )
    ok = Scheme.from_butcher("ssp54", SSP54_A, SSP54_b, order=4, ssp_coefficient=1.50818)
    assert ok.computed_ssp_coefficient == pytest.approx(1.50818, abs=1e-5)
