"""The one rule for choosing n test images: class-stratified, deterministic and nested.

Test splits are often sorted by label (the embedded mnist5k test split is), so "the first n" or a prefix of
any fixed order can miss whole classes. `stratified_order` ranks every image so that each prefix holds the
classes in proportion to their frequency (counts within one image of n * n_c / N): within class c the images
are shuffled with a fixed seed and the k-th of them gets the key (k + 1/2) / n_c; sorting by key interleaves
the classes. `subset_indices(labels, n)` is the first n of that order, sorted, so a smaller subset is always
contained in a larger one and every table of a report is measured on images of every class.
`holdout_indices(labels, fraction, seed)` uses the same order to hold out a validation split (`sspnet train
--val-split`).
"""

from __future__ import annotations

import torch
from torch import Tensor

SUBSET_RULE = "stratified-v1"  # stored with every result, with the seed, so the indices can be regenerated


def stratified_order(labels: Tensor, seed: int = 0) -> Tensor:
    """A permutation of range(N) (int64, CPU) whose every prefix is class-stratified; labels: int N."""
    y = torch.as_tensor(labels).detach().cpu().long().view(-1)
    n = y.numel()
    gen = torch.Generator().manual_seed(int(seed))
    shuffled = torch.randperm(n, generator=gen)
    keys = torch.empty(n, dtype=torch.float64)
    for c in torch.unique(y).tolist():
        members = shuffled[y[shuffled] == c]  # class c in shuffled order
        k = members.numel()
        keys[members] = (torch.arange(k, dtype=torch.float64) + 0.5) / k
    # ties (equal keys across classes) broken by label, then by shuffled position: stable sorts, last key first
    order = shuffled
    order = order[torch.sort(y[order], stable=True).indices]
    return order[torch.sort(keys[order], stable=True).indices]


def subset_indices(labels: Tensor, n: int | None, seed: int = 0) -> Tensor:
    """Sorted indices (int64, CPU) of n class-stratified images of a split with these labels; all of them
    when n is None or >= N. Nested: subset_indices(labels, m) is a subset of subset_indices(labels, n), m <= n."""
    total = int(torch.as_tensor(labels).numel())
    if n is None or n >= total:
        return torch.arange(total)
    if isinstance(n, bool) or not isinstance(n, int) or n < 1:
        raise ValueError(f"number of images must be an integer >= 1 or None (all), got {n!r}")
    return stratified_order(labels, seed)[:n].sort().values


def holdout_indices(labels: Tensor, fraction: float, seed: int = 0) -> tuple[Tensor, Tensor]:
    """(kept, held out): sorted int64 CPU indices splitting a split with these labels in two, disjoint.

    The held-out part is the first round(fraction * N) images of `stratified_order(labels, seed)` (so it is
    class-stratified and nested in the fraction for a fixed seed); fraction 0 holds out nothing. ValueError
    when fraction is outside [0, 1) or holds out every image.
    """
    total = int(torch.as_tensor(labels).numel())
    if isinstance(fraction, bool) or not isinstance(fraction, (int, float)) or not 0 <= fraction < 1:
        raise ValueError(f"hold-out fraction must be a number in [0, 1), got {fraction!r}")
    n = int(round(fraction * total))
    if n >= total:
        raise ValueError(f"hold-out fraction {fraction} of {total} images leaves none")
    if n == 0:
        return torch.arange(total), torch.zeros(0, dtype=torch.long)
    held = stratified_order(labels, seed)[:n]
    mask = torch.ones(total, dtype=torch.bool)
    mask[held] = False
    return mask.nonzero().view(-1), held.sort().values


def class_counts(labels: Tensor, num_classes: int | None = None) -> list[int]:
    """Images per class (list indexed by label)."""
    y = torch.as_tensor(labels).detach().cpu().long().view(-1)
    k = num_classes if num_classes is not None else (int(y.max()) + 1 if y.numel() else 0)
    return torch.bincount(y, minlength=k).tolist()


def describe_subset(labels: Tensor, indices: Tensor, seed: int = 0) -> dict:
    """What a result stores about its images: the rule, seed, count, images per class and the indices."""
    idx = torch.as_tensor(indices).cpu().long()
    y = torch.as_tensor(labels).cpu().long()
    return {
        "rule": SUBSET_RULE,
        "seed": int(seed),
        "n": int(idx.numel()),
        "per_class": class_counts(y[idx], int(y.max()) + 1 if y.numel() else 0),
        "indices": idx.tolist(),
    }
