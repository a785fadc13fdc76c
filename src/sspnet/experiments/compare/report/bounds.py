"""REPORT.md's "Bounds beside the measured growth": per block group and per block, the L2 Lipschitz upper bound
(`sspnet.eval.lipschitz`) next to the measured L2 growth ratio of the PGD pairs, the forward-Euler and SSP
certificates of those pairs, and the certified accuracy of the global bound. Records without bounds (compare
before record version 3) give no section."""

from __future__ import annotations

import math
import statistics
from typing import Any

from sspnet.experiments.compare.analysis.stats import groups, mean_std
from sspnet.experiments.compare.report.tables import model_label


def _bounds(rec: dict[str, Any]) -> dict[str, Any] | None:
    return (rec.get("growth") or {}).get("lipschitz")


def _measured(rec: dict[str, Any], by: str) -> list[float | None]:
    return ((rec["growth"].get("adversarial") or {}).get(by) or {}).get("2") or []


def _median(values: list[float | None]) -> float:
    v = [float(x) for x in values if x is not None and math.isfinite(float(x))]
    return statistics.median(v) if v else math.nan


def _mean(values: list[float | None]) -> float:
    return mean_std(values)[0]  # NaN when no value is finite


def _g(x: float) -> str:
    return "-" if not math.isfinite(x) else f"{x:.3g}"


def violations(records: list[dict[str, Any]]) -> list[str]:
    """Blocks or groups whose measured mean ratio exceeds their bound (each pair's ratio is at most the
    bound, so their mean is too: a line here is a bug, not a finding)."""
    out = []
    for r in records:
        lip = _bounds(r)
        if not lip:
            continue
        prof = lip["profile"]
        pairs = [("block", [b["block"] for b in prof["blocks"]], _measured(r, "blocks"))]
        pairs.append(("group", prof["groups"], _measured(r, "groups")))
        for kind, bounds, measured in pairs:
            for k, (b, m) in enumerate(zip(bounds, measured)):
                if b is not None and m is not None and m > b * (1 + 1e-9):
                    out.append(f"{r['model']} seed {r['seed']} {kind} {k + 1}: measured {m:.4g} > bound {b:.4g}")
    return out


def bounds_section(records: list[dict[str, Any]], ev: Any) -> list[str]:
    """The section's lines (none when no record holds bounds)."""
    if not any(_bounds(r) for r in records):
        return []
    lines = [
        "",
        "## Bounds beside the measured growth",
        "",
        "L2 Lipschitz upper bounds from the spectral norms of the convolutions (BatchNorm in eval mode folded in) "
        "composed through each block's Shu-Osher form with its step size h, median over seeds, next to the "
        "measured L2 growth ratio of the PGD pairs (mean over seeds). fe: fraction of the PGD pairs on which "
        "the forward-Euler step of size h is contractive at the block's input; ssp: fraction on which every "
        "forward-Euler sub-step of the scheme is contractive on its stage pair, so that the SSP argument "
        "certifies ||B(x') - B(x)|| <= ||x' - x|| (pairs seen only; the spectral bound, 1 + h L_F >= 1, can "
        "never certify it). Certified: the share of the growth images (mean over seeds) classified correctly "
        "with a logit margin above sqrt(2) x the network bound x the L2 radius of the linf ball of eps "
        f"{ev.eps:g} (sqrt(C H W) eps).",
    ]
    for variant, models in groups([r for r in records if _bounds(r)]).items():
        n_groups = max(len(_bounds(r)["profile"]["groups"]) for recs in models.values() for r in recs)
        head = " | ".join(f"group {j + 1} bound / measured" for j in range(n_groups))
        lines += ["", f"Per block group{' (' + variant + ')' if variant else ''}:", ""]
        lines += [f"| model | {head} | network bound | certified % |", "|---|" + "---:|" * (n_groups + 2)]
        for model, recs in models.items():
            cells = []
            for j in range(n_groups):
                b = _median([_bounds(r)["profile"]["groups"][j] for r in recs])
                m = _mean([(_measured(r, "groups") + [None] * n_groups)[j] for r in recs])
                cells.append(f"{_g(b)} / {_g(m)}")
            net = _median([_bounds(r)["profile"]["network"] for r in recs])
            cert = _mean([100.0 * _bounds(r)["certified"]["certified"] for r in recs])
            lines.append(f"| {model_label(model)} | " + " | ".join(cells) + f" | {_g(net)} | {cert:.1f} |")
        lines += _block_table(models)
    reasons = sorted({x for r in records if _bounds(r) for x in _bounds(r)["profile"].get("reasons") or []})
    lines += [""] + [f"- vacuous: {x}" for x in reasons]
    bad = violations(records)
    lines += [f"- **bound below the measured ratio (a bug):** {x}" for x in bad] or [
        "- every block and group of every run: measured mean ratio <= bound, as it must be"
    ]
    return lines + [""]


def _block_table(models: dict[str, list[dict[str, Any]]]) -> list[str]:
    lines = ["", "Per block (depth order): bound / measured / fe / ssp", ""]
    lines += ["| model | block | group | h | bound | measured | fe | ssp |", "|---|---:|---:|---:|---:|---:|---:|---:|"]
    for model, recs in models.items():
        blocks = _bounds(recs[0])["profile"]["blocks"]
        for k, blk in enumerate(blocks):
            b = _median([_bounds(r)["profile"]["blocks"][k]["block"] for r in recs])
            m = _mean([(_measured(r, "blocks") + [None] * len(blocks))[k] for r in recs])
            cert = [(_bounds(r).get("certificates") or {}).get("adversarial") or {} for r in recs]
            fe = _mean([(c.get("fe_contractive") or [None] * len(blocks))[k] for c in cert])
            ssp = _mean([(c.get("ssp_certified") or [None] * len(blocks))[k] for c in cert])
            lines.append(
                f"| {model_label(model)} | {k + 1} | {blk['group'] + 1} | {blk['step_size']:g} | {_g(b)} | {_g(m)} "
                f"| {_g(fe)} | {_g(ssp)} |"
            )
    return lines
