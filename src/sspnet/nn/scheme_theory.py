"""What a scheme's coefficients imply: its classical order (Butcher's order conditions up to order 4) and its
SSP coefficient (Kraaijevanger's radius of absolute monotonicity).

Both are computed from the Butcher form (A, b) of an explicit scheme, so a scheme file cannot claim more than
its coefficients give.

SSP coefficient: the largest r such that the method has a Shu-Osher form with every alpha_ij >= r beta_ij >= 0
(Shu-Osher forms are not unique; Kraaijevanger's radius is the best over all of them). For a fixed r this is a
linear feasibility problem in (alpha, beta) (Ketcheson's formulation), solved with `scipy.optimize.linprog`;
the feasible r form an interval [0, C], found by bisection.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np

ORDER_TOL = 1e-10
MAX_CHECKED_ORDER = 4


def order_conditions(A: Sequence[Sequence[float]], b: Sequence[float]) -> dict[int, list[float]]:
    """Residuals of Butcher's order conditions, by order 1..4 (one per rooted tree; 0 where it holds)."""
    A_, b_ = np.asarray(A, dtype=float), np.asarray(b, dtype=float)
    c = A_.sum(axis=1)
    Ac = A_ @ c
    return {
        1: [b_.sum() - 1.0],
        2: [b_ @ c - 1 / 2],
        3: [b_ @ c**2 - 1 / 3, b_ @ Ac - 1 / 6],
        4: [b_ @ c**3 - 1 / 4, b_ @ (c * Ac) - 1 / 8, b_ @ (A_ @ c**2) - 1 / 12, b_ @ (A_ @ Ac) - 1 / 24],
    }


def classical_order(A: Sequence[Sequence[float]], b: Sequence[float]) -> int:
    """The largest p <= 4 such that every order condition up to p holds (0: not even consistent)."""
    residuals = order_conditions(A, b)
    p = 0
    for k in range(1, MAX_CHECKED_ORDER + 1):
        if max(abs(r) for r in residuals[k]) > ORDER_TOL:
            break
        p = k
    return p


def _shu_osher_feasible(C: np.ndarray, r: float) -> bool:
    """Is there a Shu-Osher form with alpha >= r beta >= 0 for the stage matrix C ((s+1) x s: stage i is
    x + sum_k C[i, k] F(u_k), row s the output)?

    Unknowns alpha_ij, beta_ij (i = 1..s, j < i). Equalities: sum_j alpha_ij = 1 and, for every k,
    C[i, k] = sum_j alpha_ij C[j, k] + beta_ik. Inequalities: beta >= 0, alpha - r beta >= 0.
    """
    from scipy.optimize import linprog

    m, s = C.shape
    pairs = [(i, j) for i in range(1, m) for j in range(i)]
    n = len(pairs)  # alpha variables first, then beta, same order
    A_eq, b_eq = [], []
    for i in range(1, m):
        row = np.zeros(2 * n)
        for v, (ii, _) in enumerate(pairs):
            if ii == i:
                row[v] = 1.0
        A_eq.append(row)
        b_eq.append(1.0)
        for k in range(s):
            row = np.zeros(2 * n)
            for v, (ii, j) in enumerate(pairs):
                if ii == i:
                    row[v] = C[j, k]
                    row[n + v] = 1.0 if j == k else 0.0
            A_eq.append(row)
            b_eq.append(C[i, k])
    A_ub = np.hstack([-np.eye(n), r * np.eye(n)])  # r beta - alpha <= 0
    bounds = [(0, None)] * (2 * n)
    res = linprog(
        np.zeros(2 * n),
        A_ub=A_ub,
        b_ub=np.zeros(n),
        A_eq=np.array(A_eq),
        b_eq=np.array(b_eq),
        bounds=bounds,
        method="highs",
    )
    return res.status == 0


def ssp_coefficient(A: Sequence[Sequence[float]], b: Sequence[float], tol: float = 1e-7) -> float:
    """The SSP coefficient C >= 0 of the explicit method (A, b) to within `tol` (0: not SSP; no Shu-Osher form
    with non-negative coefficients exists, or none with r > 0)."""
    A_, b_ = np.asarray(A, dtype=float), np.asarray(b, dtype=float)
    s = len(b_)
    C = np.vstack([np.zeros((1, s)), A_[1:], b_[None, :]]) if s > 1 else np.vstack([np.zeros((1, 1)), b_[None]])
    if not _shu_osher_feasible(C, 0.0):
        return 0.0
    lo, hi = 0.0, float(s) + 1.0  # an explicit s-stage method has C <= s
    if _shu_osher_feasible(C, hi):
        return math.inf  # not reachable for a consistent explicit method
    while hi - lo > tol:
        mid = 0.5 * (lo + hi)
        lo, hi = (mid, hi) if _shu_osher_feasible(C, mid) else (lo, mid)
    return lo if lo > tol else 0.0
