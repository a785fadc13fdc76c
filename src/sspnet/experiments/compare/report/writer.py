"""REPORT.md, results.json and the plots of `sspnet compare`: the Findings paragraph (`findings`), per model
mean +- std over seeds (`stats`), differences to the baseline with both tests, Holm's correction and MDDs
(`comparisons`), cost columns, the eps sweep, growth tables, the gradient-masking audit, the checkpoints and
images each table used, and one table of all runs. results.json holds every record with its per-image
correctness (`perimage`), so every number can be recomputed."""

from __future__ import annotations

import datetime
import os
import platform
from pathlib import Path
from typing import Any

from sspnet.experiments.compare.analysis.comparisons import compare_to_baseline
from sspnet.experiments.compare.analysis.findings import at_chance, chance_text, checkpoints, findings, short_name
from sspnet.experiments.compare.analysis.stats import aggregate, metrics_of, run_metrics
from sspnet.experiments.compare.plan.context import CompareContext
from sspnet.experiments.compare.report import tables
from sspnet.experiments.compare.report.audit import audit_section, audit_summary
from sspnet.experiments.compare.report.bounds import bounds_section
from sspnet.experiments.compare.report.tables import fmt, model_label
from sspnet.experiments.compare.sources import sources_line
from sspnet.experiments.compare.work.perimage import FORMAT, share_images
from sspnet.io.files import atomic_write_json, atomic_write_text, provenance
from sspnet.io.jsonio import to_jsonable


def _machine() -> str:
    import torch

    cpu = platform.processor() or platform.machine()
    dev = "CUDA " + torch.cuda.get_device_name(0) if torch.cuda.is_available() else f"CPU ({cpu})"
    return (
        f"{dev}, {os.cpu_count()} logical cores, torch {torch.__version__} with {torch.get_num_threads()} "
        f"threads, Python {platform.python_version()}, {platform.system()}"
    )


def _variant_plots(out: Path, variant: str, rows: dict[str, Any], ev: Any, dataset: str | None = None) -> list[str]:
    """accuracy_vs_eps, growth_depth (group boundaries marked) and growth_groups (with several groups) PNGs of one
    variant; eps in the dataset's unit (k/255 for CIFAR-10 / TinyImageNet)."""
    from sspnet.eval.growth_plots import plot_growth
    from sspnet.eval.plots import eps_text
    from sspnet.experiments.compare.report.plots import plot_accuracy_vs_eps

    unit = _eps_unit(dataset)
    suffix = f"_{variant}" if variant else ""
    named = {model_label(m): row for m, row in rows.items()}
    curves = {
        m: (
            [float(e) for e in row["sweep"]],
            [v[0] for v in row["sweep"].values()],
            [v[1] for v in row["sweep"].values()],
        )
        for m, row in named.items()
    }
    files = [
        plot_accuracy_vs_eps(
            curves,
            out / f"accuracy_vs_eps{suffix}.png",
            eps_unit=unit,
            title=f"{dataset + ': ' if dataset else ''}PGD-{ev.steps} (L∞), {ev.sweep_images} "
            f"test images{'; ' + variant if variant else ''}\nerror bars: ± std over "
            "seeds",
        )
    ]
    kinds = [("block", "growth_blocks", "growth_depth")]
    if max(len(g) for row in rows.values() for g in row["growth_groups"].values()) > 1:
        kinds.append(("group", "growth_groups", "growth_groups"))
    shapes = {tuple(row.get("blocks_per_group") or ()) for row in rows.values()}
    groups = list(shapes.pop()) if len(shapes) == 1 else None
    for by, key, stem in kinds:
        files.append(
            plot_growth(
                {m: row[key] for m, row in named.items()},
                out / f"{stem}{suffix}.png",
                baselines={m: row[key + "_noise"] for m, row in named.items()},
                by=by,
                errors={m: row.get(key + "_std", {}) for m, row in named.items()},
                blocks_per_group=groups,
                title=f"perturbation growth per {'block' if by == 'block' else 'block group'}"
                f"{' (' + variant + ')' if variant else ''}: PGD-{ev.steps} at L∞ eps "
                f"{eps_text(ev.eps, unit)} vs {ev.growth_noise} noise of the same eps,\n"
                f"{ev.growth_images} {dataset + ' ' if dataset else ''}test images; "
                f"{_spread(rows, key)}: ± std over seeds",
            )
        )
    return [f.name for f in files]


def _spread(rows: dict[str, Any], key: str) -> str:
    """How the growth plot shows the spread over seeds: a band along several points, error bars at one."""
    points = max((len(v) for row in rows.values() for v in row[key].values()), default=0)
    return "band" if points > 1 else "error bars"


def _eps_unit(dataset: str | None) -> float:
    """The dataset's eps unit (1/255 for colour datasets, 1 for grey ones; 1 when unknown)."""
    if not dataset:
        return 1.0
    from sspnet.data.specs import get_dataset_spec

    try:
        return float(get_dataset_spec(dataset).eps_unit)
    except (KeyError, ValueError):
        return 1.0


def write_report(
    out: Path,
    records: list[dict[str, Any]],
    ctx: CompareContext | dict[str, Any],
    elapsed: float,
    command: str = "sspnet compare",
    statuses: dict[str, int] | None = None,
    jobs: int | str = 1,
    audit_note: str | None = None,
    missing: list[dict[str, Any]] | None = None,
) -> dict[str, Any]:
    """Write OUT/results.json, OUT/REPORT.md and OUT/*.png; returns the results dict. audit_note: why the
    gradient-masking audit did not run (None: it ran, or see the records); jobs: parallel jobs, or a text
    saying where the runs ran; missing: the planned runs not finished ({"model", "seed", "variant", "status",
    "run_dir"}): the report covers the finished runs and lists these. ctx: the comparison's context (an old
    settings dict is converted, `CompareContext.from_settings`)."""
    ctx = CompareContext.from_settings(ctx)
    out = Path(out)
    missing = missing or []
    ev = ctx.eval
    agg, comp = aggregate(records), compare_to_baseline(records)
    has_aa = any(r["eval"].get("autoattack") is not None for r in records)
    metrics = [(k, name) for k, name in metrics_of(records) if k != "autoattack" or has_aa]
    plots = {variant: _variant_plots(out, variant, rows, ev, ctx.dataset) for variant, rows in agg.items()}
    audit = audit_summary(records, audit_note)
    n_images = records[0]["eval"]["n_images"] if records else "?"
    lines = [f"# sspnet compare: {ctx.dataset}, preset {ctx.preset}", ""]
    lines += _incomplete(records, missing)
    lines += findings(comp, records, _seeds(records, ctx, missing), n_images, audit)
    lines += _header(records, ctx, elapsed, command, statuses or {}, jobs)
    chance = at_chance(records)
    for variant, rows in agg.items():
        lines += _variant_section(
            variant,
            rows,
            comp,
            metrics,
            ev,
            plots.get(variant, []),
            [d for d in chance if d["variant"] == (variant or "")],
            _eps_unit(ctx.dataset),
        )
    lines += bounds_section(records, ev)
    lines += _runs_table(records) + _missing_section(missing) + audit_section(records, audit) + _flags(records)
    atomic_write_text(out / "REPORT.md", "\n".join(lines) + "\n")
    images, slim = share_images(records)
    summary = {
        "settings": ctx.summary(),
        "elapsed_seconds": elapsed,
        "aggregate": agg,
        "comparisons": comp,
        "audit": audit,
        "machine": _machine(),
        "provenance": provenance(),
        "per_image_format": FORMAT,
        "images": images,
        "records": slim,
        "missing": [to_jsonable(m) for m in missing],
    }
    atomic_write_json(out / "results.json", to_jsonable(summary))
    return summary


def _threads_each(records: list[dict[str, Any]]) -> str:
    """', one thread each' (or ', N threads each') from the torch threads the runs recorded (--threads)."""
    counts = sorted({int(r["threads"]) for r in records if r.get("threads")})
    if not counts or counts == [1]:
        return ", one thread each"
    return f", {'/'.join(map(str, counts))} threads each"


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
    return (
        f"- images: class-stratified nested subsets of the test split (`sspnet.data.subsets`, rule "
        f"{first['rule']}, seed {first['seed']}; indices in each run's compare.json): " + "; ".join(parts)
    )


def _header(records, ctx, elapsed, command, statuses, jobs) -> list[str]:
    ev = ctx.eval
    total_train = sum(r["train_seconds"] for r in records)
    total_runs = sum(r.get("run_wall_seconds") or 0.0 for r in records)
    done = ", ".join(f"{v} {k}" for k, v in statuses.items() if v) or f"{len(records)} runs"
    n = records[0]["eval"]["n_images"] if records else "?"
    from sspnet.eval.plots import eps_text

    unit = _eps_unit(ctx.dataset)
    return [
        "## Settings",
        "",
        f"- command: `{command}`",
        f"- date: {datetime.datetime.now().strftime('%Y-%m-%d %H:%M')}; machine: {_machine()}",
        f"- wall time of this invocation: {elapsed:.0f} s ({done}; {_how(records, jobs)}); when each run was "
        "made, training + "
        f"evaluation took {total_runs:.0f} s summed over the {len(records)} runs (training loops alone "
        f"{total_train:.0f} s)",
        "- training: " + ", ".join(f"{k}={v}" for k, v in ctx.train.items()),
        *sources_line(ctx.sources),
        f"- evaluation: checkpoint '{ev.crit}' ({checkpoints(records)}), {n} test images, L∞ eps "
        f"{eps_text(ev.eps, unit)}: FGSM, PGD-{ev.steps} (step {eps_text(ev.alpha, unit)}, {_restarts(ev)}, "
        "8-bit rounding "
        f"{'on' if ev.quantize else 'off'}; the per-image worst case counts); eps sweep on {ev.sweep_images} "
        f"images; early stop {'on' if ev.early_stop else 'off'} in the sweep and the audit; AutoAttack "
        f"{_autoattack_line(records, ev)}",
        _images_line(records),
        f"- growth: PGR_p = mean over {ev.growth_images} images of ||G(h(x')) - G(h(x))||_p / "
        f"||h(x') - h(x)||_p (group input h after the stem / transition, x' = the PGD example at eps "
        f"{eps_text(ev.eps, unit)}; noise: random {ev.growth_noise} noise of the same eps). 'PGR L2' = mean over "
        "block groups of the L2 ratio.",
        f"- mean ± std over {ctx.seeds} seed(s) (the value alone with one seed); differences to the "
        "baseline: mean over seeds of (model - baseline) of the same seed, tested at the seed and the image "
        "level (see the tests under each results table).",
        "",
    ]


def _how(records: list[dict[str, Any]], jobs: int | str) -> str:
    """'2 parallel job(s), one thread each', or the text given (where the runs ran)."""
    if isinstance(jobs, str):
        return jobs
    return f"{jobs} parallel job(s){_threads_each(records) if jobs > 1 else ''}"


def _seeds(records: list[dict[str, Any]], ctx: CompareContext, missing: list[dict[str, Any]]) -> int:
    """The seeds the Findings may claim: the planned ones, or with runs missing the fewest any model has."""
    if not missing:
        return ctx.seeds
    from sspnet.experiments.compare.analysis.stats import groups

    return min(len(recs) for models in groups(records).values() for recs in models.values())


def _incomplete(records: list[dict[str, Any]], missing: list[dict[str, Any]]) -> list[str]:
    if not missing:
        return []
    return [
        f"**Incomplete: {len(records)} of {len(records) + len(missing)} planned runs are finished; the "
        f"statistics below use these only (missing: {', '.join(_missing_name(m) for m in missing)}; see "
        "Missing runs).**",
        "",
    ]


def _missing_name(m: dict[str, Any]) -> str:
    return f"{short_name(m['model'])} seed {m['seed']}{' ' + m['variant'] if m.get('variant') else ''}"


def _missing_section(missing: list[dict[str, Any]]) -> list[str]:
    """The planned runs not finished, with what their folders hold (status) and where they are."""
    if not missing:
        return []
    lines = [
        "",
        "## Missing runs",
        "",
        "Not finished when this report was written (status: what the run folder "
        "holds; re-running the same command does them):",
        "",
        "| run | status | run folder |",
        "|---|---|---|",
    ]
    return lines + [f"| {_missing_name(m)} | {m['status']} | `{Path(m['run_dir']).name}` |" for m in missing]


def _restarts(ev: Any) -> str:
    return f"{ev.restarts} restarts from random starts" if ev.restarts > 1 else "no random start"


def _autoattack_line(records: list[dict[str, Any]], ev: Any) -> str:
    n = next((r["eval"].get("autoattack_images") for r in records if r["eval"].get("autoattack_images")), None)
    if n is None:
        return (
            f"off (mode {ev.autoattack}; `--autoattack on` or `--preset cpu-hour` runs AutoAttack standard, "
            "about 5 minutes per run of 100 images on one CPU core)"
        )
    where = " inside the gradient-masking audit" if ev.audit == "on" else ""
    return f"standard, on a class-stratified subset of {n} images{where}"


def _variant_section(
    variant: str,
    rows: dict[str, Any],
    comp: dict[str, Any],
    metrics: list[tuple[str, str]],
    ev: Any,
    plots: list[str],
    chance: list[dict[str, Any]] | None = None,
    unit: float = 1.0,
) -> list[str]:
    """Results (with a warning line for models at chance accuracy), differences and tests, sweep and growth
    tables and the plots of one variant."""
    mine = [r for r in comp["rows"] if r["variant"] == variant]
    lines = tables.results_table(variant, rows, metrics)
    if chance:
        lines += ["", f"**{chance_text(chance)}**"]
    lines += tables.paired_table(mine, metrics)
    lines += tables.significance_table(mine, comp) + tables.sweep_table(rows, ev, unit) + tables.growth_table(rows)
    lines += tables.group_growth_table(rows)
    return lines + [""] + [f"![{f}]({f})" for f in plots] + [""]


def _flags(records: list[dict[str, Any]]) -> list[str]:
    """The evaluation engine's sanity flags (`sspnet.eval.flags`), one line per run and flag."""
    lines = [
        f"- {short_name(r['model'])} seed {r['seed']}{' ' + r['variant'] if r['variant'] else ''}: {f['message']}"
        for r in records
        for f in r["eval"].get("flags") or []
    ]
    return ["", "## Sanity flags", ""] + lines if lines else []


def _runs_table(records: list[dict[str, Any]]) -> list[str]:
    lines = [
        "## Runs",
        "",
        "| model | seed | variant | clean | FGSM | PGD | PGR L2 | train s | run folder |",
        "|---|---:|---|---:|---:|---:|---:|---:|---|",
    ]
    for r in records:
        m = run_metrics(r)
        lines.append(
            f"| {short_name(r['model'])} | {r['seed']} | {r['variant'] or '-'} | {fmt(m['clean'])} | "
            f"{fmt(m['fgsm'])} | {fmt(m['pgd'])} | {fmt(m['growth_adv'], None, 3)} | "
            f"{fmt(r['train_seconds'])} | `{Path(r['run_dir']).name}` |"
        )
    return lines
