"""Figures for `sspnet attack`: natural vs adversarial image grid, accuracy (%) vs eps (matplotlib, Agg); eps
in the dataset's unit (`eps_text`: k/255 for CIFAR-10 and TinyImageNet, pixel units for MNIST)."""

from __future__ import annotations

import io
from collections.abc import Mapping, Sequence
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import matplotlib.ticker  # noqa: E402
import torch  # noqa: E402
from torch import Tensor  # noqa: E402

from sspnet.io.files import atomic_write_bytes  # noqa: E402


def save_png(fig, path: str | Path, tight: bool = True) -> Path:
    """The one PNG saver: `fig` at 110 dpi (tight: cropped to its content), written atomically, then closed."""
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=110, **({"bbox_inches": "tight"} if tight else {}))
    plt.close(fig)
    return atomic_write_bytes(path, buf.getvalue())


def _label(k: int, class_names: Sequence[str] | None) -> str:
    return class_names[k] if class_names is not None and 0 <= k < len(class_names) else str(k)


def save_image_grid(
    path: str | Path,
    natural: Tensor,
    adversarial: Tensor,
    labels: Tensor,
    pred_natural: Tensor,
    pred_adversarial: Tensor,
    class_names: Sequence[str] | None = None,
    n: int = 8,
    title: str | None = None,
) -> Path:
    """Two rows per figure: natural images (top) and adversarial ones (bottom), the first `n` samples.

    natural/adversarial: B x C x H x W float in [0, 1] (or uint8); captions "true / pred", a wrong
    prediction in red. Writes a PNG atomically.
    """
    k = min(n, natural.shape[0])
    if k == 0:
        raise ValueError("no images to plot")
    fig, axes = plt.subplots(2, k, figsize=(1.6 * k, 3.6), squeeze=False)
    for row, (imgs, preds, name) in enumerate(
        ((natural, pred_natural, "natural"), (adversarial, pred_adversarial, "adversarial"))
    ):
        for i in range(k):
            ax = axes[row][i]
            img = imgs[i].detach().cpu().float()
            if imgs.dtype == torch.uint8:
                img = img / 255
            img = img.clamp(0, 1).permute(1, 2, 0).numpy()
            if img.shape[2] == 1:
                ax.imshow(img[:, :, 0], cmap="gray", vmin=0, vmax=1)
            else:
                ax.imshow(img)
            t, p = int(labels[i]), int(preds[i])
            ax.set_title(
                f"{_label(t, class_names)} / {_label(p, class_names)}", fontsize=8, color="black" if t == p else "red"
            )
            ax.set_xticks([])
            ax.set_yticks([])
            if i == 0:
                ax.set_ylabel(name, fontsize=9)
    fig.suptitle(title or "true / predicted", fontsize=10)
    return save_png(fig, path)


def eps_text(eps: float | None, unit: float = 1.0) -> str:
    """eps (pixel units) as a reader of the dataset expects it: 'k/255' where the dataset's eps unit is 1/255
    (CIFAR-10, TinyImageNet), e.g. 8/255 for 0.0314; else the value, e.g. '0.3' (MNIST)."""
    if eps is None:
        return "?"
    if unit == 1.0 or eps == 0:
        return f"{eps:.4g}"
    k = float(eps) / unit
    return f"{round(k)}/{round(1 / unit)}" if abs(k - round(k)) < 1e-6 else f"{k:.3g}/{round(1 / unit)}"


def eps_axis(ax, eps: Sequence[float], unit: float = 1.0, norm: str = "L∞") -> None:
    """x axis of eps in pixel units: ticks at the eps values given (up to 12) read k/255 where the unit is 1/255."""
    xs = sorted({float(e) for e in eps})
    if 1 < len(xs) <= 12:
        ax.set_xticks(xs)
    if unit != 1.0 and xs:
        ax.xaxis.set_major_formatter(matplotlib.ticker.FuncFormatter(lambda v, _pos: eps_text(v, unit)))
        ax.set_xlabel(f"eps ({norm}, k/{round(1 / unit)})")
    else:
        ax.set_xlabel(f"eps ({norm}, pixel units)")


# line styles of the sweep plot: the per-sample worst case first, dashed and wide, under the attacks' lines
_WORST = dict(color="black", ls="--", lw=2.6, alpha=0.45, marker="", zorder=1)
_MARKERS = "osD^v<>"


def sweep_figure(
    eps: Sequence[float],
    acc: Mapping[str, Sequence[float]],
    clean_acc: float | None = None,
    xlabel: str | None = None,
    title: str | None = None,
    eps_unit: float = 1.0,
    norm: str = "L∞",
):
    """The Figure of `save_sweep_plot` (see there); the caller saves or closes it."""
    if not eps:
        raise ValueError("no eps values to plot")
    fig, ax = plt.subplots(figsize=(5.2, 3.6))
    order = sorted(range(len(eps)), key=lambda i: eps[i])
    xs = [eps[i] for i in order]
    names = sorted(acc, key=lambda k: k != "worst case")  # worst case drawn first, under the others
    for j, name in enumerate(names):
        ys = [100 * acc[name][i] for i in order]
        if name == "worst case":
            ax.plot(xs, ys, label="worst case (per image)", **_WORST)
        else:
            ax.plot(xs, ys, marker=_MARKERS[j % len(_MARKERS)], ms=5, lw=1.3, zorder=2, label=name)
    if clean_acc is not None:
        ax.axhline(100 * clean_acc, color="gray", linestyle=":", linewidth=1, label="clean", zorder=0)
    eps_axis(ax, xs, eps_unit, norm)
    if xlabel:
        ax.set_xlabel(xlabel)
    ax.set_ylabel("accuracy (%)")
    ax.set_ylim(-2, 102)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    if title:
        ax.set_title(title, fontsize=10)
    return fig


def save_sweep_plot(
    path: str | Path,
    eps: Sequence[float],
    acc: Mapping[str, Sequence[float]],
    clean_acc: float | None = None,
    xlabel: str | None = None,
    title: str | None = None,
    eps_unit: float = 1.0,
    norm: str = "L∞",
) -> Path:
    """Accuracy in % against eps (pixel units), one line per attack name in `acc` (accuracies as fractions 0..1),
    distinct markers; "worst case" (the per-sample worst case) dashed, wide and drawn first so that the attack
    that makes it stays visible; clean accuracy dotted. eps_unit 1/255: ticks read k/255."""
    return save_png(sweep_figure(eps, acc, clean_acc, xlabel, title, eps_unit, norm), path)
