"""Robustness evaluation: attacks over a test set, per-sample worst case, eps sweeps, sanity flags.

    result = evaluate(model, images, labels, EvalConfig(attack="all", eps=[8/255], alpha=2/255, n_images=1000))
    result.to_json("attack_all_8.json")
    result.accuracy("pgd", 8/255), result.correct("fgsm", 8/255)   # per attack and eps, see `EvalResult`

images: uint8 N x C x H x W (as `sspnet.data.load` returns) or float in [0, 1]; labels int64 N. eps and alpha
in pixel units. The images used are `n_images` of the split by the class-stratified rule of `sspnet.data.subsets`
(or the caller's `indices=`); `result.subset` records them. Under torchrun (torch.distributed initialised) each
rank attacks a disjoint slice of them (the i-th on rank i % world_size) and the per-sample results are
all-gathered, so every rank returns the same aggregate numbers; adversarial images stay on the rank that made them.

Early stop (`EvalConfig.early_stop`, on by default when no adversarial images are kept): images misclassified
clean are reported wrong without being attacked, and FGSM/PGD drop an image at its first misclassified iterate
(robust accuracy = worst case over iterates, as AutoAttack counts; never above the full attack's from the same
start); the kept images are then those iterates. early_stop=False runs every attack in full on every image.
"""
from __future__ import annotations

import dataclasses
import math
import time
from collections import defaultdict
from dataclasses import dataclass
from typing import Any, Iterable, Sequence

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from sspnet.attacks import ATTACKS, crafting_mode, make_attack, per_sample_norm
from sspnet.attacks.base import LEVELS, WorstCase, check_count, check_eps, check_norm, check_positive, sub_quantum
from sspnet.distributed import get_rank, get_world_size, is_distributed
from sspnet.eval.flags import attack_note_flags, breaking_eps, sanity_flags
from sspnet.eval.results import WORST, AttackStats, EpsResult, EvalResult, sweep_table
from sspnet.eval.selection import select_images
from sspnet.io.jsonio import to_jsonable

ALL_ATTACKS = ("fgsm", "pgd", "ball")  # what attack="all" runs (add autoattack explicitly: "all,autoattack")
_NORM_P = {"linf": math.inf, "l2": 2.0, "l1": 1.0}


@dataclass
class EvalConfig:
    """What `evaluate` runs. eps/alpha in pixel units; eps_unit only labels results in the CLI's units."""

    attack: str = "pgd"  # fgsm | pgd | ball | autoattack | all, or a comma list ("fgsm,pgd")
    norm: str = "linf"  # linf | l2
    eps: Sequence[float] = (0.3,)
    alpha: float | None = None  # PGD step; None: alpha_rel * eps (at least 1/255 when quantised linf)
    alpha_rel: float = 0.25
    steps: int = 20  # PGD iterations
    restarts: int = 1
    copies: int = 10  # noise-ball copies
    random_start: bool = False
    batch_size: int = 100
    n_images: int | None = None  # class-stratified subset of the split (`sspnet.data.subsets`); None: all
    subset_seed: int = 0  # seed of that subset rule
    device: str | None = None  # None: the model's device
    quantize: bool = True  # round to 8-bit levels after each step (the original's behaviour)
    seed: int = 0  # random starts and noise
    keep_adv: int | None = None  # adversarial images kept per eps and rank (CPU); None: all, 0: none
    keep_attack: str = WORST  # whose images are kept: "worst" (per-sample worst case) or an attack name
    eps_unit: float = 1.0
    early_stop: bool | None = None  # True: clean-misclassified images not attacked, fgsm/pgd stop per image at
    # the first misclassified iterate; False: every attack in full; None: True when no images are kept (keep_adv=0)
    queries: int = 5000  # square: model calls per image

    def attack_names(self) -> list[str]:
        """The attacks to run, in order ("all" expanded); ValueError for an unknown name."""
        names: list[str] = []
        for part in str(self.attack).lower().replace(" ", "").split(","):
            for name in (ALL_ATTACKS if part == "all" else (part,)):
                if name not in ATTACKS:
                    raise ValueError(f"unknown attack {part!r}; valid attacks: {', '.join(ATTACKS)}, all")
                if name not in names:
                    names.append(name)
        return names

    def validated(self) -> "EvalConfig":
        """A normalised copy; ValueError naming the bad field otherwise."""
        norm = check_norm(self.norm)
        eps = [self.eps] if isinstance(self.eps, (int, float)) else list(self.eps)
        if not eps:
            raise ValueError("eps: give at least one value")
        eps = [check_eps(e, norm) for e in eps]
        for e in eps:
            if sub_quantum(e, self.quantize):
                raise ValueError(f"eps={e:.4g} (pixel units) is below one 8-bit level and quantize is on, so every "
                                 f"perturbation rounds to 0: the smallest eps that moves a pixel is 1/255 = "
                                 f"{1 / LEVELS:.6f}; or set quantize=False")
        if self.alpha is not None and check_positive(self.alpha, "alpha") * LEVELS < 0.5 and self.quantize \
                and norm == "linf":
            raise ValueError(f"alpha={self.alpha:.4g} (pixel units) is below half an 8-bit level and quantize is on, "
                             "so every PGD step rounds back: use alpha >= 1/255 or quantize=False")
        check_positive(self.alpha_rel, "alpha_rel")
        for name, low in (("steps", 0), ("restarts", 1), ("copies", 1), ("batch_size", 1), ("queries", 1)):
            check_count(getattr(self, name), name, low)
        for name, low in (("n_images", 1), ("keep_adv", 0)):
            if getattr(self, name) is not None:
                check_count(getattr(self, name), name, low)
        names = self.attack_names()
        if self.keep_attack != WORST and self.keep_attack not in names:
            raise ValueError(f"keep_attack must be 'worst' or one of the attacks run ({', '.join(names)}), got "
                             f"{self.keep_attack!r}")
        return dataclasses.replace(self, norm=norm, eps=tuple(eps))

    def uses_early_stop(self) -> bool:
        """Whether `evaluate` stops early (see `early_stop`)."""
        return self.keep_adv == 0 if self.early_stop is None else bool(self.early_stop)

    def alpha_for(self, eps: float) -> float:
        """The PGD step at eps (pixel units)."""
        if self.alpha is not None:
            return float(self.alpha)
        alpha = eps * self.alpha_rel
        if self.quantize and self.norm == "linf":
            alpha = max(alpha, 1 / 255)  # a smaller step would be rounded away
        return max(alpha, 1e-12)

    def to_dict(self) -> dict[str, Any]:
        return to_jsonable(self)


class _Rows:
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


def _to_float(xb: Tensor, device: torch.device) -> Tensor:
    xb = xb.to(device, non_blocking=True)
    return xb.float().div_(255.0) if xb.dtype == torch.uint8 else xb.float()


def _model_device(model: nn.Module) -> torch.device:
    for t in list(model.parameters()) + list(model.buffers()):
        return t.device
    return torch.device("cpu")


def _check_inputs(images: Tensor, labels: Tensor) -> None:
    if not isinstance(images, Tensor) or not isinstance(labels, Tensor) or images.dim() != 4:
        raise ValueError("evaluate needs images N x C x H x W (uint8 or float in [0, 1]) and int64 labels N")
    if images.shape[0] != labels.shape[0]:
        raise ValueError(f"{images.shape[0]} images but {labels.shape[0]} labels")
    if images.is_floating_point() and images.numel() and (float(images.min()) < 0 or float(images.max()) > 1):
        raise ValueError("float images must be in [0, 1] (pixels; the model normalises inside)")


def evaluate(model: nn.Module, images: Tensor, labels: Tensor, config: EvalConfig, *,
             indices: Tensor | Sequence[int] | None = None, source: nn.Module | None = None) -> EvalResult:
    """Clean and adversarial accuracy/loss of `model` for every attack and eps of `config`.

    Args:
        model: takes float images in [0, 1]; run in eval mode (an SSPNet as its `inference_copy`), the caller's
            model and its mode untouched.
        images: uint8 N x C x H x W or float in [0, 1]; labels: int64 N (a whole split).
        config: the attacks, eps (pixel units), batch size, subset size `n_images`, what adversarial images to keep.
        indices: the images to use (indices into the split, chosen by the caller) instead of config.n_images.
        source: transfer evaluation: the attacks are crafted on this model (same input format) and `model` is
            evaluated on their images (no per-iterate early stop then: the iterates are judged by the source).
    Returns:
        EvalResult with aggregates per eps and attack, sanity flags, `subset`, per-sample rows and kept images.
    """
    cfg = config.validated()
    names = cfg.attack_names()
    _check_inputs(images, labels)
    sel, subset = select_images(labels, cfg.n_images, indices, cfg.subset_seed)
    if len(sel) == 0:
        raise ValueError("the evaluation set is empty (0 images); check the dataset split and --n-examples")
    device = torch.device(cfg.device) if cfg.device is not None else _model_device(model)
    rank, world = get_rank(), get_world_size()
    local = torch.arange(rank, len(sel), world)  # positions in `sel` handled by this rank
    gen = torch.Generator(device=device)
    gen.manual_seed(cfg.seed * 1000 + rank)
    net, crafter = _fast(model), _fast(source) if source is not None else None
    early = cfg.uses_early_stop()
    attacks = {(i, name): make_attack(name, crafter or net, eps, norm=cfg.norm, alpha=cfg.alpha_for(eps),
                                      steps=cfg.steps, restarts=cfg.restarts, copies=cfg.copies,
                                      random_start=cfg.random_start, quantize=cfg.quantize, generator=gen,
                                      seed=cfg.seed, early_stop=early and crafter is None, queries=cfg.queries)
               for i, eps in enumerate(cfg.eps) for name in names}
    rows, kept, t_start = _Rows(device), 0, time.perf_counter()
    with crafting_mode(net, "eval"), crafting_mode(crafter or net, "eval"):
        for start in range(0, len(local), cfg.batch_size):
            idx = sel[local[start:start + cfg.batch_size]]
            x = _to_float(images[idx.to(images.device)], device)
            y = labels[idx.to(labels.device)].to(device).long()
            keep = len(idx) if cfg.keep_adv is None else max(0, min(len(idx), cfg.keep_adv - kept))
            clean = _clean_batch(net, x, y, rows, check=start == 0)
            todo = clean.argmax(1) == y if early else torch.ones_like(y, dtype=torch.bool)
            _attack_batch(net, attacks, cfg, names, _Batch(x, y, clean, todo, crafter is not None), rows, keep)
            if keep:
                rows.keep("index", idx[:keep])
                kept += keep
    per_sample = _gather(rows, _row_keys(cfg, names), local, len(sel), device)
    per_sample["index"], per_sample["label"] = sel.clone(), labels[sel.to(labels.device)].cpu().long()
    result = _summarise(cfg, names, per_sample, attacks, rows.timings, world, device, int(images[0].numel()))
    result.timings["total"] = time.perf_counter() - t_start
    result.subset = subset
    result.adversarial = {k: torch.cat(v) for k, v in rows.kept.items()}
    result.model = dict(getattr(model, "config", {}) or {}) or None
    return result


def _fast(model: nn.Module) -> nn.Module:
    from sspnet.nn.models import SSPNet, inference_copy

    return inference_copy(model) if isinstance(model, SSPNet) else model  # BatchNorm folded, fast layout


def _clean_batch(net: nn.Module, x: Tensor, y: Tensor, rows: _Rows, check: bool) -> Tensor:
    """Clean rows of a batch; returns the logits B x K."""
    t0 = rows.tick()
    with torch.no_grad():
        logits = net(x)
    if check and (int(y.max()) >= logits.shape[1] or int(y.min()) < 0):
        raise ValueError(f"labels reach {int(y.max())} but the model has {logits.shape[1]} classes: "
                         "wrong dataset for this model?")
    rows.put("clean", logits, y)
    rows.timings["clean"] += rows.tick() - t0
    return logits


@dataclass
class _Batch:
    """One batch: images B x C x H x W, labels B, clean logits B x K, which images to attack (bool B; the others
    keep x and its clean logits), and whether the attacks are crafted on another model (transfer)."""

    x: Tensor
    y: Tensor
    clean: Tensor
    todo: Tensor
    transfer: bool


def _run_attack(net: nn.Module, attack, b: _Batch) -> tuple[Tensor, Tensor]:
    """(x_adv, the evaluated model's logits of x_adv) of one attack on the batch's images to attack."""
    if bool(b.todo.all()):
        x_sub, y_sub = b.x, b.y
    elif not bool(b.todo.any()):
        return b.x.clone(), b.clean.clone()
    else:
        x_sub, y_sub = b.x[b.todo], b.y[b.todo]
    adv, logits = attack.run(x_sub, y_sub)
    if b.transfer:
        with torch.no_grad():
            logits = net(adv)
    if x_sub is b.x:
        return adv, logits
    x_adv, all_logits = b.x.clone(), b.clean.clone()
    x_adv[b.todo], all_logits[b.todo] = adv, logits.to(all_logits.dtype)
    return x_adv, all_logits


def _attack_batch(net: nn.Module, attacks: dict, cfg: EvalConfig, names: list[str], b: _Batch,
                  rows: _Rows, keep: int) -> None:
    """Every attack at every eps on one batch: per-sample rows, the worst-case source, the kept images."""
    x, y = b.x, b.y
    for i in range(len(cfg.eps)):
        worst, src = WorstCase(), torch.zeros_like(y)
        for j, name in enumerate(names):
            t0 = rows.tick()
            x_adv, logits = _run_attack(net, attacks[(i, name)], b)
            rows.timings[f"{i}/{name}"] += rows.tick() - t0
            loss, wrong = rows.put(f"{i}/{name}", logits, y)
            d = x_adv - x
            for p_name, p in _NORM_P.items():
                rows.add(f"{i}/{name}/{p_name}", per_sample_norm(d, p))
            src[worst.update(x_adv, loss, wrong)] = j
            if keep and name == cfg.keep_attack:
                rows.keep(f"eps{i}", x_adv[:keep])
        rows.add(f"{i}/worst/src", src)
        if keep and cfg.keep_attack == WORST:
            rows.keep(f"eps{i}", worst.x[:keep])


def _row_keys(cfg: EvalConfig, names: list[str]) -> list[str]:
    keys = ["clean/loss", "clean/pred"]
    for i in range(len(cfg.eps)):
        keys += [f"{i}/{name}/{k}" for name in names for k in ("loss", "pred", *_NORM_P)] + [f"{i}/worst/src"]
    return sorted(keys)


def _gather(rows: _Rows, keys: list[str], local: Tensor, n: int, device: torch.device) -> dict[str, Tensor]:
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
    padded[:, :mat.shape[1]] = mat
    parts = [torch.empty_like(padded) for _ in range(world)]
    dist.all_gather(parts, padded)
    full = torch.empty(len(keys), n)
    for r, part in enumerate(parts):
        full[:, r::world] = part[:, :len(range(r, n, world))].cpu()
    return {k: full[r] for r, k in enumerate(keys)}


def _stats(name: str, ps: dict[str, Tensor], key: str, time_s: float, params: dict[str, Any]) -> AttackStats:
    acc = float((ps[f"{key}/pred"].long() == ps["label"]).float().mean())
    vals = {p: ps[f"{key}/{p}"] for p in _NORM_P}
    return AttackStats(name, acc, float(ps[f"{key}/loss"].mean()), float(vals["linf"].mean()),
                       float(vals["linf"].max()), float(vals["l2"].mean()), float(vals["l2"].max()),
                       float(vals["l1"].mean()), float(vals["l1"].max()), time_s, params)


def _eps_result(cfg: EvalConfig, names: list[str], ps: dict[str, Tensor], i: int, attacks: dict,
                timings: dict[str, float]) -> EpsResult:
    """The aggregates at eps number i; adds the per-sample worst-case rows f"{i}/worst/..." to ps."""
    per = {}
    for name in names:
        a = attacks[(i, name)]
        params = {k: getattr(a, k) for k in ("alpha", "steps", "restarts", "copies", "random_start", "quantize",
                                             "early_stop", "queries") if hasattr(a, k)}
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


def _summarise(cfg: EvalConfig, names: list[str], ps: dict[str, Tensor], attacks: dict,
               timings: dict[str, float], world: int, device: torch.device, input_dim: int) -> EvalResult:
    results = [_eps_result(cfg, names, ps, i, attacks, timings) for i in range(len(cfg.eps))]
    clean_acc = float((ps["clean/pred"].long() == ps["label"]).float().mean())
    times = {"clean": timings["clean"], **{name: sum(timings[f"{i}/{name}"] for i in range(len(cfg.eps)))
                                             for name in names}}
    result = EvalResult(n=len(ps["label"]), world_size=world, clean_acc=clean_acc,
                        clean_loss=float(ps["clean/loss"].mean()), results=results, flags=[],
                        grad_stats=_grad_stats(attacks.values(), device), timings=times, config=cfg.to_dict(),
                        per_sample=ps)
    result.flags = attack_note_flags(attacks.values()) + sanity_flags(result, ps["label"], cfg.norm, input_dim)
    return result


__all__ = ["ALL_ATTACKS", "AttackStats", "EpsResult", "EvalConfig", "EvalResult", "breaking_eps", "evaluate",
           "sanity_flags", "sweep_table"]
