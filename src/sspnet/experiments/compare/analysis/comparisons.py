"""Every model against the baseline (res; else the first model), per variant and metric: the seed-level
paired t-interval and t-test, the image-level exact tests (McNemar per seed, sign-flip over seeds) for the
accuracies, Holm's correction over all these tests, and the minimum detectable differences of both.

Units: accuracies in % points, growth as the ratio itself. MDDs at 80% power, two-sided, at alpha / m (m =
the number of tests: the threshold of Holm's first step), so a difference the size of the MDD would be found
significant after the correction with probability >= 80% whatever the other tests give.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np

from sspnet.experiments.compare.analysis.significance import (
    ALPHA,
    POWER,
    holm,
    mcnemar,
    mdd_images,
    mdd_t,
    signflip_test,
    t_test,
)
from sspnet.experiments.compare.analysis.stats import groups, mean_std, metrics_of, paired_ci, run_metrics
from sspnet.experiments.compare.work.perimage import run_correct

ACCURACIES = ("clean", "fgsm", "pgd", "autoattack")  # the metrics with per-image correctness
PREFERRED_BASELINE = "res"
METHOD = {
    "seeds": "paired t-test over seeds of (model - baseline) with the same seed; 95% t-interval",
    "images": "exact McNemar test per seed (binomial on the discordant images); combined over seeds by an "
    "exact sign-flip test on images of d = sum over seeds of (model right - baseline right), which "
    "is McNemar's test for one seed and stays valid when every seed uses the same images",
    "correction": "Holm over every test of the report (both kinds, every model, metric and variant)",
    "mdd": f"MDD: minimum detectable difference at {POWER:.0%} power, two-sided, alpha / m: seed level from the "
    "observed SD of the paired differences (noncentral t), image level from the observed discordance "
    "over images x seeds",
}


def baseline_of(models: list[str]) -> str:
    """res when it was run, else the first model."""
    return PREFERRED_BASELINE if PREFERRED_BASELINE in models else models[0]


def _image_level(pairs: list[tuple[dict, dict]], metric: str) -> tuple[dict[str, Any], np.ndarray] | None:
    """Per-seed McNemar and the sign-flip test of one accuracy; None when a run lacks the bits or the runs
    used different images."""
    d, images, per_seed = None, None, []
    for rec, base in pairs:
        a, b = run_correct(rec).get(metric), run_correct(base).get(metric)
        if a is None or b is None:
            return None
        images = a[0] if images is None else images
        if not (np.array_equal(a[0], images) and np.array_equal(b[0], images)):
            return None
        d = (a[1].astype(np.int64) - b[1]) + (0 if d is None else d)
        per_seed.append({"seed": rec["seed"], **mcnemar(a[1], b[1])})
    if d is None:
        return None
    out = {
        "images": int(images.size),
        "pairs": int(images.size) * len(pairs),
        "per_seed": per_seed,
        "net_discordant": int(np.abs(d).sum()),
        "p_images": signflip_test(d),
    }
    return out, d


def _comparison(pairs: list[tuple[dict, dict]], metric: str) -> tuple[dict[str, Any], np.ndarray | None]:
    """The seed-level statistics of one metric (and the image-level ones of an accuracy)."""
    diffs = []
    for rec, base in pairs:
        value, ref = run_metrics(rec).get(metric), run_metrics(base).get(metric)
        if value is not None and ref is not None:
            diffs.append(value - ref)
    m, low, high, n = paired_ci(diffs)
    row: dict[str, Any] = {
        "metric": metric,
        "n": n,
        "mean": m,
        "low": low,
        "high": high,
        "sd": mean_std(diffs)[1],
        "p_seeds": t_test(diffs),
    }
    images = _image_level(pairs, metric) if metric in ACCURACIES and n else None
    if images is None:
        return row, None
    row.update(images[0])
    return row, images[1]


def _rows(records: list[dict[str, Any]]) -> tuple[list[dict[str, Any]], list[np.ndarray | None]]:
    rows, diffs = [], []
    metrics = metrics_of(records)
    for variant, models in groups(records).items():
        base = baseline_of(list(models))
        by_seed = {r["seed"]: r for r in models[base]}
        for model, recs in models.items():
            if model == base:
                continue
            pairs = [(r, by_seed[r["seed"]]) for r in recs if r["seed"] in by_seed]
            for metric, _ in metrics:
                row, d = _comparison(pairs, metric)
                if row["n"]:
                    rows.append({"variant": variant, "model": model, "baseline": base, **row})
                    diffs.append(d)
    return rows, diffs


def compare_to_baseline(records: list[dict[str, Any]]) -> dict[str, Any]:
    """{"rows": one dict per (variant, model, metric) with n, mean, low, high, sd, p_seeds(_holm), mdd_seeds
    and, for accuracies, images, pairs, net_discordant (sum over images of |d|), per_seed (McNemar),
    p_images(_holm), mdd_images;
    "tests": m, "alpha", "alpha_mdd", "power", "method"}."""
    rows, diffs = _rows(records)
    tests = [(row, key) for row in rows for key in ("p_seeds", "p_images") if math.isfinite(row.get(key, math.nan))]
    for (row, key), adj in zip(tests, holm([row[key] for row, key in tests])):
        row[key + "_holm"] = adj
    alpha_mdd = ALPHA / max(1, len(tests))
    for row, d in zip(rows, diffs):
        row["mdd_seeds"] = mdd_t(row["sd"], row["n"], alpha_mdd)
        if d is not None:
            row["mdd_images"] = 100.0 * mdd_images(d, row["pairs"], alpha_mdd)
        for kind in ("seeds", "images"):
            row["significant_" + kind] = row.get(f"p_{kind}_holm", math.nan) <= ALPHA
    return {"rows": rows, "tests": len(tests), "alpha": ALPHA, "alpha_mdd": alpha_mdd, "power": POWER, "method": METHOD}
