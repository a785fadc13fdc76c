"""Forward-Euler contractivity of F and the SSP certificate of a block, per pair of inputs (empirical).

For a pair (u, v) of feature maps, d = u - v and dF = F(u) - F(v) (flattened per sample, float64):
||d + t dF||^2 = ||d||^2 + 2 t <d, dF> + t^2 ||dF||^2, which is <= ||d||^2 for t >= 0 iff
t <= t_FE(u, v) = -2 <d, dF> / ||dF||^2 (0 when <d, dF> >= 0 and dF != 0; inf when dF = 0): `fe_step_limit`.

The SSP argument (`ssp_certificate`): a Shu-Osher stage u_i = sum_j alpha_ij u_j + h beta_ij F(u_j) with alpha_ij >=
0, sum_j alpha_ij = 1, beta_ij >= 0 is the convex combination sum_j alpha_ij (u_j + (h beta_ij / alpha_ij) F(u_j))
of forward-Euler sub-steps. If every sub-step with beta_ij > 0 is contractive on its stage pair, h beta_ij /
alpha_ij <= t_FE(u_j, v_j), then ||u_i - v_i|| <= ||u - v|| stage by stage, so ||y(u) - y(v)|| <= ||u - v||. A
scheme with alpha_ij = 0 where beta_ij > 0 (rk4, midrk2), a negative coefficient or rows of alpha that do not
sum to 1 gets no certificate (`ssp_obstacle`). Sharper, for any scheme: by the triangle inequality
rho_i = sum_j c_ij rho_j, rho_0 = 1, c_ij = ||alpha_ij d_j + h beta_ij dF_j|| / ||d_j|| (|alpha_ij| where beta_ij
= 0; for alpha_ij > 0 that is alpha_ij r_ij, r_ij the ratio of the forward-Euler sub-step) bounds
||y(u) - y(v)|| / ||u - v|| from above, pair by pair.

What this is and is not: the spectral bound of `sspnet.eval.lipschitz` gives ||I + h F|| <= 1 + h L_F >= 1, so
it can never certify forward-Euler contractivity; only this per-pair test can, and only on the pairs it has seen
(no statement about any other pair).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import torch
from torch import Tensor


def _flat(t: Tensor) -> Tensor:
    return t.reshape(t.shape[0], -1).double()


def _norm(t: Tensor) -> Tensor:
    return torch.linalg.vector_norm(_flat(t), dim=1)


def fe_limit(d: Tensor, df: Tensor) -> Tensor:
    """Per-sample t_FE (float64, B) of a difference d and its image difference df (both B x ...)."""
    d, df = _flat(d), _flat(df)
    inner, sq = (d * df).sum(1), (df * df).sum(1)
    limit = torch.where(inner < 0, -2.0 * inner / sq.clamp_min(1e-300), torch.zeros_like(inner))
    return torch.where(sq == 0, torch.full_like(inner, math.inf), limit)


@torch.no_grad()
def fe_step_limit(f: Callable[[Tensor], Tensor], u: Tensor, v: Tensor) -> Tensor:
    """t_FE(u, v) per sample (B, float64): the largest t >= 0 with ||(u + t F(u)) - (v + t F(v))|| <= ||u - v||."""
    return fe_limit(u - v, f(u) - f(v))


def ssp_obstacle(alpha: Sequence[Sequence[float]], beta: Sequence[Sequence[float]]) -> str | None:
    """Why the SSP argument cannot apply to coefficients (alpha, h beta) (None where it can)."""
    for i, (a_row, b_row) in enumerate(zip(alpha, beta), start=1):
        if any(a < 0 for a in a_row):
            return f"stage {i}: a negative alpha"
        if abs(sum(a_row) - 1.0) > 1e-9:
            return f"stage {i}: the alphas sum to {sum(a_row):.6g}, not 1"
        for j, (a, b) in enumerate(zip(a_row, b_row)):
            if b < 0:
                return f"stage {i}: beta_{i}{j} < 0 (a downwind step)"
            if b > 0 and a == 0:
                return f"stage {i}: alpha_{i}{j} = 0 where beta_{i}{j} > 0, no forward-Euler form"
    return None


@dataclass
class SSPCertificate:
    """Per-sample results (B) of one block on a pair of batches x, x2: ratio ||y - y2|| / ||x - x2|| (NaN where
    x == x2), t_fe at the block input, fe_contractive (h <= t_fe: the forward-Euler step of size h is
    contractive at the input), certified (the SSP argument holds on every stage pair), rho (the per-pair bound,
    >= ratio); out / out2: block(x), block(x2); reason: why the scheme gets no certificate (None where it can)."""

    ratio: Tensor
    t_fe: Tensor
    fe_contractive: Tensor
    certified: Tensor
    rho: Tensor
    out: Tensor
    out2: Tensor
    reason: str | None = None


def _run(block: Any, x: Tensor) -> tuple[Tensor, list[tuple[Tensor, Tensor]]]:
    """block(x) and its F calls (input, output) in call order, recorded by a hook on block.f."""
    calls: list[tuple[Tensor, Tensor]] = []
    handle = block.f.register_forward_hook(lambda _m, args, out: calls.append((args[0], out)))
    try:
        y = block(x)
    finally:
        handle.remove()
    return y, calls


def _check_stages(alpha, beta, x: Tensor, stages: dict[int, tuple[Tensor, Tensor]], y: Tensor) -> None:
    """ValueError unless the stages rebuilt from (alpha, beta) and the recorded F values match what the block
    computed (its F inputs and output) to float32 rounding: shu_osher() must describe forward."""
    us = [x.double()]
    for a_row, b_row in zip(alpha, beta):
        u = torch.zeros_like(us[0])
        for j, (a, b) in enumerate(zip(a_row, b_row)):
            u = u + a * us[j] + (b * stages[j][1].double() if b != 0 else 0.0)
        us.append(u)
    for j, seen in [(j, s[0]) for j, s in stages.items()] + [(len(alpha), y)]:
        err = float((us[j] - seen.double()).abs().max())
        if err > 1e-4 * (1.0 + float(seen.double().abs().max())):
            raise ValueError(f"block.shu_osher() does not describe the block: stage {j} differs by {err:.3g}")


@torch.no_grad()
def ssp_certificate(block: Any, x: Tensor, x2: Tensor) -> SSPCertificate:
    """Run an RK block (`shu_osher()`, `step_size`, `f`) on x and x2 (B x C x H x W) and test, per pair, the
    forward-Euler and SSP conditions of the module docstring. The outputs are block(x) itself (F's stages are
    recorded by a hook); the model's mode is left to the caller (eval for BatchNorm's running statistics)."""
    alpha, beta = block.shu_osher()
    h, s = float(block.step_size), len(alpha)
    cols = [j for j in range(s) if any(beta[i][j] != 0 for i in range(j, s))]
    y, calls = _run(block, x)
    y2, calls2 = _run(block, x2)
    if len(calls) != len(cols) or len(calls2) != len(cols):
        raise ValueError(f"the block called F {len(calls)} times; its shu_osher() coefficients use {len(cols)}")
    st, st2 = dict(zip(cols, calls)), dict(zip(cols, calls2))
    _check_stages(alpha, beta, x, st, y)
    n0 = _norm(x - x2)
    nan = torch.full_like(n0, math.nan)
    ratio = torch.where(n0 > 0, _norm(y - y2) / n0.clamp_min(1e-300), nan)
    t_fe = fe_limit(x - x2, st[0][1] - st2[0][1]) if 0 in st else fe_step_limit(block.f, x, x2)
    reason = ssp_obstacle(alpha, beta)
    certified = torch.full_like(n0, reason is None, dtype=torch.bool)
    rho = [torch.ones_like(n0)]
    limits = {j: fe_limit(st[j][0] - st2[j][0], st[j][1] - st2[j][1]) for j in cols}
    for a_row, b_row in zip(alpha, beta):
        r = torch.zeros_like(n0)
        for j, (a, b) in enumerate(zip(a_row, b_row)):
            if b == 0:
                r = r + abs(a) * rho[j]
                continue
            d, df = st[j][0] - st2[j][0], st[j][1] - st2[j][1]
            nd = _norm(d)
            c = torch.where(nd > 0, _norm(a * d.double() + b * df.double()) / nd.clamp_min(1e-300), 0.0)
            r = r + c * rho[j]
            if a > 0:
                certified &= b / a <= limits[j]
        rho.append(r)
    return SSPCertificate(
        ratio=ratio,
        t_fe=t_fe,
        fe_contractive=h <= t_fe,
        certified=certified,
        rho=torch.where(n0 > 0, rho[-1], nan),
        out=y,
        out2=y2,
        reason=reason,
    )


CERT_KEYS = ("fe_contractive", "ssp_certified", "rho_contractive")


@torch.no_grad()
def certificate_stats(model: Any, x: Tensor, x2: Tensor) -> tuple[dict[str, Tensor], list[str | None]]:
    """Per-sample certificates of every block (depth order) of an sspnet model (in eval mode) on image pairs
    (x, x2) in [0, 1]: ({key: B x K float64, 1 / 0, NaN where the block is no RK block or its input pair is
    equal} for the keys of CERT_KEYS, the reason of each block without an SSP certificate)."""
    h, h2 = model.stem(model.normalize(x)), model.stem(model.normalize(x2))
    cols: dict[str, list[Tensor]] = {k: [] for k in CERT_KEYS}
    reasons: list[str | None] = []
    for j, group in enumerate(model.groups):
        if j > 0:
            h, h2 = model.transitions[j - 1](h), model.transitions[j - 1](h2)
        for block in group:
            try:
                if not (hasattr(block, "shu_osher") and hasattr(block, "f")):
                    raise ValueError(f"a {type(block).__name__} block is no RK step")
                cert = ssp_certificate(block, h, h2)
            except ValueError as exc:
                nan = torch.full((x.shape[0],), math.nan, dtype=torch.float64, device=x.device)
                for k in CERT_KEYS:
                    cols[k].append(nan)
                reasons.append(str(exc))
                h, h2 = block(h), block(h2)
                continue
            valid = ~torch.isnan(cert.ratio)
            for k, v in zip(CERT_KEYS, (cert.fe_contractive, cert.certified, cert.rho <= 1.0)):
                cols[k].append(torch.where(valid, v.double(), math.nan))
            reasons.append(cert.reason)
            h, h2 = cert.out, cert.out2
    return {k: torch.stack(v, 1) for k, v in cols.items()}, reasons


def reduce_certificates(chunks: list[dict[str, Tensor]]) -> dict[str, list[float]]:
    """Fraction of the pairs (NaN entries excluded) per block for each key of CERT_KEYS, plus "pairs": the pairs
    counted per block; NaN where no pair counts."""
    out: dict[str, list[float]] = {}
    if not chunks:
        return out
    for key in CERT_KEYS:
        v = torch.cat([c[key] for c in chunks]).cpu()
        valid = ~torch.isnan(v)
        cnt = valid.sum(0)
        frac = torch.where(valid, v, 0.0).sum(0) / cnt.clamp_min(1)
        out[key] = [float(f) if c > 0 else math.nan for f, c in zip(frac, cnt)]
        out["pairs"] = [float(c) for c in cnt]
    return out


__all__ = [
    "CERT_KEYS",
    "SSPCertificate",
    "certificate_stats",
    "fe_limit",
    "fe_step_limit",
    "reduce_certificates",
    "ssp_certificate",
    "ssp_obstacle",
]
