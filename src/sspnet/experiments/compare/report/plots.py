"""Compare's accuracy (%) against eps figure (k/255 for CIFAR-10 / TinyImageNet), one line per model, error
bars = std over seeds; the growth figures are `sspnet.eval.growth_plots`."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path

from sspnet.eval.growth_plots import finite_values, pyplot, save_figure


def plot_accuracy_vs_eps(
    curves: Mapping[str, tuple[Sequence[float], Sequence[float], Sequence[float] | None]],
    path: str | Path,
    *,
    title: str | None = None,
    attack: str = "PGD",
    eps_unit: float = 1.0,
) -> Path:
    """Accuracy (%) against eps (pixel units): curves = {label: (eps list, mean acc list, std list or None)}.
    eps_unit: the dataset's eps unit (1/255: ticks read k/255; 1: pixel units)."""
    return save_figure(accuracy_figure(curves, title=title, attack=attack, eps_unit=eps_unit), path)


def accuracy_figure(
    curves: Mapping[str, tuple[Sequence[float], Sequence[float], Sequence[float] | None]],
    *,
    title: str | None = None,
    attack: str = "PGD",
    eps_unit: float = 1.0,
):
    """The matplotlib Figure of `plot_accuracy_vs_eps`; the caller saves or closes it."""
    from sspnet.eval.plots import eps_axis

    plt = pyplot()
    fig, ax = plt.subplots(figsize=(5.2, 3.6), constrained_layout=True)
    markers = "osD^v<>"
    xs_all: list[float] = []
    for i, (label, (eps, acc, std)) in enumerate(curves.items()):
        xs_all += [float(e) for e in eps]
        style = dict(marker=markers[i % len(markers)], ms=4, label=label)
        if std is not None:
            ax.errorbar(list(eps), finite_values(acc), yerr=finite_values(std), capsize=2, **style)
        else:
            ax.plot(list(eps), finite_values(acc), **style)
    eps_axis(ax, xs_all, eps_unit)
    ax.set_ylabel(f"{attack} accuracy (%)")
    ax.set_ylim(0, 100)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    if title:
        ax.set_title(title, fontsize=10)
    return fig
