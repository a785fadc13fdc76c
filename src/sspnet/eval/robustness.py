"""Robustness evaluation: attacks over a test set, per-sample worst case, eps sweeps, sanity flags.

    result = evaluate(model, images, labels, EvalConfig(attack="all", eps=[8/255], alpha=2/255, n_images=1000))
    # or EvalConfig(attack="pgd", threat=ThreatModel(eps=8/255, steps=10, restarts=2), eps=[4/255, 8/255])
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

import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import torch
from torch import Tensor, nn

from sspnet.attacks import crafting_mode, per_sample_norm
from sspnet.attacks.base import WorstCase
from sspnet.distributed import get_rank, get_world_size
from sspnet.eval.config import _NORM_P, ALL_ATTACKS, EvalConfig  # noqa: F401  (EvalConfig: re-exported)
from sspnet.eval.flags import breaking_eps, sanity_flags
from sspnet.eval.results import WORST, AttackStats, EpsResult, EvalResult, sweep_table
from sspnet.eval.selection import select_images
from sspnet.eval.summary import Rows, gather_rows, row_keys, summarise
from sspnet.io.progress import ProgressCallback


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


def evaluate(
    model: nn.Module,
    images: Tensor,
    labels: Tensor,
    config: EvalConfig,
    *,
    indices: Tensor | Sequence[int] | None = None,
    source: nn.Module | None = None,
    progress: ProgressCallback = None,
) -> EvalResult:
    """Clean and adversarial accuracy/loss of `model` for every attack and eps of `config`.

    Args:
        model: takes float images in [0, 1]; run in eval mode (an SSPNet as its `inference_copy`), the caller's
            model and its mode untouched.
        images: uint8 N x C x H x W or float in [0, 1]; labels: int64 N (a whole split).
        config: the attacks, eps (pixel units), batch size, subset size `n_images`, what adversarial images to keep.
        indices: the images to use (indices into the split, chosen by the caller) instead of config.n_images.
        source: transfer evaluation: the attacks are crafted on this model (same input format) and `model` is
            evaluated on their images (no per-iterate early stop then: the iterates are judged by the source).
        progress: None (silent) or `progress(done, total, note)` (`sspnet.io.progress`), called after every attack
            on every batch (and per AutoAttack stage): done / total count image-attacks of this rank (images x
            eps x attacks), the note names the attack, eps and the images it has done.
    Returns:
        EvalResult with aggregates per eps and attack, sanity flags, `subset`, per-sample rows and kept images.
    """
    cfg = config.validated()
    names = cfg.attack_names()
    _check_inputs(images, labels)
    sel, subset = select_images(labels, cfg.n_images, indices, cfg.subset_seed)
    if len(sel) == 0:
        raise ValueError("the evaluation set is empty (0 images); check the dataset split and --n-images")
    device = torch.device(cfg.device) if cfg.device is not None else _model_device(model)
    rank, world = get_rank(), get_world_size()
    local = torch.arange(rank, len(sel), world)  # positions in `sel` handled by this rank
    gen = torch.Generator(device=device)
    gen.manual_seed(cfg.seed * 1000 + rank)
    net, crafter = _fast(model), _fast(source) if source is not None else None
    early = cfg.uses_early_stop()
    attacks = {
        (i, name): cfg.threat.attack(
            name,
            crafter or net,
            eps=eps,
            copies=cfg.copies,
            generator=gen,
            seed=cfg.seed,
            early_stop=early and crafter is None,
            queries=cfg.queries,
        )
        for i, eps in enumerate(cfg.eps)
        for name in names
    }
    rows, kept, t_start = Rows(device), 0, time.perf_counter()
    tick = _Ticker(progress, len(local), cfg, names, attacks)
    with crafting_mode(net, "eval"), crafting_mode(crafter or net, "eval"):
        for start in range(0, len(local), cfg.batch_size):
            idx = sel[local[start : start + cfg.batch_size]]
            x = _to_float(images[idx.to(images.device)], device)
            y = labels[idx.to(labels.device)].to(device).long()
            keep = len(idx) if cfg.keep_adv is None else max(0, min(len(idx), cfg.keep_adv - kept))
            clean = _clean_batch(net, x, y, rows, check=start == 0)
            todo = clean.argmax(1) == y if early else torch.ones_like(y, dtype=torch.bool)
            _attack_batch(
                net,
                attacks,
                cfg,
                names,
                _Batch(x, y, clean, todo, crafter is not None),
                rows,
                keep,
                tick.batch(start, len(idx)),
            )
            if keep:
                rows.keep("index", idx[:keep])
                kept += keep
    per_sample = gather_rows(rows, row_keys(cfg, names), local, len(sel), device)
    per_sample["index"], per_sample["label"] = sel.clone(), labels[sel.to(labels.device)].cpu().long()
    result = summarise(cfg, names, per_sample, attacks, rows.timings, world, device, int(images[0].numel()))
    result.timings["total"] = time.perf_counter() - t_start
    result.subset = subset
    result.adversarial = {k: torch.cat(v) for k, v in rows.kept.items()}
    result.model = dict(getattr(model, "config", {}) or {}) or None
    return result


class _Ticker:
    """evaluate's progress reports: image-attacks done of this rank, the attack in hand, AutoAttack's stages."""

    def __init__(self, progress: ProgressCallback, n: int, cfg: EvalConfig, names: list[str], attacks: dict):
        self.progress, self.n, self.cfg, self.names = progress, n, cfg, names
        self.total = n * len(cfg.eps) * len(names)
        self.done, self.start, self.size = 0, 0, 0
        if progress is None:
            return
        for (i, name), attack in attacks.items():
            if hasattr(attack, "on_stage"):  # AutoAttack: one report per stage (apgd-ce, apgd-t, fab-t, square)
                attack.on_stage = lambda stage, i=i, name=name: self._say(
                    f"{self._what(i, name)}: images {self.start + 1}-{self.start + self.size} of {self.n}, {stage}"
                )
        self._say(f"{len(names)} attack(s) x {len(cfg.eps)} eps on {n} images")

    def _what(self, i: int, name: str) -> str:
        return f"{name} eps {self.cfg.eps[i] / self.cfg.eps_unit:g}"

    def _say(self, note: str) -> None:
        self.progress(self.done, self.total, note)

    def batch(self, start: int, size: int) -> Callable[[int, str], None] | None:
        """The after-attack callback of the batch at `start` (None: silent)."""
        if self.progress is None:
            return None
        self.start, self.size = start, size

        def done(i: int, name: str) -> None:
            self.done += size
            self._say(f"{self._what(i, name)}: {start + size}/{self.n} images")

        return done


def _fast(model: nn.Module) -> nn.Module:
    from sspnet.nn.models import SSPNet, inference_copy

    return inference_copy(model) if isinstance(model, SSPNet) else model  # BatchNorm folded, fast layout


def _clean_batch(net: nn.Module, x: Tensor, y: Tensor, rows: Rows, check: bool) -> Tensor:
    """Clean rows of a batch; returns the logits B x K."""
    t0 = rows.tick()
    with torch.no_grad():
        logits = net(x)
    if check and (int(y.max()) >= logits.shape[1] or int(y.min()) < 0):
        raise ValueError(
            f"labels reach {int(y.max())} but the model has {logits.shape[1]} classes: wrong dataset for this model?"
        )
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


def _attack_batch(
    net: nn.Module,
    attacks: dict,
    cfg: EvalConfig,
    names: list[str],
    b: _Batch,
    rows: Rows,
    keep: int,
    done: Callable[[int, str], None] | None = None,
) -> None:
    """Every attack at every eps on one batch: per-sample rows, the worst-case source, the kept images;
    done(i, name) after each attack (progress)."""
    x, y = b.x, b.y
    for i in range(len(cfg.eps)):
        worst, src = WorstCase(), torch.zeros_like(y)
        for j, name in enumerate(names):
            t0 = rows.tick()
            x_adv, logits = _run_attack(net, attacks[(i, name)], b)
            rows.timings[f"{i}/{name}"] += rows.tick() - t0
            if done is not None:
                done(i, name)
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


__all__ = [
    "ALL_ATTACKS",
    "AttackStats",
    "EpsResult",
    "EvalConfig",
    "EvalResult",
    "breaking_eps",
    "evaluate",
    "sanity_flags",
    "sweep_table",
]
