"""Statistics and REPORT.md of `sspnet compare`: mean +- std per model, paired differences to res with a 95%
t-interval, cost columns, growth tables, plots (`sspnet.compareplots`) and results.json.

The Student-t quantile is computed here (no scipy): the two-sided t distribution function for integer
degrees of freedom has the closed forms of Abramowitz & Stegun 26.7.3-4, inverted by bisection.
"""
from __future__ import annotations

import datetime
import math
import os
import platform
from pathlib import Path
from typing import Any, Sequence

from sspnet.io.files import atomic_write_json, atomic_write_text, provenance

METRICS = (("clean", "clean %"), ("fgsm", "FGSM %"), ("pgd", "PGD %"), ("autoattack", "AutoAttack %"),
           ("growth_adv", "PGR L2 (PGD)"), ("growth_noise", "PGR L2 (noise)"))


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


def _fmt(m: float, sd: float | None = None, digits: int = 1) -> str:
    if m is None or not math.isfinite(m):
        return "-"
    return f"{m:.{digits}f}" if sd is None else f"{m:.{digits}f} ± {sd:.{digits}f}"


def _groups(records: list[dict[str, Any]]) -> dict[str, dict[str, list[dict[str, Any]]]]:
    out: dict[str, dict[str, list[dict[str, Any]]]] = {}
    for r in records:
        out.setdefault(r["variant"], {}).setdefault(r["model"], []).append(r)
    return out


def _mean_profile(recs: list[dict[str, Any]], which: str, by: str) -> dict[str, list[float]]:
    out: dict[str, list[float]] = {}
    profs = [r["growth"].get(which) for r in recs if r["growth"].get(which)]
    if not profs:
        return out
    for p in profs[0][by]:
        cols = list(zip(*[pr[by][p] for pr in profs]))
        out[p] = [mean_std([v for v in col if v is not None])[0] for col in cols]
    return out


def aggregate(records: list[dict[str, Any]], baseline: str = "res") -> dict[str, Any]:
    """Per variant and model: mean/std/n of every metric, and paired differences to `baseline` by seed."""
    result: dict[str, Any] = {}
    for variant, models in _groups(records).items():
        base = {r["seed"]: run_metrics(r) for r in models.get(baseline, [])}
        rows = {}
        for model, recs in models.items():
            mets = [run_metrics(r) for r in recs]
            row: dict[str, Any] = {"n": len(recs), "seeds": [r["seed"] for r in recs], "cost": recs[0]["cost"]}
            for key in [k for k, _ in METRICS] + ["train_seconds"]:
                m, sd, n = mean_std([mt[key] for mt in mets])
                row[key] = {"mean": m, "std": sd, "n": n}
            if model != baseline and base:
                diffs = {}
                for key, _ in METRICS:
                    d = [run_metrics(r)[key] - base[r["seed"]][key] for r in recs
                         if r["seed"] in base and run_metrics(r)[key] is not None and base[r["seed"]][key] is not None]
                    m, lo, hi, n = paired_ci(d)
                    diffs[key] = {"mean": m, "low": lo, "high": hi, "n": n}
                row["vs_" + baseline] = diffs
            row["growth_blocks"] = _mean_profile(recs, "adversarial", "blocks")
            row["growth_blocks_noise"] = _mean_profile(recs, "baseline", "blocks")
            row["growth_groups"] = _mean_profile(recs, "adversarial", "groups")
            row["growth_groups_noise"] = _mean_profile(recs, "baseline", "groups")
            sweeps = [r["eval"]["sweep"] for r in recs]
            row["sweep"] = {e: mean_std([s[e] for s in sweeps if e in s])[:2] for e in sweeps[0]}
            rows[model] = row
        result[variant] = rows
    return result


def _machine(settings: dict[str, Any]) -> str:
    import torch

    cpu = platform.processor() or platform.machine()
    dev = "CUDA " + torch.cuda.get_device_name(0) if torch.cuda.is_available() else f"CPU ({cpu})"
    return (f"{dev}, {os.cpu_count()} logical cores, torch {torch.__version__} with {torch.get_num_threads()} "
            f"threads, Python {platform.python_version()}, {platform.system()}")


def write_report(out: Path, records: list[dict[str, Any]], settings: dict[str, Any], elapsed: float,
                 command: str = "sspnet compare", statuses: dict[str, int] | None = None, jobs: int = 1
                 ) -> dict[str, Any]:
    """Write OUT/results.json, OUT/REPORT.md and OUT/*.png; returns the results dict."""
    from sspnet.experiments.compare.plots import plot_accuracy_vs_eps, plot_growth

    out = Path(out)
    agg = aggregate(records)
    ev = settings["eval"]
    has_aa = any(r["eval"].get("autoattack") is not None for r in records)
    metrics = [(k, name) for k, name in METRICS if k != "autoattack" or has_aa]
    plots: dict[str, list[str]] = {}
    for variant, rows in agg.items():
        suffix = f"_{variant}" if variant else ""
        curves = {m: ([float(e) for e in row["sweep"]], [v[0] for v in row["sweep"].values()],
                      [v[1] for v in row["sweep"].values()]) for m, row in rows.items()}
        f1 = plot_accuracy_vs_eps(curves, out / f"accuracy_vs_eps{suffix}.png",
                                  title=f"PGD-{ev.pgd_steps}, {ev.sweep_n} test images {variant}".strip())
        f2 = plot_growth({m: row["growth_blocks"] for m, row in rows.items()}, out / f"growth_depth{suffix}.png",
                         baselines={m: row["growth_blocks_noise"] for m, row in rows.items()}, by="block",
                         title=f"perturbation growth per block{' ' + variant if variant else ''}")
        files = [f1.name, f2.name]
        if max(len(g) for row in rows.values() for g in row["growth_groups"].values()) > 1:
            f3 = plot_growth({m: row["growth_groups"] for m, row in rows.items()}, out / f"growth_groups{suffix}.png",
                             baselines={m: row["growth_groups_noise"] for m, row in rows.items()}, by="group",
                             title=f"perturbation growth per group{' ' + variant if variant else ''}")
            files.append(f3.name)
        plots[variant] = files
    lines = _report_lines(records, settings, agg, metrics, plots, elapsed, command, statuses or {}, jobs)
    atomic_write_text(out / "REPORT.md", "\n".join(lines) + "\n")
    summary = {"settings": {**settings, "eval": ev.key()}, "elapsed_seconds": elapsed, "aggregate": agg,
               "records": records, "machine": _machine(settings), "provenance": provenance()}
    atomic_write_json(out / "results.json", _nan_none(summary))
    return summary


def _nan_none(obj: Any) -> Any:
    if isinstance(obj, float) and not math.isfinite(obj):
        return None
    if isinstance(obj, dict):
        return {str(k): _nan_none(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [_nan_none(v) for v in obj]
    return obj


def _report_lines(records, settings, agg, metrics, plots, elapsed, command, statuses, jobs) -> list[str]:
    ev = settings["eval"]
    total_train = sum(r["train_seconds"] for r in records)
    total_runs = sum(r.get("run_wall_seconds") or 0.0 for r in records)
    done = ", ".join(f"{v} {k}" for k, v in statuses.items() if v) or f"{len(records)} runs"
    seeds = settings["seeds"]
    L = [f"# sspnet compare: {settings['dataset']}, preset {settings['preset']}", "",
         f"- command: `{command}`",
         f"- date: {datetime.datetime.now().strftime('%Y-%m-%d %H:%M')}; machine: {_machine(settings)}",
         f"- wall time of this invocation: {elapsed:.0f} s ({done}; {jobs} parallel job(s)"
         f"{', one thread each' if jobs > 1 else ''}); when each run was made, training + "
         f"evaluation took {total_runs:.0f} s summed over the {len(records)} runs (training loops alone "
         f"{total_train:.0f} s)",
         "- training: " + ", ".join(f"{k}={v}" for k, v in settings["train"].items()),
         f"- evaluation: final checkpoint, {records[0]['eval']['n'] if records else '?'} evenly spaced test images, "
         f"L∞ eps {ev.eps:.4g}: FGSM, PGD-{ev.pgd_steps} (step {ev.alpha:.4g}, no random start, 8-bit rounding "
         f"{'on' if ev.quantize else 'off'}); eps sweep on {ev.sweep_n} images",
         f"- growth: PGR_p = mean over {ev.growth_n} images of ||G(h(x')) - G(h(x))||_p / ||h(x') - h(x)||_p "
         f"(group input h after the stem / transition, x' = the PGD example at eps {ev.eps:.4g}; noise: random "
         f"{ev.growth_noise} noise of the same eps). 'PGR L2' = mean over block groups of the L2 ratio.",
         f"- mean ± std over {seeds} seed(s); paired differences to res: mean over seeds of (model - res) of "
         "the same seed, [95% t-interval]; * marks an interval that excludes 0.", ""]
    for variant, rows in agg.items():
        title = f"## Results{' ' + variant if variant else ''}"
        L += [title, "", "| model | " + " | ".join(n for _, n in metrics) +
              " | F calls / block | parameters | train time (s) |",
              "|---|" + "---:|" * (len(metrics) + 3)]
        for model, row in rows.items():
            digits = {k: (3 if k.startswith("growth") else 1) for k, _ in metrics}
            cells = [_fmt(row[k]["mean"], row[k]["std"], digits[k]) for k, _ in metrics]
            calls = sorted(set(row["cost"]["f_calls_per_block"]))
            t = row["train_seconds"]
            L.append(f"| {model} | " + " | ".join(cells) + f" | {'/'.join(map(str, calls))} | "
                     f"{row['cost']['parameters']:,} | {_fmt(t['mean'], t['std'])} |")
        paired = [(m, row["vs_res"]) for m, row in rows.items() if "vs_res" in row]
        if paired:
            L += ["", "Paired difference to res (same seed), mean [95% CI]:", "",
                  "| model | " + " | ".join("Δ " + n for _, n in metrics) + " |", "|---|" + "---:|" * len(metrics)]
            for model, d in paired:
                cells = []
                for k, _ in metrics:
                    x = d[k]
                    dig = 3 if k.startswith("growth") else 1
                    if x["n"] == 0:
                        cells.append("-")
                    elif not math.isfinite(x["low"]):
                        cells.append(f"{x['mean']:+.{dig}f} (n={x['n']})")
                    else:
                        star = "*" if x["low"] > 0 or x["high"] < 0 else ""
                        cells.append(f"{x['mean']:+.{dig}f} [{x['low']:+.{dig}f}, {x['high']:+.{dig}f}]{star}")
                L.append(f"| {model} | " + " | ".join(cells) + " |")
        eps_keys = list(next(iter(rows.values()))["sweep"])
        L += ["", f"PGD-{ev.pgd_steps} accuracy (%) against eps ({ev.sweep_n} images; eps 0 = clean):", "",
              "| model | " + " | ".join(f"eps {float(e):.4g}" for e in eps_keys) + " |",
              "|---|" + "---:|" * len(eps_keys)]
        for model, row in rows.items():
            L.append(f"| {model} | " + " | ".join(_fmt(*row["sweep"][e]) for e in eps_keys) + " |")
        nb = max((len(v) for row in rows.values() for v in row["growth_blocks"].values()), default=0)
        L += ["", "Growth ratio per block (depth order), mean over seeds, PGD / noise:", "",
              "| model | p | " + " | ".join(f"block {i + 1}" for i in range(nb)) + " |", "|---|---|" + "---:|" * nb]
        for model, row in rows.items():
            for p, vals in row["growth_blocks"].items():
                noise = row["growth_blocks_noise"].get(p, [])
                cells = [f"{a:.3f} / {b:.3f}" if b is not None else f"{a:.3f}"
                         for a, b in zip(vals, noise or [None] * len(vals))]
                L.append(f"| {model} | {p} | " + " | ".join(cells) + " |")
        L += [""] + [f"![{f}]({f})" for f in plots.get(variant, [])] + [""]
    L += ["## Runs", "", "| model | seed | variant | clean | FGSM | PGD | PGR L2 | train s | run folder |",
          "|---|---:|---|---:|---:|---:|---:|---:|---|"]
    for r in records:
        m = run_metrics(r)
        L.append(f"| {r['model']} | {r['seed']} | {r['variant'] or '-'} | {_fmt(m['clean'])} | {_fmt(m['fgsm'])} | "
                 f"{_fmt(m['pgd'])} | {_fmt(m['growth_adv'], None, 3)} | {_fmt(r['train_seconds'])} | "
                 f"`{Path(r['run_dir']).name}` |")
    return L


def _fmt_time(s: float | None) -> str:
    """Seconds as m:ss or h:mm:ss ("?" when unknown)."""
    if s is None or not math.isfinite(s):
        return "?"
    s = int(round(s))
    return f"{s // 3600}:{s % 3600 // 60:02d}:{s % 60:02d}" if s >= 3600 else f"{s // 60}:{s % 60:02d}"


def format_plan(plan: list[Any], settings: dict[str, Any]) -> str:
    """The plan as a text table (what --dry-run prints)."""
    ev = settings["eval"]
    tr = settings["train"]
    lines = [f"plan: preset {settings['preset']}, dataset {settings['dataset']}, {len(plan)} runs "
             f"({len(settings['models'])} models x {settings['seeds']} seeds"
             f"{' x ' + str(len(settings['grid'])) + ' grid points' if settings['grid'] else ''})",
             "training: " + ", ".join(f"{k}={v}" for k, v in tr.items()),
             f"evaluation: {ev.n or 'all'} test images, clean / FGSM / PGD-{ev.pgd_steps} at eps {ev.eps:.4g} "
             f"(step {ev.alpha:.4g}), PGD sweep eps {', '.join(f'{e:.4g}' for e in ev.sweep)} on {ev.sweep_n}, "
             f"growth on {ev.growth_n}, autoattack {ev.autoattack}",
             f"expected time: {settings['expected']}",
             f"{'#':>3}  {'model':10s} {'seed':>4}  {'variant':8s} {'status':9s} run folder"]
    for r in plan:
        lines.append(f"{r.index:>3}  {r.model:10s} {r.seed:>4}  {r.variant or '-':8s} {r.status:9s} {r.run_dir}")
    counts = {s: sum(r.status == s for r in plan) for s in ("cached", "evaluate", "resume", "train")}
    lines.append("to do: " + ", ".join(f"{v} {k}" for k, v in counts.items()))
    return "\n".join(lines)
