"""Significance tests of `sspnet compare` (scipy.stats): the seed-level paired t-test, McNemar's exact test
on the same images, its combination over seeds, Holm's correction and minimum detectable differences.

Two questions, two tests:
- seed level: do the architectures differ, over the randomness of training? A paired t-test over seeds of
  (model - baseline) with the same seed; with few seeds its power is low, and its MDD bounds any claim about
  the architectures.
- image level: do these trained networks differ on this test distribution? McNemar's exact test per seed
  (discordant images: right for one network, wrong for the other; binomial with p = 1/2), combined over seeds
  by an exact sign-flip test on images: per image d = sum over seeds of (model right - baseline right); under
  H0 each image's d is symmetric about 0, and the exact distribution of sum(d) given every |d| is a
  convolution of binomials. With one seed it is McNemar's test. Pooling the discordant counts of all seeds
  into one binomial would not be valid here: every seed uses the same images, so an image discordant in
  several seeds is not several independent pairs.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np
from scipy import optimize, stats

ALPHA = 0.05
POWER = 0.8


def mcnemar(model_ok: Sequence[bool], base_ok: Sequence[bool]) -> dict[str, float]:
    """Exact McNemar test of two networks on the same images: model_only (model right, baseline wrong),
    base_only and the two-sided binomial p-value (1 when no image is discordant)."""
    a, b = np.asarray(model_ok, dtype=bool), np.asarray(base_ok, dtype=bool)
    if a.shape != b.shape:
        raise ValueError(f"McNemar needs the same images for both networks, got {a.size} and {b.size}")
    k, n = int((a & ~b).sum()), int((a ^ b).sum())
    p = stats.binomtest(k, n, 0.5).pvalue if n else 1.0
    return {"model_only": k, "base_only": n - k, "p": float(p)}


def _weight_counts(d: np.ndarray) -> list[tuple[int, int]]:
    """(k, number of images with |d| = k) for k >= 1."""
    a = np.abs(d[d != 0])
    return [(int(k), int(m)) for k, m in zip(*np.unique(a, return_counts=True))]


def _u_pmf(counts: list[tuple[int, int]], q: float) -> np.ndarray:
    """pmf of U = sum_k k * B_k, B_k ~ Binomial(m_k, q): the positive part of sum(d) when each nonzero image
    is positive with probability q (U = (T + sum|d|) / 2)."""
    pmf = np.ones(1)
    for k, m in counts:
        part = np.zeros(k * m + 1)
        part[::k] = stats.binom.pmf(np.arange(m + 1), m, q)
        pmf = np.convolve(pmf, part)
    return pmf


def signflip_test(d: Sequence[int]) -> float:
    """Exact two-sided p-value of T = sum(d) under independent sign flips of the per-image differences d
    (integers; zeros drop out). One seed (d in {-1, 0, 1}): McNemar's exact test."""
    d = np.asarray(d, dtype=np.int64)
    counts = _weight_counts(d)
    if not counts:
        return 1.0
    total = sum(k * m for k, m in counts)
    hi = (total + abs(int(d.sum()))) // 2  # T >= |t| <=> U >= hi
    return float(min(1.0, 2.0 * _u_pmf(counts, 0.5)[hi:].sum()))


def _critical_u(counts: list[tuple[int, int]], total: int, alpha: float) -> int | None:
    """Smallest u with 2 P0(U >= u) <= alpha (the upper rejection bound), None when none rejects."""
    tail = np.cumsum(_u_pmf(counts, 0.5)[::-1])[::-1]  # tail[u] = P0(U >= u)
    ok = np.nonzero(2.0 * tail <= alpha)[0]
    ok = ok[ok * 2 > total]
    return int(ok[0]) if ok.size else None


def mdd_images(d: Sequence[int], n_pairs: int, alpha: float = ALPHA, power: float = POWER) -> float:
    """Minimum detectable difference in accuracy (fraction) of `signflip_test` at `power`, given the observed
    discordance (the |d| of every image) over n_pairs = images x seeds: each discordant image favours the
    model with probability q, the difference is (2q - 1) sum|d| / n_pairs. NaN without discordant images,
    inf when even q = 1 cannot reach the power."""
    d = np.asarray(d, dtype=np.int64)
    counts = _weight_counts(d)
    if not counts:
        return math.nan
    total = sum(k * m for k, m in counts)
    u_hi = _critical_u(counts, total, alpha)
    if u_hi is None:
        return math.inf

    def reach(q: float) -> float:  # power at q (both rejection tails) minus the target
        pmf = _u_pmf(counts, q)
        return float(pmf[u_hi:].sum() + pmf[: total - u_hi + 1].sum()) - power

    if reach(1.0) < 0:
        return math.inf
    q = optimize.brentq(reach, 0.5, 1.0, xtol=1e-10)
    return (2 * q - 1) * total / n_pairs


def t_test(diffs: Sequence[float]) -> float:
    """Two-sided p-value of the paired t-test (mean of diffs = 0); NaN with fewer than 2 values or no spread."""
    v = np.asarray([x for x in diffs if x is not None and math.isfinite(x)], dtype=float)
    if v.size < 2 or float(v.std(ddof=1)) == 0.0:
        return math.nan
    return float(stats.ttest_1samp(v, 0.0).pvalue)


def mdd_t(sd: float, n: int, alpha: float = ALPHA, power: float = POWER) -> float:
    """Minimum detectable mean difference of a two-sided paired t-test with n pairs and SD sd of the
    differences at `power` (noncentral t); NaN with n < 2 or sd 0 (no spread to estimate it from)."""
    if n < 2 or not math.isfinite(sd) or sd == 0:
        return math.nan
    df = n - 1
    crit = stats.t.ppf(1 - alpha / 2, df)

    def reach(lam: float) -> float:
        lower = float(np.nan_to_num(stats.nct.cdf(-crit, df, lam)))  # scipy gives NaN for a vanishing tail
        return float(stats.nct.sf(crit, df, lam)) + lower - power

    hi = max(1.0, crit)
    while reach(hi) < 0:
        hi *= 2
    return optimize.brentq(reach, 0.0, hi, xtol=1e-10) * sd / math.sqrt(n)


def holm(pvalues: Sequence[float]) -> list[float]:
    """Holm's step-down adjusted p-values (NaN entries are not tests: they stay NaN and do not count)."""
    idx = [i for i, p in enumerate(pvalues) if p is not None and math.isfinite(p)]
    m = len(idx)
    out = [math.nan] * len(pvalues)
    running = 0.0
    for rank, i in enumerate(sorted(idx, key=lambda j: pvalues[j])):
        running = max(running, min(1.0, (m - rank) * pvalues[i]))
        out[i] = running
    return out
