"""REPORT.md, results.json and the plots of `sspnet compare`: per model mean +- std over seeds, paired
differences to res with a 95% t-interval (`stats`), cost columns, the eps sweep, growth tables, the images
each table used, and one table of all runs."""
from __future__ import annotations

import datetime
import math
import os
import platform
from pathlib import Path
from typing import Any

from sspnet.experiments.compare.stats import METRICS, aggregate, run_metrics
from sspnet.io.files import atomic_write_json, atomic_write_text, provenance
from sspnet.io.jsonio import to_jsonable

BASELINE = "res"


def model_label(name: str) -> str:
    """The model's reader name with its option name, e.g. 'SSP-adap (ark)'; the name alone when they agree."""
    from sspnet.nn.registry import display_name

    shown = display_name(name)
    return name if shown == name else f"{shown} ({name})"


def _fmt(m: float | None, sd: float | None = None, digits: int = 1) -> str:
    if m is None or not math.isfinite(m):
        return "-"
    return f"{m:.{digits}f}" if sd is None else f"{m:.{digits}f} ± {sd:.{digits}f}"


def _digits(key: str) -> int:
    return 3 if key.startswith("growth") else 1


def _machine() -> str:
    import torch

    cpu = platform.processor() or platform.machine()
    dev = "CUDA " + torch.cuda.get_device_name(0) if torch.cuda.is_available() else f"CPU ({cpu})"
    return (f"{dev}, {os.cpu_count()} logical cores, torch {torch.__version__} with {torch.get_num_threads()} "
            f"threads, Python {platform.python_version()}, {platform.system()}")


def _variant_plots(out: Path, variant: str, rows: dict[str, Any], ev: Any) -> list[str]:
    """accuracy_vs_eps, growth_depth (and growth_groups with several groups) PNGs of one variant."""
    from sspnet.experiments.compare.plots import plot_accuracy_vs_eps, plot_growth

    suffix = f"_{variant}" if variant else ""
    named = {model_label(m): row for m, row in rows.items()}
    curves = {m: ([float(e) for e in row["sweep"]], [v[0] for v in row["sweep"].values()],
                  [v[1] for v in row["sweep"].values()]) for m, row in named.items()}
    files = [plot_accuracy_vs_eps(curves, out / f"accuracy_vs_eps{suffix}.png",
                                  title=f"PGD-{ev.steps}, {ev.sweep_images} test images {variant}".strip())]
    kinds = [("block", "growth_blocks", "growth_depth")]
    if max(len(g) for row in rows.values() for g in row["growth_groups"].values()) > 1:
        kinds.append(("group", "growth_groups", "growth_groups"))
    for by, key, stem in kinds:
        files.append(plot_growth({m: row[key] for m, row in named.items()}, out / f"{stem}{suffix}.png",
                                 baselines={m: row[key + "_noise"] for m, row in named.items()}, by=by,
                                 title=f"perturbation growth per {by}{' ' + variant if variant else ''}"))
    return [f.name for f in files]


def write_report(out: Path, records: list[dict[str, Any]], settings: dict[str, Any], elapsed: float,
                 command: str = "sspnet compare", statuses: dict[str, int] | None = None, jobs: int = 1
                 ) -> dict[str, Any]:
    """Write OUT/results.json, OUT/REPORT.md and OUT/*.png; returns the results dict."""
    out = Path(out)
    agg = aggregate(records, BASELINE)
    has_aa = any(r["eval"].get("autoattack") is not None for r in records)
    metrics = [(k, name) for k, name in METRICS if k != "autoattack" or has_aa]
    plots = {variant: _variant_plots(out, variant, rows, settings["eval"]) for variant, rows in agg.items()}
    lines = _header(records, settings, elapsed, command, statuses or {}, jobs)
    for variant, rows in agg.items():
        lines += _variant_section(variant, rows, metrics, settings["eval"], plots.get(variant, []))
    lines += _runs_table(records) + _flags(records)
    atomic_write_text(out / "REPORT.md", "\n".join(lines) + "\n")
    summary = {"settings": {**settings, "eval": settings["eval"].key()}, "elapsed_seconds": elapsed,
               "aggregate": agg, "records": records, "machine": _machine(), "provenance": provenance()}
    atomic_write_json(out / "results.json", to_jsonable(summary))
    return summary


def _images_line(records: list[dict[str, Any]]) -> str:
    """Which test images each table used (from the first run; every run uses the same ones)."""
    images = records[0].get("images") if records else None
    if not images:
        return "- images: ?"
    first = next(iter(images.values()))
    parts = []
    for table, d in images.items():
        per = [c for c in d["per_class"] if c]
        spread = f"{min(per)}-{max(per)}" if per and min(per) < max(per) else f"{max(per, default=0)}"
        parts.append(f"{table} {d['n']} ({len(per)} classes, {spread} per class)")
    return (f"- images: class-stratified nested subsets of the test split (`sspnet.data.subsets`, rule "
            f"{first['rule']}, seed {first['seed']}; indices in each run's compare.json): " + "; ".join(parts))


def _header(records, settings, elapsed, command, statuses, jobs) -> list[str]:
    ev = settings["eval"]
    total_train = sum(r["train_seconds"] for r in records)
    total_runs = sum(r.get("run_wall_seconds") or 0.0 for r in records)
    done = ", ".join(f"{v} {k}" for k, v in statuses.items() if v) or f"{len(records)} runs"
    n = records[0]["eval"]["n_images"] if records else "?"
    return [f"# sspnet compare: {settings['dataset']}, preset {settings['preset']}", "",
            f"- command: `{command}`",
            f"- date: {datetime.datetime.now().strftime('%Y-%m-%d %H:%M')}; machine: {_machine()}",
            f"- wall time of this invocation: {elapsed:.0f} s ({done}; {jobs} parallel job(s)"
            f"{', one thread each' if jobs > 1 else ''}); when each run was made, training + "
            f"evaluation took {total_runs:.0f} s summed over the {len(records)} runs (training loops alone "
            f"{total_train:.0f} s)",
            "- training: " + ", ".join(f"{k}={v}" for k, v in settings["train"].items()),
            f"- evaluation: final checkpoint, {n} test images, L∞ eps {ev.eps:.4g}: FGSM, PGD-{ev.steps} "
            f"(step {ev.alpha:.4g}, no random start, 8-bit rounding {'on' if ev.quantize else 'off'}); eps sweep "
            f"on {ev.sweep_images} images",
            _images_line(records),
            f"- growth: PGR_p = mean over {ev.growth_images} images of ||G(h(x')) - G(h(x))||_p / "
            f"||h(x') - h(x)||_p (group input h after the stem / transition, x' = the PGD example at eps "
            f"{ev.eps:.4g}; noise: random {ev.growth_noise} noise of the same eps). 'PGR L2' = mean over block "
            "groups of the L2 ratio.",
            f"- mean ± std over {settings['seeds']} seed(s); paired differences to {BASELINE}: mean over seeds of "
            f"(model - {BASELINE}) of the same seed, [95% t-interval]; * marks an interval that excludes 0.", ""]


def _table_head(first: str, columns: list[str]) -> list[str]:
    return [f"| {first} | " + " | ".join(columns) + " |", "|---|" + "---:|" * len(columns)]


def _results_table(variant: str, rows: dict[str, Any], metrics: list[tuple[str, str]]) -> list[str]:
    lines = [f"## Results{' ' + variant if variant else ''}", ""]
    lines += _table_head("model", [n for _, n in metrics] + ["F calls / block", "parameters", "train time (s)"])
    for model, row in rows.items():
        cells = [_fmt(row[k]["mean"], row[k]["std"], _digits(k)) for k, _ in metrics]
        calls = "/".join(map(str, sorted(set(row["cost"]["f_calls_per_block"]))))
        t = row["train_seconds"]
        cells += [calls, f"{row['cost']['parameters']:,}", _fmt(t["mean"], t["std"])]
        lines.append(f"| {model_label(model)} | " + " | ".join(cells) + " |")
    return lines


def _diff_cell(x: dict[str, Any], digits: int) -> str:
    if x["n"] == 0:
        return "-"
    if not math.isfinite(x["low"]):
        return f"{x['mean']:+.{digits}f} (n={x['n']})"
    star = "*" if x["low"] > 0 or x["high"] < 0 else ""
    return f"{x['mean']:+.{digits}f} [{x['low']:+.{digits}f}, {x['high']:+.{digits}f}]{star}"


def _paired_table(rows: dict[str, Any], metrics: list[tuple[str, str]]) -> list[str]:
    paired = [(m, row["vs_" + BASELINE]) for m, row in rows.items() if "vs_" + BASELINE in row]
    if not paired:
        return []
    lines = ["", f"Paired difference to {BASELINE} (same seed), mean [95% CI]:", ""]
    lines += _table_head("model", ["Δ " + n for _, n in metrics])
    for model, d in paired:
        lines.append(f"| {model_label(model)} | " + " | ".join(_diff_cell(d[k], _digits(k)) for k, _ in metrics)
                     + " |")
    return lines


def _sweep_table(rows: dict[str, Any], ev: Any) -> list[str]:
    eps_keys = list(next(iter(rows.values()))["sweep"])
    lines = ["", f"PGD-{ev.steps} accuracy (%) against eps ({ev.sweep_images} images; eps 0 = clean):", ""]
    lines += _table_head("model", [f"eps {float(e):.4g}" for e in eps_keys])
    for model, row in rows.items():
        lines.append(f"| {model_label(model)} | " + " | ".join(_fmt(*row["sweep"][e]) for e in eps_keys) + " |")
    return lines


def _growth_table(rows: dict[str, Any]) -> list[str]:
    nb = max((len(v) for row in rows.values() for v in row["growth_blocks"].values()), default=0)
    lines = ["", "Growth ratio per block (depth order), mean over seeds, PGD / noise:", "",
             "| model | p | " + " | ".join(f"block {i + 1}" for i in range(nb)) + " |", "|---|---|" + "---:|" * nb]
    for model, row in rows.items():
        for p, vals in row["growth_blocks"].items():
            noise = row["growth_blocks_noise"].get(p, [])
            cells = [f"{a:.3f} / {b:.3f}" if b is not None else f"{a:.3f}"
                     for a, b in zip(vals, noise or [None] * len(vals))]
            lines.append(f"| {model_label(model)} | {p} | " + " | ".join(cells) + " |")
    return lines


def _variant_section(variant: str, rows: dict[str, Any], metrics: list[tuple[str, str]], ev: Any,
                     plots: list[str]) -> list[str]:
    """Results, paired differences, sweep and growth tables and the plots of one variant."""
    lines = _results_table(variant, rows, metrics) + _paired_table(rows, metrics)
    lines += _sweep_table(rows, ev) + _growth_table(rows)
    return lines + [""] + [f"![{f}]({f})" for f in plots] + [""]


def _flags(records: list[dict[str, Any]]) -> list[str]:
    """The evaluation engine's sanity flags (`sspnet.eval.flags`), one line per run and flag."""
    lines = [f"- {r['model']} seed {r['seed']}{' ' + r['variant'] if r['variant'] else ''}: {f['message']}"
             for r in records for f in r["eval"].get("flags") or []]
    return ["", "## Sanity flags", ""] + lines if lines else []


def _runs_table(records: list[dict[str, Any]]) -> list[str]:
    lines = ["## Runs", "", "| model | seed | variant | clean | FGSM | PGD | PGR L2 | train s | run folder |",
             "|---|---:|---|---:|---:|---:|---:|---:|---|"]
    for r in records:
        m = run_metrics(r)
        lines.append(f"| {r['model']} | {r['seed']} | {r['variant'] or '-'} | {_fmt(m['clean'])} | "
                     f"{_fmt(m['fgsm'])} | {_fmt(m['pgd'])} | {_fmt(m['growth_adv'], None, 3)} | "
                     f"{_fmt(r['train_seconds'])} | `{Path(r['run_dir']).name}` |")
    return lines
