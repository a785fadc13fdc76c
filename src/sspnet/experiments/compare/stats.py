"""Statistics of `sspnet compare`: mean +- std per model over seeds, and paired differences to a baseline
model (same seed) with a 95% Student-t interval.

The Student-t quantile is computed here (no scipy): the two-sided t distribution function for integer
degrees of freedom has the closed forms of Abramowitz & Stegun 26.7.3-4, inverted by bisection.
"""
from __future__ import annotations

import math
from typing import Any, Sequence

# the scalar metrics of a run and their table headers (accuracies in %, growth = mean L2 ratio over groups)
METRICS = (("clean", "clean %"), ("fgsm", "FGSM %"), ("pgd", "PGD %"), ("autoattack", "AutoAttack %"),
           ("growth_adv", "PGR L2 (PGD)"), ("growth_noise", "PGR L2 (noise)"))
PROFILES = {"growth_blocks": ("adversarial", "blocks"), "growth_blocks_noise": ("baseline", "blocks"),
            "growth_groups": ("adversarial", "groups"), "growth_groups_noise": ("baseline", "groups")}


def t_two_sided_cdf(t: float, df: int) -> float:
    """P(|T| <= t) for Student's t with integer df >= 1 (Abramowitz & Stegun 26.7.3 / 26.7.4)."""
    if df < 1 or int(df) != df:
        raise ValueError(f"degrees of freedom must be an integer >= 1, got {df}")
    if t <= 0:
        return 0.0
    theta = math.atan(t / math.sqrt(df))
    s, c2 = math.sin(theta), math.cos(theta) ** 2
    if df % 2 == 1:
        if df == 1:
            return 2 * theta / math.pi
        total, term = 1.0, 1.0
        for k in range(1, (df - 3) // 2 + 1):
            term *= (2 * k) / (2 * k + 1) * c2
            total += term
        return 2 / math.pi * (theta + s * math.cos(theta) * total)
    total, term = 1.0, 1.0
    for k in range(1, (df - 2) // 2 + 1):
        term *= (2 * k - 1) / (2 * k) * c2
        total += term
    return s * total


def t_quantile(q: float, df: int) -> float:
    """The q-quantile (0.5 < q < 1) of Student's t with integer df; t_quantile(0.975, 2) = 4.303."""
    if not 0.5 < q < 1:
        raise ValueError(f"q must be in (0.5, 1), got {q}")
    target = 2 * q - 1
    lo, hi = 0.0, 1.0
    while t_two_sided_cdf(hi, df) < target:
        hi *= 2
    for _ in range(200):
        mid = (lo + hi) / 2
        if t_two_sided_cdf(mid, df) < target:
            lo = mid
        else:
            hi = mid
        if hi - lo < 1e-12 * max(1.0, hi):
            break
    return (lo + hi) / 2


def mean_std(values: Sequence[float]) -> tuple[float, float, int]:
    """(mean, sample standard deviation (ddof 1; 0 for one value), count) of the finite values."""
    v = [float(x) for x in values if x is not None and math.isfinite(float(x))]
    if not v:
        return math.nan, math.nan, 0
    m = sum(v) / len(v)
    sd = math.sqrt(sum((x - m) ** 2 for x in v) / (len(v) - 1)) if len(v) > 1 else 0.0
    return m, sd, len(v)


def paired_ci(diffs: Sequence[float], level: float = 0.95) -> tuple[float, float, float, int]:
    """(mean, low, high, n) of the mean of paired differences with a t-interval; low/high NaN when n < 2."""
    m, sd, n = mean_std(diffs)
    if n < 2:
        return m, math.nan, math.nan, n
    half = t_quantile(0.5 + level / 2, n - 1) * sd / math.sqrt(n)
    return m, m - half, m + half, n


def _growth_scalar(rec: dict[str, Any], which: str) -> float | None:
    prof = rec["growth"].get(which)
    if not prof or not prof.get("groups") or "2" not in prof["groups"]:
        return None
    vals = [v for v in prof["groups"]["2"] if v is not None]
    return sum(vals) / len(vals) if vals else None


def run_metrics(rec: dict[str, Any]) -> dict[str, float | None]:
    """The scalar metrics of one run record (accuracies in %, growth = mean over groups of the L2 PGR)."""
    e = rec["eval"]
    return {"clean": e["clean"], "fgsm": e["fgsm"], "pgd": e["pgd"], "autoattack": e.get("autoattack"),
            "growth_adv": _growth_scalar(rec, "adversarial"), "growth_noise": _growth_scalar(rec, "baseline"),
            "train_seconds": rec["train_seconds"]}


def _groups(records: list[dict[str, Any]]) -> dict[str, dict[str, list[dict[str, Any]]]]:
    """{variant: {model: [records]}} in the order of the records."""
    out: dict[str, dict[str, list[dict[str, Any]]]] = {}
    for r in records:
        out.setdefault(r["variant"], {}).setdefault(r["model"], []).append(r)
    return out


def _mean_profile(recs: list[dict[str, Any]], which: str, by: str) -> dict[str, list[float]]:
    """{p: mean over runs of the ratio per block (by='blocks') or group (by='groups')}."""
    out: dict[str, list[float]] = {}
    profs = [r["growth"].get(which) for r in recs if r["growth"].get(which)]
    if not profs:
        return out
    for p in profs[0][by]:
        cols = list(zip(*[pr[by][p] for pr in profs]))
        out[p] = [mean_std([v for v in col if v is not None])[0] for col in cols]
    return out


def _paired(recs: list[dict[str, Any]], base: dict[int, dict[str, float | None]]) -> dict[str, dict[str, Any]]:
    """Per metric: mean [t-interval] of (run - baseline run of the same seed)."""
    diffs = {}
    for key, _ in METRICS:
        d = []
        for r in recs:
            value, ref = run_metrics(r)[key], base.get(r["seed"], {}).get(key)
            if value is not None and ref is not None:
                d.append(value - ref)
        m, lo, hi, n = paired_ci(d)
        diffs[key] = {"mean": m, "low": lo, "high": hi, "n": n}
    return diffs


def _model_row(recs: list[dict[str, Any]]) -> dict[str, Any]:
    """mean/std/n of every metric, mean growth profiles and the mean (std) sweep of one model's runs."""
    mets = [run_metrics(r) for r in recs]
    row: dict[str, Any] = {"n": len(recs), "seeds": [r["seed"] for r in recs], "cost": recs[0]["cost"]}
    for key in [k for k, _ in METRICS] + ["train_seconds"]:
        m, sd, n = mean_std([mt[key] for mt in mets])
        row[key] = {"mean": m, "std": sd, "n": n}
    for name, (which, by) in PROFILES.items():
        row[name] = _mean_profile(recs, which, by)
    sweeps = [r["eval"]["sweep"] for r in recs]
    row["sweep"] = {e: mean_std([s[e] for s in sweeps if e in s])[:2] for e in sweeps[0]}
    return row


def aggregate(records: list[dict[str, Any]], baseline: str = "res") -> dict[str, Any]:
    """Per variant and model: mean/std/n of every metric, and paired differences to `baseline` by seed
    (row["vs_" + baseline])."""
    result: dict[str, Any] = {}
    for variant, models in _groups(records).items():
        base = {r["seed"]: run_metrics(r) for r in models.get(baseline, [])}
        rows = {}
        for model, recs in models.items():
            rows[model] = _model_row(recs)
            if model != baseline and base:
                rows[model]["vs_" + baseline] = _paired(recs, base)
        result[variant] = rows
    return result
