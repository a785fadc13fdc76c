"""Explicit Runge-Kutta schemes as data.

A scheme with s stages is stored in Shu-Osher form: with u_0 = x and F the residual branch (step size 1,
F absorbs it),

    u_i = sum_{j<i} alpha[i-1][j] * u_j + beta[i-1][j] * F(u_j),   i = 1..s,   output y = u_s.

`alpha` and `beta` are lower-triangular lists of rows (row i-1 has i entries). Each u_j (j < s) is passed to F
once, so a block makes at most s F calls (exactly the number of columns of beta that are used).
A Butcher tableau (A, b) converts with `Scheme.from_butcher`. Presets live in `SCHEME_PRESETS`; users register
their own with `register_scheme` or load one from a JSON/YAML file with `load_scheme_file`.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from fractions import Fraction
from functools import cached_property
from pathlib import Path
from typing import Any

_TOL = 1e-10
# lower-triangular rows of coefficients: any nested sequence of numbers in, a tuple of tuples of floats stored
Coefficients = Sequence[Sequence[float]]


def _number(v: Any, where: str) -> float:
    """A coefficient from a float, int or a fraction string such as "1/3"."""
    if isinstance(v, bool):
        raise ValueError(f"{where}: coefficient {v!r} is not a number")
    if isinstance(v, (int, float)):
        out = float(v)
    elif isinstance(v, str):
        try:
            out = float(Fraction(v.strip()))
        except (ValueError, ZeroDivisionError) as exc:
            raise ValueError(f"{where}: coefficient {v!r} is not a number or fraction like '1/3'") from exc
    else:
        raise ValueError(f"{where}: coefficient {v!r} is not a number")
    if not math.isfinite(out):
        raise ValueError(f"{where}: coefficient {v!r} is not finite")
    return out


def _rows(m: Any, name: str) -> list[list[float]]:
    if not isinstance(m, (list, tuple)) or not m:
        raise ValueError(f"shape: {name} must be a non-empty list of rows")
    rows = []
    for i, row in enumerate(m):
        if not isinstance(row, (list, tuple)):
            raise ValueError(f"shape: {name} row {i} must be a list of numbers")
        rows.append([_number(v, f"{name}[{i}][{j}]") for j, v in enumerate(row)])
    return rows


@dataclass(frozen=True)
class Scheme:
    """An explicit RK scheme in Shu-Osher form.

    alpha, beta: s rows, row i (0-based) has i+1 entries (lower triangular, explicit); stored as tuples of floats.
    order: the classical order of accuracy (0 for a scheme that is not consistent).
    ssp_coefficient: the SSP coefficient C (None if unknown; 0 if not SSP): the scheme is SSP for steps up to
    C times the forward-Euler stable step.
    consistent=False admits schemes whose weights do not sum to 1 (only `midrk2-orig`, for old checkpoints).
    """

    name: str
    alpha: Coefficients
    beta: Coefficients
    order: int = 1
    ssp_coefficient: float | None = None
    consistent: bool = True
    description: str = ""
    butcher_A: tuple[tuple[float, ...], ...] = field(init=False, repr=False, compare=False)
    butcher_b: tuple[float, ...] = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        if not isinstance(self.name, str) or not self.name:
            raise ValueError("scheme name must be a non-empty string")
        alpha = _rows(self.alpha, "alpha")
        beta = _rows(self.beta, "beta")
        if len(alpha) != len(beta):
            raise ValueError(
                f"shape: alpha has {len(alpha)} rows but beta has {len(beta)}; both need one row per stage"
            )
        for i, (ra, rb) in enumerate(zip(alpha, beta)):
            for name, row in (("alpha", ra), ("beta", rb)):
                if len(row) > i + 1 and any(abs(v) > 0 for v in row[i + 1 :]):
                    raise ValueError(
                        f"explicitness: {name} row {i} has a nonzero entry at or above the diagonal; stage {i + 1} "
                        f"may only use u_0..u_{i} (row {i} needs exactly {i + 1} entries)"
                    )
                if len(row) != i + 1 and len(row) < i + 1:
                    raise ValueError(
                        f"shape: {name} row {i} has {len(row)} entries, expected {i + 1} (lower triangular)"
                    )
            if abs(sum(ra[: i + 1]) - 1.0) > 1e-9:
                raise ValueError(f"consistency: alpha row {i} sums to {sum(ra[: i + 1]):.6g}, must sum to 1")
        alpha = [r[: i + 1] for i, r in enumerate(alpha)]
        beta = [r[: i + 1] for i, r in enumerate(beta)]
        object.__setattr__(self, "alpha", tuple(tuple(r) for r in alpha))
        object.__setattr__(self, "beta", tuple(tuple(r) for r in beta))
        A, b = _shu_osher_to_butcher(alpha, beta)
        object.__setattr__(self, "butcher_A", tuple(tuple(r) for r in A))
        object.__setattr__(self, "butcher_b", tuple(b))
        if self.consistent and abs(sum(b) - 1.0) > 1e-9:
            raise ValueError(
                f"consistency: the weights b sum to {sum(b):.6g}, must sum to 1 "
                "(pass consistent=False only to reproduce an inconsistent legacy scheme)"
            )
        if isinstance(self.order, bool) or not isinstance(self.order, int) or self.order < 0:
            raise ValueError(f"order must be a non-negative integer, got {self.order!r}")
        self._check_declared(A, b)

    def _check_declared(self, A: list[list[float]], b: list[float]) -> None:
        """Refuse a declared order or SSP coefficient that the coefficients do not give (computed values named)."""
        from sspnet.nn.scheme_theory import MAX_CHECKED_ORDER, classical_order

        got = classical_order(A, b)
        if self.order > got and (got < MAX_CHECKED_ORDER or self.order <= MAX_CHECKED_ORDER):
            raise ValueError(
                f"order: {self.name!r} declares order {self.order} but its coefficients satisfy the "
                f"order conditions only up to order {got}; declare order {got}"
            )
        if self.ssp_coefficient is not None and _VERIFY_SSP:
            c = self.computed_ssp_coefficient
            if abs(self.ssp_coefficient - c) > 1e-6 * max(1.0, c):
                raise ValueError(
                    f"ssp_coefficient: {self.name!r} declares {self.ssp_coefficient:g} but its "
                    f"coefficients give {c:.6g}; declare {c:.6g} or leave it out"
                )

    @cached_property
    def computed_order(self) -> int:
        """The classical order implied by the coefficients (order conditions checked up to 4)."""
        from sspnet.nn.scheme_theory import classical_order

        return classical_order(self.butcher_A, self.butcher_b)

    @cached_property
    def computed_ssp_coefficient(self) -> float:
        """The SSP coefficient implied by the coefficients (radius of absolute monotonicity; 0: not SSP)."""
        from sspnet.nn.scheme_theory import ssp_coefficient

        return round(ssp_coefficient(self.butcher_A, self.butcher_b), 6)

    @property
    def stages(self) -> int:
        return len(self.alpha)

    @property
    def f_calls(self) -> int:
        """F evaluations per step: stages u_j whose F(u_j) has a nonzero weight somewhere."""
        return sum(1 for j in range(self.stages) if any(abs(self.beta[i][j]) > 0 for i in range(j, self.stages)))

    @classmethod
    def from_butcher(cls, name: str, A: Sequence[Sequence[Any]], b: Sequence[Any], **kw: Any) -> Scheme:
        """Build from a Butcher tableau: A is s x s strictly lower triangular, b has s weights."""
        A_rows = _rows(A, "A")
        b_row = _rows([b], "b")[0]
        s = len(b_row)
        if len(A_rows) != s or any(len(r) != s for r in A_rows):
            raise ValueError(f"shape: A must be {s} x {s} to match the {s} weights in b")
        for i, r in enumerate(A_rows):
            if any(abs(v) > 0 for v in r[i:]):
                raise ValueError(f"explicitness: A[{i}] has a nonzero entry on or above the diagonal (implicit scheme)")
        # Shu-Osher with alpha_{i,0} = 1: u_i = x + sum_j A[i][j] F(u_j); last row uses b.
        coeffs = [A_rows[i][:i] for i in range(1, s)] + [b_row]
        alpha = [[1.0] + [0.0] * i for i in range(s)]
        beta = [list(c) + [0.0] * (i + 1 - len(c)) for i, c in enumerate(coeffs)]
        return cls(name, alpha, beta, **kw)

    def to_dict(self) -> dict[str, Any]:
        """JSON-able description that `Scheme.from_dict` rebuilds."""
        return {
            "name": self.name,
            "alpha": [list(r) for r in self.alpha],
            "beta": [list(r) for r in self.beta],
            "order": self.order,
            "ssp_coefficient": self.ssp_coefficient,
            "consistent": self.consistent,
            "description": self.description,
        }

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> Scheme:
        if not isinstance(d, dict):
            raise ValueError("a scheme description must be a mapping with name and alpha/beta or A/b")
        known = {"name", "alpha", "beta", "A", "b", "order", "ssp_coefficient", "consistent", "description"}
        extra = set(d) - known
        if extra:
            raise ValueError(f"unknown scheme fields {sorted(extra)}; allowed: {sorted(known)}")
        kw = {k: d[k] for k in ("order", "ssp_coefficient", "consistent", "description") if k in d}
        if "ssp_coefficient" in kw and kw["ssp_coefficient"] is not None:
            kw["ssp_coefficient"] = _number(kw["ssp_coefficient"], "ssp_coefficient")
        name = d.get("name")
        if not name:
            raise ValueError("a scheme description needs a 'name'")
        if "alpha" in d or "beta" in d:
            if "alpha" not in d or "beta" not in d:
                raise ValueError("a Shu-Osher scheme needs both 'alpha' and 'beta'")
            return cls(name, d["alpha"], d["beta"], **kw)
        if "A" in d and "b" in d:
            return cls.from_butcher(name, d["A"], d["b"], **kw)
        raise ValueError("a scheme description needs 'alpha' and 'beta' (Shu-Osher) or 'A' and 'b' (Butcher)")

    def shu_osher_ssp_bound(self) -> float:
        """min alpha_ij / beta_ij over this representation (a lower bound of the SSP coefficient; 0 if any
        coefficient is negative or a beta has no matching alpha)."""
        c = math.inf
        for ra, rb in zip(self.alpha, self.beta):
            for a, bb in zip(ra, rb):
                if a < -_TOL or bb < -_TOL:
                    return 0.0
                if bb > _TOL:
                    c = min(c, a / bb)
        return c


def _shu_osher_to_butcher(alpha: list[list[float]], beta: list[list[float]]) -> tuple[list[list[float]], list[float]]:
    """Write every stage as x + sum_k C[i][k] F(u_k); A = rows 0..s-1 of C, b = row s."""
    s = len(alpha)
    C = [[0.0] * s]  # u_0 = x
    for i in range(s):
        row = [0.0] * s
        for j in range(i + 1):
            for k in range(s):
                row[k] += alpha[i][j] * C[j][k]
            row[j] += beta[i][j]
        C.append(row)
    return C[:s], C[s]


SCHEME_PRESETS: dict[str, Scheme] = {}
# The presets' declared SSP coefficients are checked by the test suite instead of at every `import sspnet`
# (that check imports scipy and solves a few hundred small LPs); every other scheme is checked when built.
_VERIFY_SSP = False
RESERVED_NAMES: set[str] = set()  # block kinds registered with their own builder (`sspnet.nn.registry`)


def register_scheme(scheme: Scheme, overwrite: bool = False) -> Scheme:
    """Make `scheme` available by name to create_model, the CLI and the registry."""
    if not isinstance(scheme, Scheme):
        raise ValueError("register_scheme takes a Scheme")
    if scheme.name in SCHEME_PRESETS and not overwrite:
        raise ValueError(f"a scheme named {scheme.name!r} is already registered (pass overwrite=True)")
    if scheme.name in RESERVED_NAMES:
        raise ValueError(f"{scheme.name!r} is reserved for a registered block kind; choose another name")
    SCHEME_PRESETS[scheme.name] = scheme
    return scheme


for _s in (
    Scheme("res", [[1]], [[1]], order=1, ssp_coefficient=1.0, description="forward Euler (ResNet block)"),
    Scheme("ssp2", [[1], [0.5, 0.5]], [[1], [0, 0.5]], order=2, ssp_coefficient=1.0, description="SSPRK(2,2), Heun"),
    Scheme(
        "ssp3",
        [[1], [0.75, 0.25], [1 / 3, 0, 2 / 3]],
        [[1], [0, 0.25], [0, 0, 2 / 3]],
        order=3,
        ssp_coefficient=1.0,
        description="SSPRK(3,3), Shu-Osher",
    ),
    Scheme(
        "midrk2",
        [[1], [1, 0]],
        [[0.5], [0, 1]],
        order=2,
        ssp_coefficient=0.0,
        description="explicit midpoint rule y = x + F(x + F(x)/2)",
    ),
    Scheme(
        "midrk2-orig",
        [[1], [0, 1]],
        [[0.5], [0, 1]],
        order=0,
        ssp_coefficient=None,
        consistent=False,
        description="the original code's midrk2: y = u + F(u), u = x + F(x)/2 (weights sum to 3/2)",
    ),
    Scheme(
        "ssp43",
        [[1], [0, 1], [2 / 3, 0, 1 / 3], [0, 0, 0, 1]],
        [[0.5], [0, 0.5], [0, 0, 1 / 6], [0, 0, 0, 0.5]],
        order=3,
        ssp_coefficient=2.0,
        description="SSPRK(4,3), four stages, SSP coefficient 2",
    ),
):
    register_scheme(_s)
register_scheme(
    Scheme.from_butcher(
        "rk4",
        [[0, 0, 0, 0], [0.5, 0, 0, 0], [0, 0.5, 0, 0], [0, 0, 1, 0]],
        [1 / 6, 1 / 3, 1 / 3, 1 / 6],
        order=4,
        ssp_coefficient=0.0,
        description="classic RK4 (not SSP, for contrast)",
    )
)


_VERIFY_SSP = True


def list_schemes() -> list[str]:
    return list(SCHEME_PRESETS)


def load_scheme_file(path: str | Path) -> Scheme:
    """Read a scheme from a JSON or YAML file (fields: name, alpha+beta or A+b, order, ssp_coefficient)."""
    from sspnet.io.jsonio import read_mapping_file

    p = Path(path)
    data = read_mapping_file(p, what="scheme file")
    try:
        return Scheme.from_dict(data)
    except ValueError as exc:
        raise ValueError(f"{p}: {exc}") from exc


def get_scheme(scheme: str | Scheme | dict | Path) -> Scheme:
    """A Scheme from a preset name, a Scheme, a dict description or a JSON/YAML file path."""
    if isinstance(scheme, Scheme):
        return scheme
    if isinstance(scheme, dict):
        return Scheme.from_dict(scheme)
    name = str(scheme)
    if name in SCHEME_PRESETS:
        return SCHEME_PRESETS[name]
    if name.endswith((".json", ".yaml", ".yml")) or Path(name).is_file():
        return load_scheme_file(name)
    raise ValueError(f"unknown scheme {name!r}; valid schemes: {', '.join(SCHEME_PRESETS)}, or a JSON/YAML scheme file")
