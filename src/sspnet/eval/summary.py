"""From per-sample rows to what `evaluate` returns: the rows of one rank (`Rows`), gathered over ranks
(`gather_rows`), then aggregated per eps and attack with the per-sample worst case (`summarise`)."""

from __future__ import annotations

import math
import time
from collections import defaultdict
from collections.abc import Iterable
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor

from sspnet.distributed import get_world_size, is_distributed
from sspnet.eval.config import _NORM_P, EvalConfig
from sspnet.eval.flags import attack_note_flags, sanity_flags
from sspnet.eval.results import WORST, AttackStats, EpsResult, EvalResult


class Rows:
    """Per-sample rows, kept adversarial images and timings of one rank, batch by batch."""

    def __init__(self, device: torch.device):
        self.device = device
        self.rows: dict[str, list[Tensor]] = {}
        self.kept: dict[str, list[Tensor]] = {}
        self.timings: dict[str, float] = defaultdict(float)

    def add(self, key: str, value: Tensor) -> None:
        self.rows.setdefault(key, []).append(value.float())

    def put(self, key: str, logits: Tensor, y: Tensor) -> tuple[Tensor, Tensor]:
        """Record cross-entropy and prediction of a batch; returns (loss, misclassified)."""
        loss = F.cross_entropy(logits.float(), y, reduction="none")
        pred = logits.argmax(1)
        self.add(f"{key}/loss", loss)
        self.add(f"{key}/pred", pred)
        return loss, pred != y

    def keep(self, key: str, images: Tensor) -> None:
        self.kept.setdefault(key, []).append(images.detach().cpu())

    def tick(self) -> float:
        if self.device.type == "cuda":
            torch.cuda.synchronize(self.device)
        return time.perf_counter()


def row_keys(cfg: EvalConfig, names: list[str]) -> list[str]:
    """The per-sample row names of an evaluation of attacks `names` at every eps of cfg."""
    keys = ["clean/loss", "clean/pred"]
    for i in range(len(cfg.eps)):
        keys += [f"{i}/{name}/{k}" for name in names for k in ("loss", "pred", *_NORM_P)] + [f"{i}/worst/src"]
    return sorted(keys)


def gather_rows(rows: Rows, keys: list[str], local: Tensor, n: int, device: torch.device) -> dict[str, Tensor]:
    """Per-sample rows of this rank (its positions `local`) -> full length-n rows, same on every rank (CPU)."""
    mat = torch.zeros(len(keys), len(local), device=device)
    for r, k in enumerate(keys):
        if k in rows.rows:
            mat[r] = torch.cat(rows.rows[k]).to(device)
    if not is_distributed():
        return {k: mat[r].cpu() for r, k in enumerate(keys)}
    import torch.distributed as dist

    world = get_world_size()
    padded = torch.zeros(len(keys), math.ceil(n / world), device=device)
    padded[:, : mat.shape[1]] = mat
    parts = [torch.empty_like(padded) for _ in range(world)]
    dist.all_gather(parts, padded)
    full = torch.empty(len(keys), n)
    for r, part in enumerate(parts):
        full[:, r::world] = part[:, : len(range(r, n, world))].cpu()
    return {k: full[r] for r, k in enumerate(keys)}


def _stats(name: str, ps: dict[str, Tensor], key: str, time_s: float, params: dict[str, Any]) -> AttackStats:
    acc = float((ps[f"{key}/pred"].long() == ps["label"]).float().mean())
    vals = {p: ps[f"{key}/{p}"] for p in _NORM_P}
    return AttackStats(
        name,
        acc,
        float(ps[f"{key}/loss"].mean()),
        float(vals["linf"].mean()),
        float(vals["linf"].max()),
        float(vals["l2"].mean()),
        float(vals["l2"].max()),
        float(vals["l1"].mean()),
        float(vals["l1"].max()),
        time_s,
        params,
    )


def _eps_result(
    cfg: EvalConfig, names: list[str], ps: dict[str, Tensor], i: int, attacks: dict, timings: dict[str, float]
) -> EpsResult:
    """The aggregates at eps number i; adds the per-sample worst-case rows f"{i}/worst/..." to ps."""
    per = {}
    for name in names:
        a = attacks[(i, name)]
        params = {
            k: getattr(a, k)
            for k in ("alpha", "steps", "restarts", "copies", "random_start", "quantize", "early_stop", "queries")
            if hasattr(a, k)
        }
        per[name] = _stats(name, ps, f"{i}/{name}", timings[f"{i}/{name}"], params)
    src = ps[f"{i}/worst/src"].long()
    for key in ("loss", "pred", *_NORM_P):
        stacked = torch.stack([ps[f"{i}/{name}/{key}"] for name in names])
        ps[f"{i}/worst/{key}"] = stacked.gather(0, src.view(1, -1))[0]
    worst = _stats(WORST, ps, f"{i}/worst", sum(p.time_s for p in per.values()), {"attacks": names})
    counts = {name: int((src == j).sum()) for j, name in enumerate(names)}
    return EpsResult(cfg.eps[i], cfg.eps[i] / cfg.eps_unit, per, worst, counts)


def _grad_stats(attacks: Iterable, device: torch.device) -> dict[str, int]:
    """Input-gradient diagnostics summed over attacks (and ranks)."""
    grad = {"samples": 0, "zero_grad": 0, "nan_grad": 0}
    for a in attacks:
        for k, v in a.grad_stats().items():
            grad[k] += v
    if is_distributed():
        from sspnet.distributed import all_reduce_sum

        t = all_reduce_sum(torch.tensor([grad[k] for k in grad], dtype=torch.float64, device=device))
        grad = {k: int(v) for k, v in zip(grad, t.tolist())}
    return grad


def summarise(
    cfg: EvalConfig,
    names: list[str],
    ps: dict[str, Tensor],
    attacks: dict,
    timings: dict[str, float],
    world: int,
    device: torch.device,
    input_dim: int,
) -> EvalResult:
    """The EvalResult of the gathered per-sample rows `ps`: aggregates per eps and attack, the worst case,
    gradient diagnostics, timings and sanity flags (input_dim: pixels x channels of an image)."""
    results = [_eps_result(cfg, names, ps, i, attacks, timings) for i in range(len(cfg.eps))]
    clean_acc = float((ps["clean/pred"].long() == ps["label"]).float().mean())
    times = {
        "clean": timings["clean"],
        **{name: sum(timings[f"{i}/{name}"] for i in range(len(cfg.eps))) for name in names},
    }
    result = EvalResult(
        n=len(ps["label"]),
        world_size=world,
        clean_acc=clean_acc,
        clean_loss=float(ps["clean/loss"].mean()),
        results=results,
        flags=[],
        grad_stats=_grad_stats(attacks.values(), device),
        timings=times,
        config=cfg.to_dict(),
        per_sample=ps,
    )
    result.flags = attack_note_flags(attacks.values()) + sanity_flags(result, ps["label"], cfg.norm, input_dim)
    return result
