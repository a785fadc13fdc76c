"""The one noise sampler: `random_perturbation` (uniform / sign, linf / l2) and `random_point` (projected into the
eps-ball n [0, 1], on the 8-bit grid when quantised)."""

from __future__ import annotations

import pytest
import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from sspnet.attacks import Ball, random_perturbation, random_point

SETTINGS = settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
TOL = 1e-6


def data(seed: int, b: int, grid: bool):
    g = torch.Generator().manual_seed(seed)
    shape = (b, 1, 6, 6)
    return torch.randint(0, 256, shape, generator=g).float() / 255 if grid else torch.rand(shape, generator=g)


@SETTINGS
@given(
    seed=st.integers(0, 10_000),
    b=st.integers(1, 4),
    eps=st.floats(0, 1),
    kind=st.sampled_from(["uniform", "sign"]),
    norm=st.sampled_from(["linf", "l2"]),
    quantize=st.booleans(),
    grid=st.booleans(),
)
def test_noise_sampler_bounds_and_sign_magnitude(seed, b, eps, kind, norm, quantize, grid):
    x = data(seed, b, grid)
    if norm == "l2":
        eps *= 3
    d = random_perturbation(x, eps, kind, norm, torch.Generator().manual_seed(seed))
    assert d.shape == x.shape and d.dtype == x.dtype
    flat = d.flatten(1)
    if norm == "linf":
        assert flat.abs().max() <= eps + TOL
        if kind == "sign":
            assert torch.equal(flat.abs(), torch.full_like(flat, eps))
    else:
        assert flat.norm(dim=1).max() <= eps * (1 + 1e-5) + TOL
        if kind == "sign":
            assert torch.allclose(flat.norm(dim=1), torch.full((b,), eps), rtol=1e-5, atol=1e-7)
            assert torch.allclose(flat.abs(), torch.full_like(flat, eps / flat.shape[1] ** 0.5))
    xp = random_point(x, eps, kind, norm, torch.Generator().manual_seed(seed), quantize=quantize)
    assert xp.min() >= 0 and xp.max() <= 1
    dp = (xp - x).flatten(1)
    assert (dp.abs().max() if norm == "linf" else dp.norm(dim=1).max()) <= eps * (1 + 1e-5) + TOL
    if quantize and grid:
        assert torch.allclose(xp * 255, (xp * 255).round(), atol=1e-3)


def test_noise_sampler_is_seeded_and_uniform_spreads():
    x = torch.full((2, 1, 30, 30), 0.5)
    a = random_perturbation(x, 0.1, "uniform", "linf", torch.Generator().manual_seed(1))
    assert torch.equal(a, random_perturbation(x, 0.1, "uniform", "linf", torch.Generator().manual_seed(1)))
    assert a.abs().max() > 0.09 and a.abs().min() < 0.01 and abs(float(a.mean())) < 0.01
    s = random_perturbation(x, 0.1, "sign", "linf", torch.Generator().manual_seed(1))
    assert 0.4 < float((s > 0).float().mean()) < 0.6
    same = Ball(x, 0.1, "linf", False).random_point(torch.Generator().manual_seed(1), "sign")
    assert torch.equal(same, x + s)
    with pytest.raises(ValueError, match="valid: uniform, sign"):
        random_perturbation(x, 0.1, "gauss")
