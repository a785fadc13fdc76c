"""Figures for `sspnet attack`: natural vs adversarial image grid, accuracy vs eps (matplotlib, Agg)."""
from __future__ import annotations

import io
from pathlib import Path
from typing import Mapping, Sequence

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import torch  # noqa: E402
from torch import Tensor  # noqa: E402

from sspnet.io.files import atomic_write_bytes  # noqa: E402


def _save(fig, path: str | Path) -> Path:
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=110, bbox_inches="tight")
    plt.close(fig)
    return atomic_write_bytes(path, buf.getvalue())


def _label(k: int, class_names: Sequence[str] | None) -> str:
    return class_names[k] if class_names is not None and 0 <= k < len(class_names) else str(k)


def save_image_grid(path: str | Path, natural: Tensor, adversarial: Tensor, labels: Tensor, pred_natural: Tensor,
                    pred_adversarial: Tensor, class_names: Sequence[str] | None = None, n: int = 8,
                    title: str | None = None) -> Path:
    """Two rows per figure: natural images (top) and adversarial ones (bottom), the first `n` samples.

    natural/adversarial: B x C x H x W float in [0, 1] (or uint8); captions "true / pred", a wrong
    prediction in red. Writes a PNG atomically.
    """
    k = min(n, natural.shape[0])
    if k == 0:
        raise ValueError("no images to plot")
    fig, axes = plt.subplots(2, k, figsize=(1.6 * k, 3.6), squeeze=False)
    for row, (imgs, preds, name) in enumerate(((natural, pred_natural, "natural"),
                                               (adversarial, pred_adversarial, "adversarial"))):
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
            ax.set_title(f"{_label(t, class_names)} / {_label(p, class_names)}", fontsize=8,
                         color="black" if t == p else "red")
            ax.set_xticks([])
            ax.set_yticks([])
            if i == 0:
                ax.set_ylabel(name, fontsize=9)
    fig.suptitle(title or "true / predicted", fontsize=10)
    return _save(fig, path)


def save_sweep_plot(path: str | Path, eps: Sequence[float], acc: Mapping[str, Sequence[float]],
                    clean_acc: float | None = None, xlabel: str = "eps", title: str | None = None) -> Path:
    """Accuracy (0..1) against eps, one line per attack name in `acc`; clean accuracy as a dashed line."""
    if not eps:
        raise ValueError("no eps values to plot")
    fig, ax = plt.subplots(figsize=(5.2, 3.6))
    order = sorted(range(len(eps)), key=lambda i: eps[i])
    xs = [eps[i] for i in order]
    for name, values in acc.items():
        ax.plot(xs, [values[i] for i in order], marker="o", label=name)
    if clean_acc is not None:
        ax.axhline(clean_acc, color="gray", linestyle="--", linewidth=1, label="clean")
    ax.set_xlabel(xlabel)
    ax.set_ylabel("accuracy")
    ax.set_ylim(-0.02, 1.02)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    if title:
        ax.set_title(title, fontsize=10)
    return _save(fig, path)
