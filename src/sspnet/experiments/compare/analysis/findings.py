"""The "Findings" paragraph at the top of REPORT.md: what the run can and cannot conclude, generated from
the numbers (`comparisons`), the gradient-masking audit and the checkpoint descriptions."""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

from sspnet.experiments.compare.analysis.significance import ALPHA, POWER

NAMES = {
    "clean": "clean accuracy",
    "fgsm": "FGSM accuracy",
    "pgd": "PGD accuracy",
    "autoattack": "AutoAttack accuracy",
    "growth_adv": "growth ratio (PGD)",
    "growth_noise": "growth ratio (noise)",
}


def metric_name(metric: str) -> str:
    """A metric in words: NAMES, or 'group 3 growth ratio (PGD)' for growth_g3."""
    if metric.startswith("growth_g") and metric[len("growth_g") :].isdigit():
        return f"group {metric[len('growth_g') :]} growth ratio (PGD)"
    return NAMES[metric]


BOUND_ORDER = ("pgd", "autoattack", "fgsm", "clean")  # the accuracies named in the bound sentences


def is_accuracy(metric: str) -> bool:
    return not metric.startswith("growth")


def amount(value: float, metric: str, signed: bool = False) -> str:
    """'+5.2 points' for an accuracy, '+0.031' for a growth ratio."""
    k = 1 if is_accuracy(metric) else 3
    return (f"{value:+.{k}f}" if signed else f"{value:.{k}f}") + (" points" if is_accuracy(metric) else "")


def short_name(model: str) -> str:
    """A model as the report names it: a scheme file by its stem ('ralston' for /path/to/ralston.yaml), any
    other model by its option name ('ssp2')."""
    text = str(model)
    if text.lower().endswith((".yaml", ".yml", ".json")) or "/" in text or "\\" in text:
        return Path(text).stem
    return text


def _who(row: dict[str, Any]) -> str:
    return f"{short_name(row['model'])}{' (' + row['variant'] + ')' if row['variant'] else ''}"


def _effect(row: dict[str, Any], kind: str) -> str:
    return (
        f"{_who(row)} {metric_name(row['metric'])} {amount(row['mean'], row['metric'], True)} "
        f"(Holm-adjusted p {row[f'p_{kind}_holm']:.2g})"
    )


def _span(values: list[float], metric: str) -> str:
    """'9.3 points of PGD accuracy' or '4.1-9.3 points of ...' over the finite values of the models."""
    lo, hi = min(values), max(values)
    text = (
        amount(hi, metric)
        if amount(lo, metric) == amount(hi, metric)
        else f"{amount(lo, metric).split()[0]}-{amount(hi, metric)}"
    )
    return (
        text
        + f" of {metric_name(metric)}"
        + (" (more than the whole scale)" if is_accuracy(metric) and hi >= 100 else "")
    )


def _design(comp: dict[str, Any], seeds: int, n_images: Any) -> str:
    models = sorted({short_name(r["model"]) for r in comp["rows"]})
    base = short_name(comp["rows"][0]["baseline"]) if comp["rows"] else "?"
    return (
        f"{len(models)} model(s) against {base} ({', '.join(models)}), {seeds} seed(s), {n_images} test "
        f"images; {comp['tests']} tests, Holm-corrected at family-wise alpha {ALPHA}; minimum detectable "
        f"differences (MDD) at {POWER:.0%} power and alpha/{comp['tests']} = {comp['alpha_mdd']:.2g}."
    )


def _seed_level(rows: list[dict[str, Any]], seeds: int, base: str) -> str:
    if seeds < 2:
        return (
            "With 1 seed there is no seed-level test: this run cannot conclude anything about the "
            "architectures, only about these trained networks."
        )
    sig = [r for r in rows if r["significant_seeds"]]
    if not sig:
        return f"No difference to {base} is significant at the seed level after Holm's correction."
    return "Significant at the seed level after Holm: " + "; ".join(_effect(r, "seeds") for r in sig) + "."


def _image_level(rows: list[dict[str, Any]], seeds: int) -> str:
    tested = [r for r in rows if "p_images" in r]
    if not tested:
        return ""
    only = [r for r in tested if r["significant_images"] and not r["significant_seeds"]]
    if not only:
        if any(r["significant_seeds"] for r in rows):
            return "The image-level test finds no further difference between the trained networks."
        return f"The image-level test finds no difference between the trained networks{' either' if seeds > 1 else ''}."
    why = (
        "with one seed this says nothing about the architectures"
        if seeds < 2
        else "not significant at the seed level, these may be differences between training seeds rather than "
        "architectures"
    )
    return (
        "The image-level test finds that these trained networks differ in "
        + "; ".join(_effect(r, "images") for r in only)
        + f" ({why})."
    )


def _mdds(rows: list[dict[str, Any]], metrics: list[str], key: str) -> str:
    """'differences smaller than 9.3 points of PGD accuracy, 2.0-2.4 points of clean accuracy', then the
    metrics where no size could be detected and those without an estimate."""
    sizes, never, unknown = [], [], []
    for m in metrics:
        values = [r.get(key, math.nan) for r in rows if r["metric"] == m]
        if any(math.isinf(v) for v in values):
            never.append(metric_name(m))
        elif any(math.isfinite(v) for v in values):
            sizes.append(_span([v for v in values if math.isfinite(v)], m))
        else:
            unknown.append(metric_name(m))
    parts = [f"differences smaller than {', '.join(sizes)}"] if sizes else []
    if never:
        parts.append(f"any difference of {', '.join(never)} (too few discordant images)")
    if unknown:
        why = "no spread between the seeds" if key == "mdd_seeds" else "no discordant images"
        parts.append(f"(no estimate for {', '.join(unknown)}: {why})")
    return "; ".join(parts)


def _bounds(rows: list[dict[str, Any]], seeds: int, n_images: Any) -> str:
    """The MDD of the accuracies without a seed-level finding: what the run could not have detected."""
    open_rows = [r for r in rows if is_accuracy(r["metric"]) and not r["significant_seeds"]]
    metrics = [m for m in BOUND_ORDER if any(r["metric"] == m for r in open_rows)]
    if not metrics:
        return ""
    images = (
        f"On these trained networks and {n_images} images, the image-level test could not detect "
        f"{_mdds(open_rows, metrics, 'mdd_images')} (MDD per model)"
    )
    if seeds < 2:
        return images + "; this bounds the conclusion, which holds for these networks only."
    return (
        f"With {seeds} seeds, the seed-level test could not detect {_mdds(open_rows, metrics, 'mdd_seeds')} "
        f"(MDD per model); this bounds any conclusion about the architectures. {images}."
    )


def _audit(audit: dict[str, Any] | None) -> str:
    if not audit or not audit.get("ran"):
        why = (audit or {}).get("reason", "not available")
        return f"The gradient-masking audit did not run ({why}): gradient masking is not ruled out."
    flags = audit["flags"]
    head = f"The gradient-masking audit ({audit['images']} class-stratified images per run; {audit['checks']})"
    if not flags:
        return head + " raised no flag."
    runs: dict[str, list[str]] = {}
    for f in flags:
        runs.setdefault(f["name"], []).append(f["run"])
    listed = "; ".join(f"{name} ({', '.join(who)})" for name, who in runs.items())
    n_runs = len({f["run"] for f in flags})
    return (
        f"{head} raised {len(flags)} flag(s) in {n_runs} of {audit['of']} runs: {listed}; the robustness of "
        "the flagged runs may be overestimated (see Gradient-masking audit)."
    )


def checkpoints(records: list[dict[str, Any]]) -> str:
    """Which checkpoint the runs were evaluated at and how it was selected (`describe_checkpoint`), with a
    warning when one was selected on the test set."""
    descs = [r["checkpoint"] for r in records if r.get("checkpoint")]
    if not descs:
        return "checkpoint not described"
    from sspnet.nn.checkpoints import SELECTION_WORDS as how

    kinds: dict[str, set] = {}
    for d in descs:
        crit = f" by {d['criterion']}" if d.get("criterion") not in (None, "final") else ""
        kinds.setdefault(f"{Path(d['file']).name}: {how.get(d['selected_on'], d['selected_on'])}{crit}", set()).add(
            d.get("epoch")
        )
    text = "; ".join(f"{k}, epoch {'/'.join(str(e) for e in sorted(v, key=str))}" for k, v in kinds.items())
    warned = [d for d in descs if d.get("warning")]
    if warned:
        text += (
            f". WARNING: {len(warned)} of {len(descs)} runs were evaluated at a checkpoint selected on the "
            f"test set: {warned[0]['warning']}"
        )
    return text


CHANCE_MARGIN = 5.0  # points of clean accuracy above 100 / classes still counted as chance level


def at_chance(records: list[dict[str, Any]], margin: float = CHANCE_MARGIN) -> list[dict[str, Any]]:
    """The models (per variant) whose clean accuracy, mean over their runs, is within `margin` points of chance
    (100 / classes of the dataset): [{"model", "variant", "clean", "chance", "runs"}] in the order of the records."""
    from sspnet.data.specs import get_dataset_spec

    seen: dict[tuple[str, str], list[float]] = {}
    chance: dict[tuple[str, str], float] = {}
    for r in records:
        clean = (r.get("eval") or {}).get("clean")
        dataset = (r.get("growth") or {}).get("dataset")
        if clean is None or not dataset:
            continue
        try:
            classes = get_dataset_spec(dataset).num_classes
        except (KeyError, ValueError):
            continue
        key = (r["model"], r.get("variant") or "")
        seen.setdefault(key, []).append(float(clean))
        chance[key] = 100.0 / classes
    out = []
    for (model, variant), values in seen.items():
        mean = sum(values) / len(values)
        if mean <= chance[(model, variant)] + margin:
            out.append(
                {
                    "model": model,
                    "variant": variant,
                    "clean": mean,
                    "chance": chance[(model, variant)],
                    "runs": len(values),
                }
            )
    return out


def chance_text(items: list[dict[str, Any]]) -> str:
    """The warning sentence about models at chance accuracy ('' when none is)."""
    if not items:
        return ""
    who = "; ".join(
        f"{short_name(d['model'])}{' (' + d['variant'] + ')' if d['variant'] else ''}: clean "
        f"{d['clean']:.1f}% (mean of {d['runs']} run(s)), chance {d['chance']:.1f}%"
        for d in items
    )
    one = len(items) == 1
    return (
        f"WARNING: {'a model is' if one else 'models are'} at chance accuracy ({who}): "
        f"{'it' if one else 'they'} did not learn, so {'its' if one else 'their'} robust accuracies and growth "
        f"ratios say nothing about {'its' if one else 'their'} architecture (check the training recipe: learning "
        "rate, epochs)."
    )


def findings(
    comp: dict[str, Any], records: list[dict[str, Any]], seeds: int, n_images: Any, audit: dict[str, Any] | None = None
) -> list[str]:
    """The Findings section (markdown lines); a warning first when a model is at chance accuracy."""
    rows = comp["rows"]
    chance = chance_text(at_chance(records))
    if not rows:
        text = " ".join(p for p in (chance, "One model only: nothing to compare. " + _audit(audit)) if p)
    else:
        parts = [
            chance,
            _design(comp, seeds, n_images),
            _seed_level(rows, seeds, short_name(rows[0]["baseline"])),
            _image_level(rows, seeds),
            _bounds(rows, seeds, n_images),
            _audit(audit),
            f"Evaluated at: {checkpoints(records)}.",
        ]
        text = " ".join(p for p in parts if p)
    return ["## Findings", "", text, ""]
