"""Robustness evaluation: attacks over a test set, per-sample worst case, eps sweeps, sanity flags.

    result = evaluate(model, images, labels, EvalConfig(attack="all", eps=[8/255], alpha=2/255))
    result.to_json("attack_all_8.json")

images: uint8 N x C x H x W (as `sspnet.data.load` returns) or float in [0, 1]; labels int64 N. eps and alpha
in pixel units. Under torchrun (torch.distributed initialised) each rank attacks a disjoint slice of the set
(sample i on rank i % world_size) and the per-sample results are all-gathered, so every rank returns the same
aggregate numbers; the adversarial images stay on the rank that made them.
"""
from __future__ import annotations

import dataclasses
import math
import time
from dataclasses import dataclass, field
from typing import Any, Sequence

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from sspnet.attacks import ATTACKS, crafting_mode, make_attack, per_sample_norm
from sspnet.attacks.base import WorstCase, check_count, check_eps, check_norm, check_positive
from sspnet.distributed import get_rank, get_world_size, is_distributed
from sspnet.io.files import atomic_write_json, provenance

ALL_ATTACKS = ("fgsm", "pgd", "ball")  # what attack="all" runs (add autoattack explicitly: "all,autoattack")
GRADIENT_ATTACKS = ("fgsm", "pgd", "autoattack")
_NORM_P = {"linf": math.inf, "l2": 2.0, "l1": 1.0}


@dataclass
class EvalConfig:
    """What to run. eps/alpha in pixel units; eps_unit only labels results in the CLI's units."""

    attack: str = "pgd"  # fgsm | pgd | ball | autoattack | all, or a comma list ("fgsm,pgd")
    norm: str = "linf"  # linf | l2
    eps: Sequence[float] = (0.3,)
    alpha: float | None = None  # PGD step; None: alpha_rel * eps (at least 1/255 when quantised linf)
    alpha_rel: float = 0.25
    iters: int = 20
    restarts: int = 1
    copies: int = 10  # noise-ball copies
    random_start: bool = False
    bsize: int = 100
    n_examples: int | None = None  # the first n test images (None: all)
    device: str | None = None  # None: the model's device
    quantize: bool = True  # round to 8-bit levels after each step (the original's behaviour)
    seed: int = 0
    keep_adv: int | None = None  # adversarial images kept per eps (worst case, on CPU); None: all, 0: none
    eps_unit: float = 1.0

    def attack_names(self) -> list[str]:
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
        if self.alpha is not None:
            check_positive(self.alpha, "alpha")
        check_positive(self.alpha_rel, "alpha_rel")
        check_count(self.iters, "iters", 0)
        check_count(self.restarts, "restarts", 1)
        check_count(self.copies, "copies", 1)
        check_count(self.bsize, "bsize", 1)
        if self.n_examples is not None:
            check_count(self.n_examples, "n_examples", 1)
        if self.keep_adv is not None:
            check_count(self.keep_adv, "keep_adv", 0)
        self.attack_names()
        return dataclasses.replace(self, norm=norm, eps=tuple(eps))

    def alpha_for(self, eps: float) -> float:
        if self.alpha is not None:
            return float(self.alpha)
        alpha = eps * self.alpha_rel
        if self.quantize and self.norm == "linf":
            alpha = max(alpha, 1 / 255)  # a smaller step would be rounded away
        return max(alpha, 1e-12)

    def to_dict(self) -> dict[str, Any]:
        d = dataclasses.asdict(self)
        d["eps"] = list(d["eps"])
        return d


@dataclass
class AttackStats:
    """One attack at one eps: accuracy, mean cross-entropy, perturbation sizes (pixel units), seconds."""

    attack: str
    acc: float
    loss: float
    linf_mean: float
    linf_max: float
    l2_mean: float
    l2_max: float
    l1_mean: float
    l1_max: float
    time_s: float
    params: dict[str, Any] = field(default_factory=dict)


@dataclass
class EpsResult:
    """All attacks at one eps, plus the per-sample worst case across them (`worst`)."""

    eps: float  # pixel units
    eps_cli: float  # eps / eps_unit
    attacks: dict[str, AttackStats]
    worst: AttackStats
    worst_source: dict[str, int]  # samples whose worst case came from each attack


@dataclass
class EvalResult:
    n: int
    world_size: int
    clean_acc: float
    clean_loss: float
    results: list[EpsResult]
    flags: list[dict[str, Any]]
    grad_stats: dict[str, int]
    timings: dict[str, float]
    config: dict[str, Any]
    model: dict[str, Any] | None = None
    provenance: dict[str, Any] = field(default_factory=provenance)
    # not in the JSON: per-sample tensors (gathered, length n) and this rank's adversarial images
    per_sample: dict[str, Tensor] = field(default_factory=dict, repr=False)
    adversarial: dict[str, Tensor] = field(default_factory=dict, repr=False)

    def to_dict(self) -> dict[str, Any]:
        skip = {"per_sample", "adversarial"}
        return {f.name: _plain(getattr(self, f.name)) for f in dataclasses.fields(self) if f.name not in skip}

    def to_json(self, path) -> None:
        atomic_write_json(path, self.to_dict())

    def at(self, eps: float) -> EpsResult:
        return min(self.results, key=lambda r: abs(r.eps - eps))


def _plain(obj: Any) -> Any:
    if dataclasses.is_dataclass(obj):
        return {f.name: _plain(getattr(obj, f.name)) for f in dataclasses.fields(obj)}
    if isinstance(obj, dict):
        return {str(k): _plain(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [_plain(v) for v in obj]
    if isinstance(obj, float) and not math.isfinite(obj):
        return None
    return obj


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def _to_float(xb: Tensor, device: torch.device) -> Tensor:
    xb = xb.to(device, non_blocking=True)
    return xb.float().div_(255.0) if xb.dtype == torch.uint8 else xb.float()


def _model_device(model: nn.Module) -> torch.device:
    for t in list(model.parameters()) + list(model.buffers()):
        return t.device
    return torch.device("cpu")


def evaluate(model: nn.Module, images: Tensor, labels: Tensor, config: EvalConfig) -> EvalResult:
    """Clean and adversarial accuracy/loss of `model` on (images, labels) for every attack and eps.

    The model runs in eval mode (its own mode is restored afterwards). Returns an `EvalResult` with sanity flags.
    """
    cfg = config.validated()
    names = cfg.attack_names()
    if not isinstance(images, Tensor) or not isinstance(labels, Tensor) or images.dim() != 4:
        raise ValueError("evaluate needs images N x C x H x W (uint8 or float in [0, 1]) and int64 labels N")
    if images.shape[0] != labels.shape[0]:
        raise ValueError(f"{images.shape[0]} images but {labels.shape[0]} labels")
    sel = subset_indices(images.shape[0], cfg.n_examples)
    n = len(sel)
    if n == 0:
        raise ValueError("the evaluation set is empty (0 images); check the dataset split and --n-examples")
    if images.is_floating_point() and (float(images.min()) < 0 or float(images.max()) > 1):
        raise ValueError("float images must be in [0, 1] (pixels; the model normalises inside)")
    device = torch.device(cfg.device) if cfg.device is not None else _model_device(model)
    rank, world = get_rank(), get_world_size()
    local = torch.arange(rank, n, world)  # positions in `sel` handled by this rank
    gen = torch.Generator(device=device)
    gen.manual_seed(cfg.seed * 1000 + rank)
    from sspnet.nn.models import SSPNet, inference_copy

    net = inference_copy(model) if isinstance(model, SSPNet) else model  # BatchNorm folded, fast layout
    attacks = {(i, name): make_attack(name, net, eps, norm=cfg.norm, alpha=cfg.alpha_for(eps), steps=cfg.iters,
                                      restarts=cfg.restarts, copies=cfg.copies, random_start=cfg.random_start,
                                      quantize=cfg.quantize, generator=gen, seed=cfg.seed)
               for i, eps in enumerate(cfg.eps) for name in names}
    rows: dict[str, list[Tensor]] = {}
    adv: dict[str, list[Tensor]] = {}
    timings = {"clean": 0.0, **{f"{i}/{name}": 0.0 for i in range(len(cfg.eps)) for name in names}}
    kept = 0
    t_start = time.perf_counter()
    with crafting_mode(net, "eval"):
        for start in range(0, len(local), cfg.bsize):
            idx = sel[local[start:start + cfg.bsize]]
            x = _to_float(images[idx.to(images.device)], device)
            y = labels[idx.to(labels.device)].to(device).long()
            t0 = time.perf_counter()
            with torch.no_grad():
                logits = net(x)
            if start == 0 and (int(y.max()) >= logits.shape[1] or int(y.min()) < 0):
                raise ValueError(f"labels reach {int(y.max())} but the model has {logits.shape[1]} classes: "
                                 "wrong dataset for this model?")
            _put(rows, "clean", logits, y)
            _sync(device)
            timings["clean"] += time.perf_counter() - t0
            keep = len(idx) if cfg.keep_adv is None else max(0, min(len(idx), cfg.keep_adv - kept))
            for i, _eps in enumerate(cfg.eps):
                worst, src = WorstCase(), torch.zeros_like(y)
                for j, name in enumerate(names):
                    t0 = time.perf_counter()
                    x_adv = attacks[(i, name)](x, y)
                    with torch.no_grad():
                        logits = net(x_adv)
                    _sync(device)
                    timings[f"{i}/{name}"] += time.perf_counter() - t0
                    loss, wrong = _put(rows, f"{i}/{name}", logits, y)
                    d = x_adv - x
                    for p_name, p in _NORM_P.items():
                        rows.setdefault(f"{i}/{name}/{p_name}", []).append(per_sample_norm(d, p).float())
                    src[worst.update(x_adv, loss, wrong)] = j
                rows.setdefault(f"{i}/worst/src", []).append(src.float())
                if keep:
                    adv.setdefault(f"eps{i}", []).append(worst.x[:keep].detach().cpu())
            if keep:
                adv.setdefault("index", []).append(idx[:keep].cpu())
                kept += keep
    per_sample = _gather({k: torch.cat(v) for k, v in rows.items()}, local, n, device)
    result = _summarise(cfg, names, per_sample, labels[sel.to(labels.device)], attacks, timings, world, device,
                        int(images[0].numel()))
    result.timings["total"] = time.perf_counter() - t_start
    result.adversarial = {k: torch.cat(v) for k, v in adv.items()}
    result.per_sample["index"] = sel.clone()
    result.model = dict(getattr(model, "config", {}) or {}) or None
    return result


def subset_indices(total: int, n: int | None) -> Tensor:
    """n evenly spaced indices of range(total) (all when n is None or >= total): every class of a
    class-sorted test set is represented."""
    if n is None or n >= total:
        return torch.arange(total)
    return torch.arange(n) * total // n


def _put(rows: dict[str, list[Tensor]], key: str, logits: Tensor, y: Tensor) -> tuple[Tensor, Tensor]:
    loss = F.cross_entropy(logits.float(), y, reduction="none")
    pred = logits.argmax(1)
    rows.setdefault(f"{key}/loss", []).append(loss)
    rows.setdefault(f"{key}/pred", []).append(pred.float())
    return loss, pred != y


def _gather(local_rows: dict[str, Tensor], local: Tensor, n: int, device: torch.device) -> dict[str, Tensor]:
    """Per-sample rows of this rank (its indices `local`) -> full length-n rows, same on every rank (CPU)."""
    keys = sorted(local_rows)
    mat = torch.stack([local_rows[k].float() for k in keys]) if keys else torch.zeros(0, len(local))
    if not is_distributed():
        return {k: mat[r].cpu() for r, k in enumerate(keys)}
    import torch.distributed as dist

    world = get_world_size()
    m = math.ceil(n / world)
    padded = torch.zeros(len(keys), m, device=device)
    padded[:, :mat.shape[1]] = mat.to(device)
    parts = [torch.empty_like(padded) for _ in range(world)]
    dist.all_gather(parts, padded)
    full = torch.empty(len(keys), n)
    for r, part in enumerate(parts):
        cnt = len(range(r, n, world))
        full[:, r::world] = part[:, :cnt].cpu()
    return {k: full[r] for r, k in enumerate(keys)}


def _stats(name: str, ps: dict[str, Tensor], key: str, labels: Tensor, time_s: float,
           params: dict[str, Any]) -> AttackStats:
    acc = float((ps[f"{key}/pred"] == labels.cpu().float()).float().mean())
    vals = {p: ps[f"{key}/{p}"] for p in _NORM_P}
    return AttackStats(name, acc, float(ps[f"{key}/loss"].mean()), float(vals["linf"].mean()),
                       float(vals["linf"].max()), float(vals["l2"].mean()), float(vals["l2"].max()),
                       float(vals["l1"].mean()), float(vals["l1"].max()), time_s, params)


def _summarise(cfg: EvalConfig, names: list[str], ps: dict[str, Tensor], labels: Tensor, attacks: dict,
               timings: dict[str, float], world: int, device: torch.device, input_dim: int) -> EvalResult:
    n = labels.shape[0]
    y = labels.cpu().float()
    results = []
    for i, eps in enumerate(cfg.eps):
        per = {}
        for name in names:
            a = attacks[(i, name)]
            params = {k: getattr(a, k) for k in ("alpha", "steps", "restarts", "copies", "random_start",
                                                  "quantize") if hasattr(a, k)}
            per[name] = _stats(name, ps, f"{i}/{name}", y, timings[f"{i}/{name}"], params)
        src = ps[f"{i}/worst/src"].long()
        for key in ("loss", "pred", *_NORM_P):
            stacked = torch.stack([ps[f"{i}/{name}/{key}"] for name in names])
            ps[f"{i}/worst/{key}"] = stacked.gather(0, src.view(1, -1))[0]
        worst = _stats("worst", ps, f"{i}/worst", y, sum(p.time_s for p in per.values()), {"attacks": names})
        counts = {name: int((src == j).sum()) for j, name in enumerate(names)}
        results.append(EpsResult(eps, eps / cfg.eps_unit, per, worst, counts))
    clean_acc = float((ps["clean/pred"] == y).float().mean())
    grad = {"samples": 0, "zero_grad": 0, "nan_grad": 0}
    for a in attacks.values():
        for k, v in a.grad_stats().items():
            grad[k] += v
    if is_distributed():
        from sspnet.distributed import all_reduce_sum

        t = all_reduce_sum(torch.tensor([grad["samples"], grad["zero_grad"], grad["nan_grad"]],
                                        dtype=torch.float64, device=device))
        grad = {"samples": int(t[0]), "zero_grad": int(t[1]), "nan_grad": int(t[2])}
    times = {"clean": timings["clean"], **{name: sum(timings[f"{i}/{name}"] for i in range(len(cfg.eps)))
                                             for name in names}}
    result = EvalResult(n=n, world_size=world, clean_acc=clean_acc, clean_loss=float(ps["clean/loss"].mean()),
                        results=results, flags=[], grad_stats=grad, timings=times, config=cfg.to_dict(),
                        per_sample=ps)
    result.flags = sanity_flags(result, labels, cfg.norm, input_dim)
    return result


def breaking_eps(norm: str, input_dim: int | None) -> float:
    """An eps at which every image can be moved to the same mid-grey image: linf 0.5, l2 0.5 * sqrt(d)."""
    if norm == "linf":
        return 0.5
    return 0.5 * math.sqrt(input_dim) if input_dim else math.inf


def sanity_flags(result: EvalResult, labels: Tensor, norm: str, input_dim: int | None = None
                 ) -> list[dict[str, Any]]:
    """Warnings after AutoAttack's checks; each {"flag", "eps", "message"} (eps in the CLI's units)."""
    flags: list[dict[str, Any]] = []

    def add(flag: str, eps: float | None, message: str) -> None:
        flags.append({"flag": flag, "eps": eps, "message": message})

    n = max(result.n, 1)
    majority = float(torch.bincount(labels.cpu().long()).max()) / n if labels.numel() else 0.0
    for r in result.results:
        a = r.attacks
        if "pgd" in a and "fgsm" in a and a["pgd"].acc > a["fgsm"].acc:
            add("pgd_weaker_than_fgsm", r.eps_cli, f"PGD accuracy {a['pgd'].acc:.2%} > FGSM {a['fgsm'].acc:.2%} at "
                f"eps {r.eps_cli:g}: too few iterations or too small a step, or gradient masking")
        grads = [a[k].acc for k in GRADIENT_ATTACKS if k in a]
        if "ball" in a and grads and a["ball"].acc < min(grads):
            add("noise_beats_gradient", r.eps_cli, f"random noise ({a['ball'].acc:.2%}) beats the gradient attacks "
                f"({min(grads):.2%}) at eps {r.eps_cli:g}: likely gradient masking")
        if r.eps >= breaking_eps(norm, input_dim) and r.worst.acc > majority + 0.05:
            add("high_acc_at_large_eps", r.eps_cli, f"accuracy {r.worst.acc:.2%} at eps {r.eps_cli:g}, where every "
                f"image can be turned into the same grey image (expected <= {majority:.2%}): the attack is broken "
                "or gradients are masked")
    ordered = sorted(result.results, key=lambda r: r.eps)
    for lo, hi in zip(ordered, ordered[1:]):
        if hi.eps > lo.eps and hi.worst.acc > lo.worst.acc:
            add("acc_not_decreasing", hi.eps_cli, f"accuracy rises with eps: {lo.worst.acc:.2%} at eps "
                f"{lo.eps_cli:g} but {hi.worst.acc:.2%} at eps {hi.eps_cli:g}")
    if ordered and ordered[0].eps > 0 and ordered[0].worst.acc > result.clean_acc:
        add("acc_not_decreasing", ordered[0].eps_cli, f"adversarial accuracy {ordered[0].worst.acc:.2%} above "
            f"clean {result.clean_acc:.2%}")
    g = result.grad_stats
    if g["nan_grad"]:
        add("nan_input_gradients", None, f"{g['nan_grad']} of {g['samples']} samples had NaN input gradients")
    if g["samples"] and g["zero_grad"] > 0.01 * g["samples"]:
        add("zero_input_gradients", None, f"{g['zero_grad']} of {g['samples']} samples had an all-zero input "
            "gradient (saturated softmax or gradient masking; try AutoAttack)")
    return flags


def sweep_table(result: EvalResult, fmt: str = "md") -> str:
    """Accuracy per eps and attack as a markdown (fmt="md") or CSV (fmt="csv") table."""
    names = list(result.results[0].attacks) if result.results else []
    head = ["eps", *names, "worst"]
    body = [[f"{r.eps_cli:g}", *(f"{r.attacks[k].acc:.4f}" for k in names), f"{r.worst.acc:.4f}"]
            for r in sorted(result.results, key=lambda r: r.eps)]
    if fmt == "csv":
        return "\n".join(",".join(row) for row in [head, *body]) + "\n"
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    lines += ["| " + " | ".join(row) + " |" for row in body]
    return "\n".join(lines) + "\n"
