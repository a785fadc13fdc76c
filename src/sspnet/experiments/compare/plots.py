"""Figures of growth and compare (matplotlib, Agg backend, PNG files written atomically).

- `plot_growth`: perturbation growth ratio against block depth (or group), one panel per norm p, one line per
  model (solid: adversarial; dashed, same colour: random-noise baseline), in the manner of the SSP paper's PGR
  figures.
- `plot_accuracy_vs_eps`: accuracy (%) against eps, one line per model, error bars = std over seeds.
"""
from __future__ import annotations

import io
import math
from pathlib import Path
from typing import Mapping, Sequence

from sspnet.io.files import atomic_write_bytes


def _plt():
    import matplotlib

    matplotlib.use("Agg", force=True)
    import matplotlib.pyplot as plt

    return plt


def _save(fig, path: str | Path) -> Path:
    plt = _plt()
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=110)
    plt.close(fig)
    return atomic_write_bytes(path, buf.getvalue())


def _finite(v: Sequence[float]) -> list[float]:
    return [math.nan if v is None else float(v) for v in v]


def plot_growth(profiles: Mapping[str, Mapping[str, Sequence[float]]], path: str | Path, *, by: str = "block",
                baselines: Mapping[str, Mapping[str, Sequence[float]]] | None = None,
                errors: Mapping[str, Mapping[str, Sequence[float]]] | None = None, title: str | None = None) -> Path:
    """One panel per norm p: ratio against depth (by='block', x = block 1..K) or group (by='group').

    profiles: {label: {p: ratios}} (p in '1', '2', 'inf'); baselines: the same for the noise baseline
    (dashed); errors: optional std per point (shaded). Writes a PNG at `path` and returns it.
    """
    if by not in ("block", "group"):
        raise ValueError(f"by must be 'block' or 'group', got {by!r}")
    plt = _plt()
    ps = []
    for prof in profiles.values():
        ps.extend(p for p in prof if p not in ps)
    ps = ps or ["2"]
    from matplotlib.ticker import MaxNLocator

    fig, axes = plt.subplots(1, len(ps), figsize=(4.2 * len(ps), 3.6), squeeze=False, constrained_layout=True)
    colors = plt.rcParams["axes.prop_cycle"].by_key()["color"]
    for ax, p in zip(axes[0], ps):
        for i, (label, prof) in enumerate(profiles.items()):
            c = colors[i % len(colors)]
            ys = _finite(prof.get(p, []))
            xs = list(range(1, len(ys) + 1))
            ax.plot(xs, ys, marker="o", ms=3, color=c, label=label)
            if errors and label in errors and p in errors[label]:
                e = _finite(errors[label][p])
                ax.fill_between(xs, [a - b for a, b in zip(ys, e)], [a + b for a, b in zip(ys, e)], color=c, alpha=0.15)
            if baselines and label in baselines and p in baselines[label]:
                yb = _finite(baselines[label][p])
                ax.plot(list(range(1, len(yb) + 1)), yb, ls="--", color=c, alpha=0.7)
        ax.axhline(1.0, color="grey", lw=0.6, ls=":")
        ax.set_xlabel("block (depth)" if by == "block" else "block group")
        ax.set_ylabel(f"growth ratio (L{'∞' if p == 'inf' else p})")
        ax.set_title(f"p = {p}")
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))
        ax.grid(alpha=0.3)
    handles, labels = axes[0][0].get_legend_handles_labels()
    fig.legend(handles, labels, loc="outside right upper", fontsize=8,
               title="solid: adversarial\ndashed: noise" if baselines else None, title_fontsize=7)
    if title:
        fig.suptitle(title)
    return _save(fig, path)


def plot_accuracy_vs_eps(curves: Mapping[str, tuple[Sequence[float], Sequence[float], Sequence[float] | None]],
                         path: str | Path, *, title: str | None = None, attack: str = "PGD") -> Path:
    """Accuracy (%) against eps (pixel units): curves = {label: (eps list, mean acc list, std list or None)}."""
    plt = _plt()
    fig, ax = plt.subplots(figsize=(5.2, 3.6), constrained_layout=True)
    for label, (eps, acc, std) in curves.items():
        if std is not None:
            ax.errorbar(list(eps), _finite(acc), yerr=_finite(std), marker="o", ms=3, capsize=2, label=label)
        else:
            ax.plot(list(eps), _finite(acc), marker="o", ms=3, label=label)
    ax.set_xlabel("eps (L∞, pixel units)")
    ax.set_ylabel(f"{attack} accuracy (%)")
    ax.set_ylim(0, 100)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    if title:
        ax.set_title(title)
    return _save(fig, path)


def growth_results_plot(results: Sequence, path: str | Path, by: str = "block", title: str | None = None) -> Path:
    """`plot_growth` from GrowthResult objects (one line per result, labelled by result.label)."""
    profiles, baselines = {}, {}
    for r in results:
        label = r.label
        k = 2
        while label in profiles:
            label = f"{r.label} ({k})"
            k += 1
        profiles[label] = getattr(r.adversarial, by + "s") if r.adversarial.groups else {}
        if r.baseline is not None:
            baselines[label] = getattr(r.baseline, by + "s")
    if not any(profiles.values()):
        profiles = baselines
        baselines = {}
    return plot_growth(profiles, path, by=by, baselines=baselines or None, title=title)
