"""Which test images a result uses: the `sspnet.data.subsets` rule (class-stratified, nested) or the caller's
explicit indices, and the description every result stores (rule, seed, n, images per class, indices)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch
from torch import Tensor

from sspnet.data.subsets import describe_subset, subset_indices

GIVEN_RULE = "given"  # indices chosen by the caller that are not the rule's own subset of that size


def select_images(
    labels: Tensor, n_images: int | None = None, indices: Tensor | Sequence[int] | None = None, seed: int = 0
) -> tuple[Tensor, dict[str, Any]]:
    """The images to use out of a split and their description.

    Args:
        labels: int N, the labels of the whole split.
        n_images: how many, by `sspnet.data.subsets.subset_indices` (class-stratified, deterministic, nested);
            None: all N.
        indices: explicit image indices (any order, no repeats) instead of n_images.
        seed: seed of the subset rule.
    Returns:
        (indices, description): sorted int64 CPU indices into the split, and {"rule", "seed", "n", "per_class",
        "indices"}; rule "given" when explicit indices are not the rule's own subset of that size.
    """
    total = int(labels.shape[0])
    if indices is None:
        idx = subset_indices(labels, n_images, seed)
        return idx, describe_subset(labels, idx, seed)
    if n_images is not None:
        raise ValueError("give either n_images or indices (the images to use), not both")
    idx = _check_indices(indices, total)
    desc = describe_subset(labels, idx, seed)
    if not torch.equal(idx, subset_indices(labels, int(idx.numel()), seed)):
        desc["rule"] = GIVEN_RULE
    return idx, desc


def _check_indices(indices: Tensor | Sequence[int], total: int) -> Tensor:
    idx = torch.as_tensor(indices).detach().cpu()
    if idx.dtype.is_floating_point or idx.dtype == torch.bool or idx.dim() != 1:
        raise ValueError(
            f"indices must be a 1-D sequence of integer image indices, got dtype {idx.dtype} and "
            f"shape {tuple(idx.shape)}"
        )
    idx = idx.long().sort().values
    if idx.numel() and (int(idx[0]) < 0 or int(idx[-1]) >= total):
        raise ValueError(
            f"indices must lie in [0, {total}) (the split has {total} images), got {int(idx[0])}..{int(idx[-1])}"
        )
    if idx.numel() > 1 and bool((idx[1:] == idx[:-1]).any()):
        raise ValueError("indices must not repeat an image")
    return idx


def positions(index: Tensor, wanted: Tensor | Sequence[int], what: str = "the result") -> Tensor:
    """Positions in `index` (sorted int64 image indices) of the image indices `wanted`; ValueError naming the
    first image that is not there."""
    want = torch.as_tensor(wanted).detach().cpu().long().view(-1)
    index = index.cpu().long()
    pos = torch.searchsorted(index, want).clamp_(max=max(index.numel() - 1, 0))
    hit = index[pos] == want if index.numel() else torch.zeros_like(want, dtype=torch.bool)
    if not bool(hit.all()):
        missing = int(want[~hit][0])
        raise ValueError(
            f"image {missing} is not in {what} (it holds {index.numel()} images); pick indices from result.indices"
        )
    return pos
