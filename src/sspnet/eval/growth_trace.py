"""The per-sample growth ratios through a model's blocks (`sample_ratios`): the features before and after every
block group and every single block of a clean and a perturbed batch (`trace_features`), and their ratio of
p-norms per sample (float64; p in 1, 2, inf). `sspnet.eval.growth.measure_growth` averages them."""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch
from torch import Tensor, nn

P_NAMES = ("1", "2", "inf")


def p_value(p: str | float | int) -> float:
    key = str(p).lower().replace("infinity", "inf")
    if key in ("1", "1.0"):
        return 1.0
    if key in ("2", "2.0"):
        return 2.0
    if key == "inf":
        return math.inf
    raise ValueError(f"unknown norm p={p!r}; valid: 1, 2, inf")


def p_name(p: str | float | int) -> str:
    """Canonical name of a norm order: '1', '2' or 'inf'."""
    v = p_value(p)
    return "inf" if math.isinf(v) else str(int(v))


def check_structure(model: nn.Module) -> None:
    for attr in ("normalize", "stem", "groups", "transitions"):
        if not hasattr(model, attr):
            raise ValueError(
                f"growth needs an sspnet model (normalize, stem, groups, transitions); "
                f"{type(model).__name__} has no .{attr}"
            )


@torch.no_grad()
def trace_features(model: nn.Module, x: Tensor) -> tuple[list[Tensor], list[Tensor], list[Tensor]]:
    """Feature maps of a batch x (B x C x H x W in [0, 1]).

    Returns (group_inputs, block_inputs, group_outputs): group_inputs[j] = h_j(x); block_inputs[k] = input of
    the k-th block in depth order (group by group); group_outputs[j] = G_j(h_j(x)). The output of block k is
    block_inputs[k + 1] within a group and group_outputs[j] for the last block of group j.
    """
    check_structure(model)
    h = model.stem(model.normalize(x))
    g_in, b_in, g_out = [], [], []
    for j, group in enumerate(model.groups):
        if j > 0:
            h = model.transitions[j - 1](h)
        g_in.append(h)
        for block in group:
            b_in.append(h)
            h = block(h)
        g_out.append(h)
    return g_in, b_in, g_out


def _block_outputs(model: nn.Module, b_in: list[Tensor], g_out: list[Tensor]) -> list[Tensor]:
    outs, k = [], 0
    for j, group in enumerate(model.groups):
        n = len(group)
        outs.extend(b_in[k + 1 : k + n])
        outs.append(g_out[j])
        k += n
    return outs


def _norms(d: Tensor, p: float) -> Tensor:
    return torch.linalg.vector_norm(d.reshape(d.shape[0], -1).double(), ord=p, dim=1)


@torch.no_grad()
def sample_ratios(
    model: nn.Module, x: Tensor, x_pert: Tensor, ps: Sequence[str | float] = P_NAMES
) -> dict[str, dict[str, Tensor]]:
    """Per-sample growth ratios of one batch.

    Returns {"groups": {p: B x n_groups}, "blocks": {p: B x n_blocks}} float64 tensors; an entry is NaN
    where the input difference of that group/block is exactly zero. The model is put in eval mode for the
    measurement and its mode restored.
    """
    if x.shape != x_pert.shape:
        raise ValueError(f"x and x_pert must have the same shape, got {tuple(x.shape)} and {tuple(x_pert.shape)}")
    was_training = model.training
    model.eval()
    try:
        gi, bi, go = trace_features(model, x)
        gi2, bi2, go2 = trace_features(model, x_pert)
    finally:
        model.train(was_training)
    bo, bo2 = _block_outputs(model, bi, go), _block_outputs(model, bi2, go2)
    out: dict[str, dict[str, Tensor]] = {"groups": {}, "blocks": {}}
    for p in ps:
        pv, name = p_value(p), p_name(p)
        for key, ins, ins2, outs, outs2 in (("groups", gi, gi2, go, go2), ("blocks", bi, bi2, bo, bo2)):
            cols = []
            for a, a2, b, b2 in zip(ins, ins2, outs, outs2):
                den = _norms(a2 - a, pv)
                num = _norms(b2 - b, pv)
                cols.append(torch.where(den > 0, num / den.clamp_min(1e-300), torch.full_like(num, math.nan)))
            out[key][name] = torch.stack(cols, dim=1) if cols else torch.zeros(x.shape[0], 0, dtype=torch.float64)
    return out
