"""The markdown tables of REPORT.md: results per model, differences to the baseline, the tests, the eps
sweep and the growth profiles."""

from __future__ import annotations

import math
from typing import Any

from sspnet.experiments.compare.analysis.findings import metric_name, short_name


def model_label(name: str) -> str:
    """The model's reader name with its option name, e.g. 'SSP-adap (ark)'; the name alone when they agree. A
    scheme file is named by its stem, not its path: 'ralston' (or 'my-rk (ralston)' when the scheme inside is
    named otherwise)."""
    from sspnet.nn.registry import display_name

    short = short_name(name)
    try:
        shown = display_name(name)
    except (ValueError, KeyError, OSError):
        shown = short
    return short if shown == short else f"{shown} ({short})"


def f_calls_text(calls: list[int], blocks_per_group: list[int] | None = None) -> str:
    """F calls per block, unambiguous: '2' when every block makes the same number; else per block group when each
    group is uniform ('2, 1, 2 per group', SSP-adap on CIFAR-10), else the set ('1 and 2 by block')."""
    values = sorted(set(int(c) for c in calls))
    if not values:
        return "-"
    if len(values) == 1:
        return str(values[0])
    if blocks_per_group and sum(blocks_per_group) == len(calls):
        per, k = [], 0
        for n in blocks_per_group:
            group = set(calls[k : k + n])
            k += n
            if len(group) != 1:
                break
            per.append(str(group.pop()))
        else:
            return ", ".join(per) + " per group"
    return ", ".join(map(str, values[:-1])) + f" and {values[-1]} by block"


def fmt(m: float | None, sd: float | None = None, digits: int = 1, n: int | None = None) -> str:
    """'96.5 ± 0.3'; the value alone when sd is None or n == 1 (one run has no spread); '-' when missing."""
    if m is None or not math.isfinite(m):
        return "-"
    if sd is None or n == 1 or not math.isfinite(sd):
        return f"{m:.{digits}f}"
    return f"{m:.{digits}f} ± {sd:.{digits}f}"


def digits(key: str) -> int:
    return 3 if key.startswith("growth") else 1


def table_head(first: str, columns: list[str]) -> list[str]:
    return [f"| {first} | " + " | ".join(columns) + " |", "|---|" + "---:|" * len(columns)]


def _p(value: float | None, holm: float | None) -> str:
    if value is None or not math.isfinite(value):
        return "-"
    return f"{value:.2g} ({holm:.2g})" + ("*" if holm <= 0.05 else "")


def results_table(variant: str, rows: dict[str, Any], metrics: list[tuple[str, str]]) -> list[str]:
    """Mean ± std over seeds (the value alone with one seed; n = runs), cost and training time."""
    lines = [f"## Results{' ' + variant if variant else ''}", ""]
    lines += table_head("model", ["n"] + [n for _, n in metrics] + ["F calls / block", "parameters", "train time (s)"])
    for model, row in rows.items():
        cells = [str(row["n"])]
        for k, _ in metrics:
            x = row[k]
            extra = f" (n={x['n']})" if x["n"] not in (0, row["n"]) else ""
            cells.append(fmt(x["mean"], x["std"], digits(k), x["n"]) + extra)
        calls = f_calls_text(list(row["cost"]["f_calls_per_block"]), row.get("blocks_per_group"))
        t = row["train_seconds"]
        cells += [calls, f"{row['cost']['parameters']:,}", fmt(t["mean"], t["std"], 1, t["n"])]
        lines.append(f"| {model_label(model)} | " + " | ".join(cells) + " |")
    return lines


def _diff_cell(x: dict[str, Any]) -> str:
    k = digits(x["metric"])
    if not math.isfinite(x["low"]):
        return f"{x['mean']:+.{k}f} (n={x['n']})"
    star = "*" if x["low"] > 0 or x["high"] < 0 else ""
    return f"{x['mean']:+.{k}f} [{x['low']:+.{k}f}, {x['high']:+.{k}f}]{star} (n={x['n']})"


def paired_table(comp_rows: list[dict[str, Any]], metrics: list[tuple[str, str]]) -> list[str]:
    """Mean paired difference to the baseline (same seed) with its 95% t-interval and n."""
    if not comp_rows:
        return []
    base = comp_rows[0]["baseline"]
    by_model: dict[str, dict[str, Any]] = {}
    for r in comp_rows:
        by_model.setdefault(r["model"], {})[r["metric"]] = r
    lines = [
        "",
        f"Paired difference to {short_name(base)} (same seed), mean [95% t-interval] (n seeds; no "
        "interval with n = 1; * the interval excludes 0, before any correction):",
        "",
    ]
    lines += table_head("model", ["Δ " + n for _, n in metrics])
    for model, d in by_model.items():
        cells = [_diff_cell(d[k]) if k in d else "-" for k, _ in metrics]
        lines.append(f"| {model_label(model)} | " + " | ".join(cells) + " |")
    return lines


def _seed_ps(row: dict[str, Any]) -> str:
    return ", ".join(f"s{s['seed']} {s['p']:.2g}" for s in row.get("per_seed", [])) or "-"


def significance_table(comp_rows: list[dict[str, Any]], comp: dict[str, Any]) -> list[str]:
    """Both tests of every (model, metric) with Holm-adjusted p-values and both MDDs."""
    if not comp_rows:
        return []
    lines = [
        "",
        f"Tests against {short_name(comp_rows[0]['baseline'])} ({comp['tests']} tests in the report, "
        f"Holm-adjusted p in parentheses, * <= {comp['alpha']}; MDD at {comp['power']:.0%} power, alpha "
        f"{comp['alpha_mdd']:.2g}; accuracies in points; discordant +/−: images right only for the model / "
        "only for the baseline, summed over seeds):",
        "",
    ]
    lines += table_head(
        "model",
        [
            "metric",
            "Δ",
            "n",
            "p seeds (Holm)",
            "MDD seeds",
            "images x seeds",
            "discordant +/−",
            "McNemar p per seed",
            "p images (Holm)",
            "MDD images",
        ],
    )
    for r in comp_rows:
        k = digits(r["metric"])
        plus = sum(s["model_only"] for s in r.get("per_seed", []))
        minus = sum(s["base_only"] for s in r.get("per_seed", []))
        cells = [
            metric_name(r["metric"]),
            f"{r['mean']:+.{k}f}",
            str(r["n"]),
            _p(r["p_seeds"], r.get("p_seeds_holm")),
            fmt(r.get("mdd_seeds"), None, k),
            f"{r['images']} x {len(r['per_seed'])}" if "images" in r else "-",
            f"{plus}/{minus}" if "per_seed" in r else "-",
            _seed_ps(r),
            _p(r.get("p_images"), r.get("p_images_holm")),
            fmt(r.get("mdd_images"), None, k),
        ]
        lines.append(f"| {model_label(r['model'])} | " + " | ".join(cells) + " |")
    lines += [
        "",
        "Seed level: " + comp["method"]["seeds"] + ". Image level: " + comp["method"]["images"] + ". "
        "The seed-level MDD bounds conclusions about the architectures; the image-level MDD only those "
        "about these trained networks. " + comp["method"]["mdd"] + ".",
    ]
    return lines


def sweep_table(rows: dict[str, Any], ev: Any, unit: float = 1.0) -> list[str]:
    """PGD accuracy against eps; eps in the dataset's unit (k/255 where unit is 1/255, else pixel units)."""
    from sspnet.eval.plots import eps_text

    eps_keys = list(next(iter(rows.values()))["sweep"])
    lines = [
        "",
        f"PGD-{ev.steps} accuracy (%) against eps ({ev.sweep_images} images; eps 0 = clean; mean ± std over seeds):",
        "",
    ]
    lines += table_head("model", [f"eps {eps_text(float(e), unit)}" for e in eps_keys])
    for model, row in rows.items():
        lines.append(
            f"| {model_label(model)} | " + " | ".join(fmt(*row["sweep"][e], 1, row["n"]) for e in eps_keys) + " |"
        )
    return lines


def growth_table(rows: dict[str, Any]) -> list[str]:
    nb = max((len(v) for row in rows.values() for v in row["growth_blocks"].values()), default=0)
    lines = [
        "",
        "Growth ratio per block (depth order), mean over seeds, PGD / noise:",
        "",
        "| model | p | " + " | ".join(f"block {i + 1}" for i in range(nb)) + " |",
        "|---|---|" + "---:|" * nb,
    ]
    for model, row in rows.items():
        for p, vals in row["growth_blocks"].items():
            noise = row["growth_blocks_noise"].get(p, [])
            cells = [
                f"{a:.3f} / {b:.3f}" if b is not None else f"{a:.3f}" for a, b in zip(vals, noise or [None] * len(vals))
            ]
            lines.append(f"| {model_label(model)} | {p} | " + " | ".join(cells) + " |")
    return lines


def group_growth_table(rows: dict[str, Any]) -> list[str]:
    """L2 PGR per block group, mean +- std over seeds, PGD and noise (nothing for one-group models: the block
    table says it all)."""
    n = max((len(row["growth_groups"].get("2") or []) for row in rows.values()), default=0)
    if n < 2:
        return []
    lines = [
        "",
        "Growth ratio per block group (L2), mean ± std over seeds; PGD, then noise in brackets:",
        "",
        "| model | " + " | ".join(f"group {j + 1}" for j in range(n)) + " |",
        "|---|" + "---:|" * n,
    ]
    for model, row in rows.items():
        cells = []
        for key in ("growth_groups", "growth_groups_noise"):
            means, sds = row[key].get("2") or [], row.get(key + "_std", {}).get("2") or []
            cells.append([fmt(m, sd, 3, row["n"]) for m, sd in zip(means, sds or [None] * len(means))])
        adv, noise = cells
        noise = noise or [""] * len(adv)
        lines.append(
            f"| {model_label(model)} | " + " | ".join(f"{a} ({b})" if b else a for a, b in zip(adv, noise)) + " |"
        )
    return lines
