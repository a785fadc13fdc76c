"""Descriptive statistics of `sspnet compare`: mean +- std per model over seeds, mean growth profiles and
sweeps, and the paired t-interval of differences (scipy.stats). The tests against the baseline are in
`comparisons` / `significance`.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

from scipy import stats

# the scalar metrics of a run and their table headers (accuracies in %, growth = mean L2 ratio over groups)
METRICS = (
    ("clean", "clean %"),
    ("fgsm", "FGSM %"),
    ("pgd", "PGD %"),
    ("autoattack", "AutoAttack %"),
    ("growth_adv", "PGR L2 (PGD)"),
    ("growth_noise", "PGR L2 (noise)"),
)
GROUP_METRIC = "growth_g"  # growth_g1, growth_g2, ...: the L2 PGR (PGD) of each block group, for >1 group


def metrics_of(records: list[dict[str, Any]]) -> list[tuple[str, str]]:
    """METRICS, and with several block groups the PGR of each group as a metric of its own (the paper's claim
    is about the last group), so it gets the paired tests and the Holm correction of every other metric."""
    n = max((len((r["growth"].get("adversarial") or {}).get("groups", {}).get("2") or []) for r in records), default=0)
    extra = [(f"{GROUP_METRIC}{j + 1}", f"PGR L2 group {j + 1} (PGD)") for j in range(n)] if n > 1 else []
    return list(METRICS) + extra


PROFILES = {
    "growth_blocks": ("adversarial", "blocks"),
    "growth_blocks_noise": ("baseline", "blocks"),
    "growth_groups": ("adversarial", "groups"),
    "growth_groups_noise": ("baseline", "groups"),
}


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
    half = float(stats.t.ppf(0.5 + level / 2, n - 1)) * sd / math.sqrt(n)
    return m, m - half, m + half, n


def _growth_scalar(rec: dict[str, Any], which: str) -> float | None:
    prof = rec["growth"].get(which)
    if not prof or not prof.get("groups") or "2" not in prof["groups"]:
        return None
    vals = [v for v in prof["groups"]["2"] if v is not None]
    return sum(vals) / len(vals) if vals else None


def run_metrics(rec: dict[str, Any]) -> dict[str, float | None]:
    """The scalar metrics of one run record (accuracies in %, growth = mean over groups of the L2 PGR; with
    several groups also growth_g1, growth_g2, ...: each group's L2 PGR of the PGD examples)."""
    e = rec["eval"]
    prof = rec["growth"].get("adversarial") or {}
    per_group = (prof.get("groups") or {}).get("2") or []
    own = {f"{GROUP_METRIC}{j + 1}": v for j, v in enumerate(per_group)} if len(per_group) > 1 else {}
    return {
        **own,
        "clean": e["clean"],
        "fgsm": e["fgsm"],
        "pgd": e["pgd"],
        "autoattack": e.get("autoattack"),
        "growth_adv": _growth_scalar(rec, "adversarial"),
        "growth_noise": _growth_scalar(rec, "baseline"),
        "train_seconds": rec["train_seconds"],
    }


def groups(records: list[dict[str, Any]]) -> dict[str, dict[str, list[dict[str, Any]]]]:
    """{variant: {model: [records]}} in the order of the records."""
    out: dict[str, dict[str, list[dict[str, Any]]]] = {}
    for r in records:
        out.setdefault(r["variant"], {}).setdefault(r["model"], []).append(r)
    return out


def _mean_profile(recs: list[dict[str, Any]], which: str, by: str, part: int = 0) -> dict[str, list[float]]:
    """{p: mean (part 0) or std (part 1) over runs of the ratio per block (by='blocks') or group (by='groups')}."""
    out: dict[str, list[float]] = {}
    profs = [r["growth"].get(which) for r in recs if r["growth"].get(which)]
    if not profs:
        return out
    for p in profs[0][by]:
        cols = list(zip(*[pr[by][p] for pr in profs]))
        out[p] = [mean_std([v for v in col if v is not None])[part] for col in cols]
    return out


def _model_row(recs: list[dict[str, Any]]) -> dict[str, Any]:
    """mean/std/n of every metric, mean growth profiles and the mean (std) sweep of one model's runs."""
    mets = [run_metrics(r) for r in recs]
    row: dict[str, Any] = {
        "n": len(recs),
        "seeds": [r["seed"] for r in recs],
        "cost": recs[0]["cost"],
        "blocks_per_group": list(recs[0]["growth"].get("blocks_per_group") or []),
    }
    for key in [k for k, _ in metrics_of(recs)] + ["train_seconds"]:
        m, sd, n = mean_std([mt.get(key) for mt in mets])
        row[key] = {"mean": m, "std": sd, "n": n}
    for name, (which, by) in PROFILES.items():
        row[name] = _mean_profile(recs, which, by)
        row[name + "_std"] = _mean_profile(recs, which, by, part=1)  # the band over seeds of the plots
    sweeps = [r["eval"]["sweep"] for r in recs]
    row["sweep"] = {e: mean_std([s[e] for s in sweeps if e in s])[:2] for e in sweeps[0]}
    return row


def aggregate(records: list[dict[str, Any]]) -> dict[str, Any]:
    """Per variant and model: mean/std/n of every metric, growth profiles and the sweep."""
    return {
        variant: {model: _model_row(recs) for model, recs in models.items()}
        for variant, models in groups(records).items()
    }
