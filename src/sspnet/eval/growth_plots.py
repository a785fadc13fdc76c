"""Figures of perturbation growth for `sspnet growth` and compare (matplotlib, Agg backend, PNG files written
atomically).

- `plot_growth`: perturbation growth ratio against block depth (or group), one panel per norm p, one line per
  model (solid, filled circles: adversarial; dashed, open squares, same colour: random-noise baseline), integer
  x ticks, group boundaries marked on depth plots, in the manner of the SSP paper's PGR figures (by='group').
- `growth_results_plot`: `plot_growth` of GrowthResult objects, titled with the attack and eps.
`growth_figure` returns the matplotlib Figure instead of writing a file.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from pathlib import Path


def pyplot():
    """matplotlib.pyplot on the Agg backend (imported on first use)."""
    import matplotlib

    matplotlib.use("Agg", force=True)
    import matplotlib.pyplot as plt

    return plt


def save_figure(fig, path: str | Path) -> Path:
    """`sspnet.eval.plots.save_png` of the whole canvas (these figures lay themselves out)."""
    from sspnet.eval.plots import save_png

    return save_png(fig, path, tight=False)


def finite_values(v: Sequence[float | None]) -> list[float]:
    """Floats for matplotlib, None as NaN (a gap in the line)."""
    return [math.nan if v is None else float(v) for v in v]


def group_boundaries(blocks_per_group: Sequence[int] | None) -> tuple[list[float], list[tuple[float, str]]]:
    """How a depth plot (x = block 1..K) marks its block groups: (x of the lines between two groups, [(x of the
    middle of a group, its label)]), e.g. [2, 2, 2] -> ([2.5, 4.5], [(1.5, 'group 1'), (3.5, 'group 2'),
    (5.5, 'group 3')]); ([], []) for one group or none given."""
    if not blocks_per_group or len(blocks_per_group) < 2:
        return [], []
    lines, labels, k = [], [], 0
    for j, n in enumerate(blocks_per_group):
        labels.append((k + (int(n) + 1) / 2, f"group {j + 1}"))
        k += int(n)
        if j < len(blocks_per_group) - 1:
            lines.append(k + 0.5)
    return lines, labels


def integer_ticks(ax, n: int) -> None:
    """x ticks at the integers 1..n (every one up to 20 points, else about 10 of them), x range [0.5, n + 0.5]:
    a single point gets the tick 1, not 0.96 ... 1.04."""
    from matplotlib.ticker import MaxNLocator

    n = max(int(n), 1)
    if n <= 20:
        ax.set_xticks(list(range(1, n + 1)))
    else:
        ax.xaxis.set_major_locator(MaxNLocator(integer=True, nbins=10))
    ax.set_xlim(0.5, n + 0.5)


def growth_figure(
    profiles: Mapping[str, Mapping[str, Sequence[float]]],
    *,
    by: str = "block",
    baselines: Mapping[str, Mapping[str, Sequence[float]]] | None = None,
    errors: Mapping[str, Mapping[str, Sequence[float]]] | None = None,
    title: str | None = None,
    blocks_per_group: Sequence[int] | None = None,
):
    """The matplotlib Figure of `plot_growth` (see there); the caller saves or closes it."""
    if by not in ("block", "group"):
        raise ValueError(f"by must be 'block' or 'group', got {by!r}")
    plt = pyplot()
    ps = []
    for prof in profiles.values():
        ps.extend(p for p in prof if p not in ps)
    ps = ps or ["2"]
    fig, axes = plt.subplots(1, len(ps), figsize=(4.2 * len(ps), 3.8), squeeze=False, constrained_layout=True)
    colors = plt.rcParams["axes.prop_cycle"].by_key()["color"]
    n_max = 1
    dodge = min(0.08, 0.3 / max(len(profiles) - 1, 1)) if len(profiles) > 1 else 0.0
    for ax, p in zip(axes[0], ps):
        for i, (label, prof) in enumerate(profiles.items()):
            c = colors[i % len(colors)]
            shift = dodge * (i - (len(profiles) - 1) / 2)  # models side by side, not on top of each other
            ys = finite_values(prof.get(p, []))
            xs = [k + shift for k in range(1, len(ys) + 1)]
            n_max = max(n_max, len(ys))
            ax.plot(xs, ys, marker="o", ms=5, color=c, label=f"{label}: adversarial" if baselines else label)
            if errors and label in errors and errors[label].get(p):
                e = finite_values(errors[label][p])
                if len(xs) > 1:  # a band over the depth; a single point gets an error bar
                    ax.fill_between(
                        xs, [a - b for a, b in zip(ys, e)], [a + b for a, b in zip(ys, e)], color=c, alpha=0.15, lw=0
                    )
                else:
                    ax.errorbar(xs, ys, yerr=e[: len(xs)], fmt="none", ecolor=c, capsize=3, lw=1)
            if baselines and label in baselines and baselines[label].get(p):
                yb = finite_values(baselines[label][p])
                ax.plot(
                    [k + shift for k in range(1, len(yb) + 1)],
                    yb,
                    ls="--",
                    marker="s",
                    ms=5,
                    mfc="white",
                    color=c,
                    alpha=0.85,
                    label=f"{label}: noise",
                )
                n_max = max(n_max, len(yb))
        ax.axhline(1.0, color="grey", lw=0.6, ls=":")
        ax.set_xlabel("block (depth order)" if by == "block" else "block group")
        ax.set_ylabel(f"growth ratio (L{'∞' if p == 'inf' else p})")
        ax.set_title(f"p = {'∞' if p == 'inf' else p}")
        ax.grid(alpha=0.3)
        integer_ticks(ax, n_max)
        lines, names = group_boundaries(blocks_per_group) if by == "block" else ([], [])
        for x in lines:
            ax.axvline(x, color="black", lw=0.8, ls="-.", alpha=0.6, gid="group-boundary")
        if names:  # group names above the panel, centred on their blocks
            top = ax.secondary_xaxis("top")
            top.set_xticks([x for x, _ in names], labels=[t for _, t in names])
            top.tick_params(length=0, labelsize=7, labelcolor="dimgray")
    handles, labels = axes[0][0].get_legend_handles_labels()
    fig.legend(
        handles,
        labels,
        loc="outside right upper",
        fontsize=8,
        title="solid ●: adversarial\ndashed □: random noise" if baselines else None,
        title_fontsize=7,
    )
    if title:
        fig.suptitle(title, fontsize=10)
    return fig


def plot_growth(
    profiles: Mapping[str, Mapping[str, Sequence[float]]],
    path: str | Path,
    *,
    by: str = "block",
    baselines: Mapping[str, Mapping[str, Sequence[float]]] | None = None,
    errors: Mapping[str, Mapping[str, Sequence[float]]] | None = None,
    title: str | None = None,
    blocks_per_group: Sequence[int] | None = None,
) -> Path:
    """One panel per norm p: ratio against depth (by='block', x = block 1..K, integer ticks) or group
    (by='group', x = group 1..G: the paper's PGR figures).

    profiles: {label: {p: ratios}} (p in '1', '2', 'inf'); baselines: the same for the noise baseline (dashed,
    open squares); errors: optional std per point (shaded band); blocks_per_group: with by='block', a dash-dot
    line between two groups, labelled with the group that starts there. Writes a PNG at `path` and returns it.
    """
    return save_figure(
        growth_figure(
            profiles, by=by, baselines=baselines, errors=errors, title=title, blocks_per_group=blocks_per_group
        ),
        path,
    )


def groups_plot_path(path: str | Path) -> Path:
    """Where the per-group figure of a depth plot goes: growth.png -> growth_groups.png."""
    path = Path(path)
    return path.with_name(f"{path.stem}_groups{path.suffix or '.png'}")


def growth_caption(results: Sequence) -> str:
    """What the perturbations were, for a figure title: 'PGD-20 at eps 8/255 (L∞) vs sign noise of the same eps,
    500 images' (the shared parts of the results; 'mixed settings' where they differ)."""
    from sspnet.eval.plots import eps_text

    texts = []
    for r in results:
        try:
            from sspnet.data.specs import get_dataset_spec

            unit = get_dataset_spec(r.dataset).eps_unit
        except (ValueError, KeyError):
            unit = 1.0
        adv = r.adversary or {}
        name = str(adv.get("name", "?"))
        if name == "pgd":
            name = f"PGD-{adv.get('steps', '?')}"
        elif name in ("fgsm", "none"):
            name = {"fgsm": "FGSM", "none": ""}[name]
        eps = adv.get("eps", (r.noise or {}).get("eps"))
        parts = [f"{name} at eps {eps_text(eps, unit)} (L∞)" if name and eps is not None else name]
        kind = (r.noise or {}).get("kind", "none")
        if kind != "none":
            parts.append(f"{kind} noise of {'the same eps' if name else 'eps ' + eps_text(eps, unit)}")
        texts.append(" vs ".join(p for p in parts if p) + f", {r.n} images")
    return texts[0] if len(set(texts)) == 1 else "mixed settings: " + "; ".join(dict.fromkeys(texts))


def growth_results_plot(results: Sequence, path: str | Path, by: str = "block", title: str | None = None) -> Path:
    """`plot_growth` from GrowthResult objects (one line per result, labelled by result.label); the title says
    which perturbation (attack and eps in the dataset's unit) and, with by='block', the group boundaries are
    marked where all results share them."""
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
    shapes = {tuple(r.blocks_per_group or ()) for r in results}
    groups = list(shapes.pop()) if len(shapes) == 1 else None
    what = "perturbation growth per block" if by == "block" else "perturbation growth per block group"
    head = f"{title}: {what}" if title else what
    return plot_growth(
        profiles,
        path,
        by=by,
        baselines=baselines or None,
        blocks_per_group=groups,
        title=f"{head}\n{growth_caption(results)}",
    )
